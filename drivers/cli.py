"""``neuroloop-driver``: put a serial stimulator behind the NeuroLoop protocol, or probe one.

``serve`` opens the port (any pyserial URL), answers protocol requests on ``--bind`` and prints
``NEUROLOOP_READY <endpoint>`` once listening. ``probe`` runs the device handshake, prints the
device's capabilities and first STATUS as JSON, and exits without arming anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

import structlog

from core.errors import NeuroLoopError
from core.logs import add_log_options, configure_from_args
from drivers.bridge import STEP_MODES, SerialBackend
from drivers.messages import DeviceState
from drivers.serial_stimulator import SerialStimulator
from drivers.shutdown import PreemptingSleep, SignalWakeup
from protocol.serve_cli import EPILOG, add_serve_arguments, run_backend

log = structlog.get_logger()

_PORT_HELP = (
    "pyserial URL of the stimulator: a device path (/dev/ttyACM0), the path the emulator "
    "printed (/dev/pts/N), socket://127.0.0.1:PORT (TCP emulator), or spy://PATH to hexdump "
    "the traffic on stderr"
)

_SERVE_EPILOG = f"""\
examples:
  neuroloop-device-emulator --n-e 160 --n-i 40        # prints e.g. /dev/pts/5
  neuroloop-driver serve --port /dev/pts/5 --bind tcp://127.0.0.1:5600
  neuroloop-controller --backend serial --connect tcp://127.0.0.1:5600 ...

stimulus parameters (protocol): amplitude_ma (mA), frequency_hz (Hz), pulse_width_us (µs).
Each step sends a setpoint with a lease of 2.5 control periods and renews it while the step
lasts; if the controller stops stepping, the device ramps itself to zero within the watchdog
time plus 250 ms. After a device reset, fault or link loss nothing restarts by itself: the
controller must configure again (which re-arms), or the service must be restarted.

{EPILOG}"""

_EPILOG = """\
examples:
  neuroloop-device-emulator --n-e 160 --n-i 40        # a software device; prints e.g. /dev/pts/5
  neuroloop-driver probe --port /dev/pts/5            # its capabilities and first STATUS, as JSON
  neuroloop-driver serve --port /dev/pts/5 --bind tcp://127.0.0.1:5600
  neuroloop-controller --backend serial --connect tcp://127.0.0.1:5600 --policy constant \\
      --amplitude 1.0 --frequency-hz 130 --pulse-width-us 90

'neuroloop-driver COMMAND --help' describes each command's options.
"""

_PROBE_EPILOG = """\
examples:
  neuroloop-driver probe --port /dev/ttyACM0
  neuroloop-driver probe --port socket://127.0.0.1:5560 --log-level info
"""


def _add_port_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, metavar="URL", help=_PORT_HELP)
    parser.add_argument(
        "--baudrate", type=int, default=1_000_000, help="UART rate (default 1000000)"
    )
    parser.add_argument(
        "--ack-timeout-ms",
        type=float,
        default=20.0,
        help="wait this long for a reply before retransmitting (default 20)",
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="retransmissions per command before the link counts as lost (default 2)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="neuroloop-driver",
        description="Drive a NeuroLoop serial stimulator (device protocol v1, "
        "docs/device-protocol.md).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve the stimulator over the NeuroLoop ZeroMQ protocol",
        description="Open the stimulator and serve it over the NeuroLoop protocol, like the "
        "simulator backend, so controllers can swap one for the other.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_port_arguments(serve)
    serve.add_argument(
        "--step-mode",
        choices=STEP_MODES,
        default="latest",
        help="latest (default): a step applies the setpoint and returns the device's latest "
        "sensed STATUS at once, for a real-time controller that paces the loop itself; "
        "window: a step lasts its duration in wall-clock time and returns the STATUS at its "
        "end, for lockstep clients such as a gymnasium environment",
    )
    add_serve_arguments(serve)
    probe = sub.add_parser(
        "probe",
        help="handshake with a stimulator and print its capabilities as JSON",
        description="Run HELLO → CAPS, wait for one STATUS and print both as JSON. Nothing is "
        "armed and no current is delivered.",
        epilog=_PROBE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_port_arguments(probe)
    add_log_options(probe)
    return parser


def _open(args: argparse.Namespace) -> SerialStimulator:
    return SerialStimulator(
        args.port,
        baudrate=args.baudrate,
        ack_timeout_s=args.ack_timeout_ms / 1000.0,
        max_retries=args.max_retries,
    )


def _probe(args: argparse.Namespace) -> int:
    with _open(args) as drv:
        caps = drv.handshake()
        deadline = time.monotonic() + 1.0
        while drv.status() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        status = drv.status()
        out = {
            "url": args.port,
            "caps": asdict(caps),
            "status": asdict(status) if status else None,
            "state": DeviceState(status.state).name if status else None,
            "features": status.features() if status else None,
        }
        print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    try:
        if args.command == "probe":
            return _probe(args)
        driver = _open(args)
    except NeuroLoopError as err:
        log.error("driver_failed", error=str(err))
        print(f"neuroloop-driver: error: {err}", file=sys.stderr)
        return 2
    try:
        driver.handshake()
    except NeuroLoopError as err:
        print(f"neuroloop-driver: error: no answer from {args.port}: {err}", file=sys.stderr)
        driver.close()
        return 2
    # SIGINT/SIGTERM must reach the device at once, also in the middle of a window-mode step
    # that would otherwise sleep out its duration (up to 2 s) before the service stops.
    with SignalWakeup() as wakeup:
        try:
            backend = SerialBackend(
                driver,
                session_timeout_s=args.session_timeout_s,
                step_mode=args.step_mode,
                sleep=PreemptingSleep(wakeup, driver),
            )
        except NeuroLoopError as err:
            print(f"neuroloop-driver: error: {err}", file=sys.stderr)
            driver.close()
            return 2
        return run_backend(backend, args)


if __name__ == "__main__":
    sys.exit(main())
