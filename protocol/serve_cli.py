"""Shared command-line pieces for every backend's ``serve`` command.

Each backend's ``main()`` builds its :class:`~protocol.backend.Backend` and calls
:func:`run_backend`, which binds (refusing a non-loopback address without CURVE keys), prints
one ready line on stdout for :func:`protocol.process.spawn_backend`, answers requests until
SIGINT/SIGTERM (or, when started by a controller, until that parent process is gone: see
:mod:`protocol.lifeline`), then stops stimulation, removes its ipc socket file and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import structlog

from core.errors import ConfigError
from core.logs import add_log_options
from protocol.backend import Backend
from protocol.lifeline import ParentWatch, remove_ipc_endpoint
from protocol.server import BackendServer

#: First word of the line a backend prints on stdout once it is listening.
READY_PREFIX = "NEUROLOOP_READY"

BIND_HELP = (
    "ZeroMQ endpoint to listen on. Loopback needs no keys: ipc:///tmp/neuroloop/sim.sock or "
    "tcp://127.0.0.1:5555 (tcp://127.0.0.1:* picks a free port, printed on the ready line). "
    "Any other address (tcp://0.0.0.0:5555, tcp://*:5555, a LAN IP) is refused unless "
    "--curve-keys is given."
)

EPILOG = f"""\
When listening, one line '{READY_PREFIX} <endpoint>' is printed on stdout; logs go to stderr.
SIGINT or SIGTERM stops stimulation and exits 0; an ipc:// socket file is removed at exit. A
backend started by a controller (NEUROLOOP_PARENT_PID set) also stops when that process is
gone, even SIGKILLed. A session whose client sends no request
(step, heartbeat, ...) for --session-timeout-s seconds ends and stimulation stops.

CURVE (needed beyond this host):
  neuroloop-keys init-server keys/                 # server key pair + keys/clients/
  neuroloop-keys new-client ctl --dir ctl-keys/ --authorize keys/
  ... serve --bind tcp://0.0.0.0:5555 --curve-keys keys/
Clients whose public key is not in keys/clients/ are refused and logged.
"""


def add_serve_arguments(parser: argparse.ArgumentParser, default_timeout_s: float = 2.0) -> None:
    """Add ``--bind``, ``--curve-keys``, ``--session-timeout-s``, ``--log-*`` to ``parser``."""
    parser.add_argument("--bind", required=True, metavar="ADDR", help=BIND_HELP)
    parser.add_argument(
        "--curve-keys",
        type=Path,
        metavar="DIR",
        help="CURVE key directory made by 'neuroloop-keys init-server' (server.key_secret and "
        "clients/*.key, the allow-list). Turns on CURVE encryption and client authentication.",
    )
    parser.add_argument(
        "--session-timeout-s",
        type=float,
        default=default_timeout_s,
        metavar="S",
        help="End a session and stop stimulation after S seconds without a request from its "
        f"client (default {default_timeout_s:g}; clients heartbeat every S/3).",
    )
    add_log_options(parser)


def run_backend(backend: Backend, args: argparse.Namespace) -> int:
    """Serve ``backend`` as described by the parsed ``args``; return the exit code."""
    log = structlog.get_logger()
    try:
        server = BackendServer(backend, args.bind, curve_keys_dir=args.curve_keys)
        endpoint = server.start()
    except ConfigError as err:
        log.error("serve_refused", reason=str(err))
        print(f"error: {err}", file=sys.stderr)
        backend.close()
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
    previous = {sig: signal.getsignal(sig) for sig in watched}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    try:
        ParentWatch(lambda reason: stop.set()).start()
        print(f"{READY_PREFIX} {endpoint}", flush=True)
        server.serve_forever(stop)
    finally:
        server.close()
        remove_ipc_endpoint(endpoint)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
