"""``neuroloop-monitor``: a web page showing a running session live, or one or two recordings.

Exit codes: 0 stopped by the user (Ctrl-C) or by the controller that started it, 2 bad
arguments or configuration (a recording that cannot be read, a non-loopback address without a
token, a port in use).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from pathlib import Path

import structlog
import uvicorn

from controller.monitor.app import build_app
from controller.monitor.auth import access_for, is_loopback, load_token, parse_bind, tunnel_hint
from controller.monitor.source import LiveSource, SessionView, open_recording
from controller.monitor.telemetry import Endpoints
from core.errors import ConfigError, NeuroLoopError
from core.logs import configure_logging

DEFAULT_PORT = 8765
EXIT_OK, EXIT_CONFIG = 0, 2

EPILOG = f"""\
examples:
  neuroloop-controller --backend sim --policy ftsts --duration 25 --monitor
      start a run and its monitor at http://127.0.0.1:{DEFAULT_PORT}/ (the usual way)
  neuroloop-monitor runs/session.nlrec
      open a recording in the same view, with a time cursor
  neuroloop-monitor runs/ppo.nlrec runs/ftsts.nlrec
      two recordings side by side, cursors in step (e.g. a policy against open-loop FTSTS)
  neuroloop-monitor --live /tmp/neuroloop-monitor-abc123
      attach to a running controller's telemetry directory (printed by --monitor)

security: the page binds 127.0.0.1 by default and is read-only except for the e-stop button,
which can only stop stimulation. From another machine use an SSH tunnel:
  ssh -N -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} USER@HOST   then open http://127.0.0.1:{DEFAULT_PORT}/
Any non-loopback --bind needs a token (--token-file, or $NEUROLOOP_MONITOR_TOKEN); requests
without it get 401. See docs/monitor.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = argparse.ArgumentParser(
        prog="neuroloop-monitor",
        description="Serve a web page that shows a closed-loop session: live from a running "
        "controller, or from one or two recordings (.nlrec) with a time cursor.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "recordings", nargs="*", type=Path, metavar="RECORDING", help="one or two .nlrec files"
    )
    p.add_argument(
        "--live",
        type=Path,
        metavar="DIR",
        help="a running controller's telemetry directory (holds telemetry.sock, control.sock)",
    )
    p.add_argument(
        "--bind",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        metavar="HOST[:PORT]",
        help=f"address of the page (default 127.0.0.1:{DEFAULT_PORT}; port 0 picks a free one)",
    )
    p.add_argument(
        "--token-file", type=Path, metavar="PATH", help="token required on non-loopback binds"
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="lower this process's CPU priority by N (the controller starts its monitor with 10 "
        "so the loop wins the CPU)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return p


def _views(args: argparse.Namespace) -> list[SessionView]:
    if args.live is not None and args.recordings:
        raise ConfigError("Expected either --live DIR or recordings, actual both")
    if args.live is not None:
        if not args.live.is_dir():
            raise ConfigError(f"Expected a telemetry directory for --live, actual {args.live}")
        return [LiveSource(Endpoints(args.live))]
    if not 1 <= len(args.recordings) <= 2:
        raise ConfigError(
            f"Expected one or two recordings, or --live DIR, actual {len(args.recordings)} "
            "recordings"
        )
    return [open_recording(path) for path in args.recordings]


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"Expected to bind the monitor on {host}:{port}, actual {err}") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-monitor``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)
    configure_logging("console", args.log_level)
    log = structlog.get_logger("controller.monitor")
    try:
        host, port = parse_bind(args.bind, DEFAULT_PORT)
        access = access_for(host, load_token(args.token_file))
        views = _views(args)
        sock = _socket(host, port)
    except (NeuroLoopError, OSError) as err:
        print(f"neuroloop-monitor: error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + ("" if access.token is None else "?token=TOKEN")
    log.info("monitor_ready", url=url, sessions=len(views), loopback=is_loopback(host))
    print(f"neuroloop-monitor: open {url}", file=sys.stderr)
    print(f"neuroloop-monitor: {tunnel_hint(host, port)}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        build_app(views, access),
        log_level="warning",
        access_log=False,
        ws_max_size=1 << 16,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(sockets=[sock]))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
