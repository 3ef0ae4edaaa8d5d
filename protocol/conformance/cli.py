"""``neuroloop-check-backend``: run the conformance check against a backend's address."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from core.errors import ConfigError
from core.logs import add_log_options, configure_from_args
from protocol.conformance.check import AREAS, check_backend
from protocol.security import ClientKeys

EPILOG = """\
examples:
  # a backend you started yourself, e.g. neuroloop-sim serve --bind tcp://127.0.0.1:5555
  neuroloop-check-backend tcp://127.0.0.1:5555
  # a small network, so the check takes seconds
  neuroloop-check-backend tcp://127.0.0.1:5555 --option n_scale=0.05
  # only some areas, every result listed, machine-readable output
  neuroloop-check-backend ipc:///tmp/mybackend.sock --areas states,refusals --verbose
  neuroloop-check-backend tcp://127.0.0.1:5555 --json > conformance.json
  # a backend on another host (CURVE keys made with neuroloop-keys)
  neuroloop-check-backend tcp://10.0.0.5:5555 --curve me.key_secret server.key

what it does:
  It opens sessions, configures an envelope derived from the backend's advertised
  capabilities (small amplitudes), steps, and breaks every rule of docs/protocol.md on
  purpose: malformed bodies, wrong sessions, envelopes and stimuli out of bounds, silence.
  The backend must be idle and must NOT be connected to a patient. The loss-of-contact
  checks wait for the backend's session timeout (skipped when longer than --max-wait-s).

exit codes:
  0 every check passed (or was skipped), 1 a check failed, 2 bad arguments or key files.

See docs/protocol.md, "Checking a backend".
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``neuroloop-check-backend``."""
    parser = argparse.ArgumentParser(
        prog="neuroloop-check-backend",
        description=textwrap.fill(
            "Check that a running NeuroLoop backend conforms to the wire protocol "
            "(docs/protocol.md): handshake, session state machine, refusals and their error "
            "codes, envelope enforcement, stops and loss of contact. Prints one line per "
            "failed or skipped check with the document section, what was expected and what "
            "came back.",
            width=92,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "address",
        help="the backend's ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555 or ipc:///tmp/b.sock",
    )
    parser.add_argument(
        "--timeout-s", type=float, default=2.0, metavar="S",
        help="deadline of every reply in seconds (default 2; a step adds its window)",
    )
    parser.add_argument(
        "--areas", default=",".join(AREAS), metavar="LIST",
        help=f"comma-separated areas to run after the handshake (default: all: "
        f"{','.join(AREAS)})",
    )
    parser.add_argument(
        "--max-wait-s", type=float, default=30.0, metavar="S",
        help="longest the loss-of-contact checks may wait for the session timeout (default 30)",
    )
    parser.add_argument(
        "--no-big-body", action="store_true",
        help="do not send the 64 MiB + 1 byte body (saves memory on a small machine)",
    )
    parser.add_argument(
        "--curve", nargs=2, type=Path, metavar=("CLIENT_SECRET", "SERVER_PUBLIC"),
        help="CURVE keys: this client's NAME.key_secret and the backend's server.key",
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE",
        help="a backend option sent with every configure (repeatable), e.g. n_scale=0.05; "
        "VALUE is read as an integer, a float, true/false, or else a string",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="list passed checks too (text report)"
    )
    add_log_options(parser)
    return parser


def parse_option(text: str) -> tuple[str, str | int | float | bool]:
    """``NAME=VALUE`` as a configure option (int, float, true/false, else str).

    Raises:
        ConfigError: There is no ``=`` or no name.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"Expected --option NAME=VALUE, actual {text!r}")
    value: str | int | float | bool = raw
    if raw in ("true", "false"):
        value = raw == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    return name.strip(), value


def main(argv: list[str] | None = None) -> int:
    """Run the check; exit 0 when it passes, 1 when a check fails, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_from_args(args)
    areas = tuple(a.strip() for a in args.areas.split(",") if a.strip())
    if not 0.0 < args.timeout_s <= 3600.0:
        parser.error(f"Expected --timeout-s in (0, 3600], actual {args.timeout_s}")
    if not 0.0 <= args.max_wait_s <= 3600.0:
        parser.error(f"Expected --max-wait-s in [0, 3600], actual {args.max_wait_s}")
    try:
        options = dict(parse_option(text) for text in args.option)
        curve = ClientKeys.load(*args.curve) if args.curve else None
        report = check_backend(
            args.address,
            timeout_s=args.timeout_s,
            curve=curve,
            areas=areas,
            big_body=not args.no_big_body,
            max_wait_s=args.max_wait_s,
            options=options,
        )
    except ConfigError as err:
        parser.error(str(err))
    print(report.to_json() if args.json else report.to_text(verbose=args.verbose))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
