"""``neuroloop-device-emulator``: a stimulator with a simulated patient on a pty or TCP socket.

Prints the URL to open on the first line of stdout (a ``/dev/pts/N`` path, or
``socket://127.0.0.1:PORT``), then serves until SIGINT/SIGTERM. SIGUSR1 reboots the device (new
boot id, DISARMED) and SIGUSR2 unplugs it (output off, port closed), so fault drills can be run
from a shell against a running controller.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from types import FrameType

import structlog

from core.errors import ConfigError, NeuroLoopError
from core.logs import add_log_options, configure_from_args
from core.threads import add_threads_option, warn_if_oversubscribed
from drivers.device_caps import FirmwareConfig
from drivers.emulator import DeviceEmulator
from drivers.faults import FaultConfig, FaultInjector
from drivers.firmware import DeviceFirmware
from drivers.ports import EmulatorPort, PtyPort, TcpPort
from drivers.tissue import Tissue, TissueTransfer, make_network

log = structlog.get_logger()

_EPILOG = """\
examples:
  neuroloop-device-emulator                       # pty, paper-size network (1600 E / 400 I)
  neuroloop-device-emulator --n-e 160 --n-i 40    # small network (tests, slow machines)
  neuroloop-device-emulator --tcp 5555            # socket://127.0.0.1:5555 for pyserial
  neuroloop-device-emulator --drop-prob 0.05 --rx-ber 1e-4 --ack-delay-ms 30

  then: neuroloop-driver serve --port /dev/pts/N --bind tcp://127.0.0.1:5600

transfer (device → model): amplitude_mV = gain × amplitude_µA (default 0.04 mV/µA, so 2.5 mA
is the paper's 100 mV and 10 mA the model's 400 mV ceiling); pulse width (µs) and frequency (Hz)
pass through unchanged. See docs/device-protocol.md §10.

signals: SIGUSR1 = device reset (new boot_id, DISARMED); SIGUSR2 = unplug; SIGINT/SIGTERM = exit.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="neuroloop-device-emulator",
        description="Emulate a NeuroLoop stimulator (device protocol v1) whose electrode sits in "
        "a simulated FTSTS network, on a pseudo-terminal or a loopback TCP port.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    line = p.add_argument_group("line")
    line.add_argument(
        "--tcp",
        type=int,
        metavar="PORT",
        help="listen on 127.0.0.1:PORT instead of a pty (0 = any free port)",
    )
    line.add_argument("--tick-ms", type=float, default=2.0, help="loop period in ms (default 2)")
    dev = p.add_argument_group("device")
    dev.add_argument("--seed", type=int, default=0, help="seed for boot ids, network, faults")
    dev.add_argument(
        "--status-period-ms", type=int, default=20, help="STATUS period in ms (default 20 = 50 Hz)"
    )
    dev.add_argument(
        "--impedance-ohm", type=int, default=1000, help="electrode impedance (ARM needs 250–5000)"
    )
    dev.add_argument(
        "--electrode-area-mm2",
        type=float,
        default=6.0,
        help="area of the emulated contact in mm², reported in CAPS; ARM must carry exactly this "
        "area (default 6 = 0.06 cm², a Medtronic 3387/3389 contact; resolution 0.01 mm²)",
    )
    tis = p.add_argument_group("tissue (simulated patient)")
    tis.add_argument("--no-tissue", action="store_true", help="no network; STATUS senses nothing")
    tis.add_argument("--n-e", type=int, default=1600, help="excitatory cells (default 1600)")
    tis.add_argument("--n-i", type=int, default=400, help="inhibitory cells (default 400)")
    tis.add_argument(
        "--window-ms", type=float, default=20.0, help="model ms per real-time window (default 20)"
    )
    tis.add_argument(
        "--gain-mv-per-ua", type=float, default=0.04, help="model mV per device µA (default 0.04)"
    )
    tis.add_argument("--polarity", choices=("desync", "sync"), default="desync")
    tis.add_argument("--ei-offset-ms", type=float, default=0.0, help="E–I offset in the model")
    add_threads_option(tis)
    flt = p.add_argument_group("fault injection (all off by default)")
    flt.add_argument("--rx-ber", type=float, default=0.0, help="bit error rate host → device")
    flt.add_argument("--tx-ber", type=float, default=0.0, help="bit error rate device → host")
    flt.add_argument("--drop-prob", type=float, default=0.0, help="P(outbound frame lost)")
    flt.add_argument("--duplicate-prob", type=float, default=0.0, help="P(outbound frame twice)")
    flt.add_argument("--reorder-prob", type=float, default=0.0, help="P(outbound frame swapped)")
    flt.add_argument("--garbage-prob", type=float, default=0.0, help="P(noise burst before frame)")
    flt.add_argument("--delay-ms", type=float, default=0.0, help="latency on every outbound frame")
    flt.add_argument("--rx-delay-ms", type=float, default=0.0, help="latency on inbound bytes")
    flt.add_argument("--ack-delay-ms", type=float, default=0.0, help="extra latency on replies")
    flt.add_argument("--reset-after-s", type=float, help="reboot the device after S seconds")
    flt.add_argument("--unplug-after-s", type=float, help="unplug the device after S seconds")
    run = p.add_argument_group("run")
    run.add_argument("--run-seconds", type=float, help="exit after S seconds (default: forever)")
    add_log_options(run)
    return p


def _make_port(tcp: int | None) -> EmulatorPort:
    return PtyPort() if tcp is None else TcpPort(tcp)


def main(argv: list[str] | None = None) -> int:
    """Run the emulator; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_from_args(args)
    try:
        faults = FaultInjector(
            FaultConfig(
                rx_bit_error_rate=args.rx_ber,
                rx_delay_ms=args.rx_delay_ms,
                tx_bit_error_rate=args.tx_ber,
                drop_prob=args.drop_prob,
                duplicate_prob=args.duplicate_prob,
                reorder_prob=args.reorder_prob,
                delay_ms=args.delay_ms,
                ack_delay_ms=args.ack_delay_ms,
                garbage_prob=args.garbage_prob,
            ),
            seed=args.seed,
        )
        if not 0.1 <= args.tick_ms <= 50.0:
            raise ConfigError(f"Expected --tick-ms in [0.1, 50], actual {args.tick_ms}")
        if not 5 <= args.status_period_ms <= 1000:
            raise ConfigError(
                f"Expected --status-period-ms in [5, 1000], actual {args.status_period_ms}"
            )
        if not 1 <= args.impedance_ohm <= 65535:
            raise ConfigError(
                f"Expected --impedance-ohm in [1, 65535], actual {args.impedance_ohm}"
            )
        area_x100 = round(args.electrode_area_mm2 * 100.0)
        if not (
            math.isfinite(args.electrode_area_mm2)
            and 1 <= area_x100 <= 65535
            and math.isclose(area_x100, args.electrode_area_mm2 * 100.0, abs_tol=1e-6)
        ):
            raise ConfigError(
                "Expected --electrode-area-mm2 in [0.01, 655.35] in steps of 0.01 mm², actual "
                f"{args.electrode_area_mm2!r}"
            )
        for name in ("n_e", "n_i"):
            if not 1 <= getattr(args, name) <= 100_000:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"Expected {flag} in [1, 100000], actual {getattr(args, name)}")
        if args.no_tissue and args.threads != 1:
            raise ConfigError(
                f"Expected no --threads with --no-tissue (no network to integrate), actual "
                f"--threads {args.threads}"
            )
        tissue = None
        if not args.no_tissue:
            warn_if_oversubscribed(args.threads, 1)
            transfer = TissueTransfer(args.gain_mv_per_ua, args.polarity, args.ei_offset_ms)
            network = make_network(args.n_e, args.n_i, threads=args.threads)
            tissue = Tissue(network, transfer, args.window_ms, args.seed)
        firmware = DeviceFirmware(
            FirmwareConfig(
                status_period_ms=args.status_period_ms,
                impedance_ohm=args.impedance_ohm,
                area_mm2_x100=area_x100,
            ),
            seed=args.seed,
            now_s=time.monotonic(),
        )
        port = _make_port(args.tcp)
    except (NeuroLoopError, OSError) as err:
        print(f"neuroloop-device-emulator: error: {err}", file=sys.stderr)
        return 2
    emulator = DeviceEmulator(port, firmware, tissue, faults, tick_ms=args.tick_ms)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            emulator.request_reset()
        elif signum == signal.SIGUSR2:
            emulator.request_unplug()
        else:
            emulator.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, on_signal)
    timers: list[threading.Timer] = []
    for delay, action in (
        (args.reset_after_s, emulator.request_reset),
        (args.unplug_after_s, emulator.request_unplug),
        (args.run_seconds, emulator.request_stop),
    ):
        if delay is not None:
            timer = threading.Timer(max(0.0, delay), action)
            timer.daemon = True
            timers.append(timer)
    if tissue is not None:
        log.info("emulator_tissue", n_e=args.n_e, n_i=args.n_i, window_ms=args.window_ms)
        emulator.warm_up()
    print(port.url, flush=True)
    for timer in timers:
        timer.start()
    try:
        emulator.run()
    finally:
        for timer in timers:
            timer.cancel()
        emulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
