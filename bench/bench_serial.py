"""Benchmark the serial path: command round trips over a real pty, frame rates, codec cost.

The device is ``neuroloop-device-emulator`` in its own process on a pseudo-terminal (as a user
runs it), without tissue so only the protocol is measured; the host is ``SerialStimulator``.
Each timed round trip is one HEARTBEAT command and its ACK (stop-and-wait, as the driver
works). Also measured: encode + decode cost of a SET_STIM frame, and the wall-clock cost of one
20 ms tissue window (small and paper-size network), which decides whether the emulator keeps up
in real time.

Prints one JSON object on stdout. Run: ``.venv/bin/python bench/bench_serial.py``
(``--round-trips 5000 --warmup 500`` by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.logs import configure_logging
from drivers.envelope import DeviceEnvelope
from drivers.framing import Frame, FrameDecoder, encode_frame
from drivers.messages import MsgType, SetStim
from drivers.serial_stimulator import SerialStimulator

BIN = Path(sys.executable).parent


def _percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return {
        "n": int(arr.size),
        "p50_us": round(float(np.percentile(arr, 50)), 1),
        "p90_us": round(float(np.percentile(arr, 90)), 1),
        "p99_us": round(float(np.percentile(arr, 99)), 1),
        "p99_9_us": round(float(np.percentile(arr, 99.9)), 1),
        "max_us": round(float(arr.max()), 1),
        "mean_us": round(float(arr.mean()), 1),
    }


def bench_codec(n: int) -> dict[str, float]:
    """Encode and decode cost of a 26-byte SET_STIM frame."""
    payload = SetStim(0, 2500, 90, 1300, 0, 250).pack()
    frame = Frame(MsgType.SET_STIM, 7, 3, 123456, payload)
    wire = encode_frame(frame)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        encode_frame(frame)
    t1 = time.perf_counter_ns()
    decoder = FrameDecoder()
    for _ in range(n):
        decoder.feed(wire)
    t2 = time.perf_counter_ns()
    stream = wire * 1000
    t3 = time.perf_counter_ns()
    for _ in range(max(1, n // 1000)):
        decoder.feed(stream)
    t4 = time.perf_counter_ns()
    return {
        "frame_bytes": len(wire),
        "encode_ns": round((t1 - t0) / n, 1),
        "decode_ns": round((t2 - t1) / n, 1),
        "decode_stream_frames_per_s": round(max(1, n // 1000) * 1000 / ((t4 - t3) / 1e9)),
    }


def bench_pty(round_trips: int, warmup: int) -> dict[str, object]:
    """HEARTBEAT → ACK round trips against the emulator in another process over a pty."""
    emu = subprocess.Popen(
        [str(BIN / "neuroloop-device-emulator"), "--no-tissue", "--log-level", "error"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert emu.stdout is not None
        ready, _, _ = select.select([emu.stdout], [], [], 30.0)
        if not ready:
            raise TimeoutError("the emulator printed no URL within 30 s")
        url = emu.stdout.readline().decode().strip()
        env = DeviceEnvelope(lease_max_ms=500, watchdog_ms=500)
        samples: list[int] = []
        with SerialStimulator(url, ack_timeout_s=0.1) as drv:
            drv.handshake()
            drv.arm(env)
            for _ in range(warmup):
                drv.heartbeat(250)
            rx0, tx0 = drv.counters["frames_rx"], drv.counters["frames_tx"]
            t_start = time.perf_counter()
            for _ in tqdm(range(round_trips), desc="pty round trips", file=sys.stderr):
                t0 = time.perf_counter_ns()
                drv.heartbeat(250)
                samples.append(time.perf_counter_ns() - t0)
            elapsed = time.perf_counter() - t_start
            rx = drv.counters["frames_rx"] - rx0
            tx = drv.counters["frames_tx"] - tx0
            retransmits = drv.counters["retransmits"]
            timeouts = drv.counters["timeouts"]
    finally:
        emu.send_signal(signal.SIGTERM)
        try:
            emu.wait(10)
        except subprocess.TimeoutExpired:
            emu.kill()
            emu.wait(10)
    return {
        "round_trip": _percentiles_us(samples),
        "commands_per_s": round(round_trips / elapsed, 1),
        "frames_per_s": round((rx + tx) / elapsed, 1),
        "frames_rx": rx,
        "frames_tx": tx,
        "retransmits": retransmits,
        "timeouts": timeouts,
    }


def bench_tissue(windows: int) -> dict[str, object]:
    """Wall-clock cost of one 20 ms window of the emulator's tissue."""
    from drivers.tissue import Tissue, make_network

    out: dict[str, object] = {}
    for label, (n_e, n_i) in {"n200": (160, 40), "n2000_paper": (1600, 400)}.items():
        tissue = Tissue(make_network(n_e, n_i), window_ms=20.0, seed=1)
        tissue.step(amp_ua=2500, pw_us=100, freq_dhz=833)  # compiles
        samples: list[int] = []
        for _ in range(windows):
            t0 = time.perf_counter_ns()
            tissue.step(amp_ua=2500, pw_us=100, freq_dhz=833)
            samples.append(time.perf_counter_ns() - t0)
        arr = np.asarray(samples, dtype=np.float64) / 1e6
        out[label] = {
            "window_ms": 20.0,
            "p50_wall_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_wall_ms": round(float(np.percentile(arr, 99)), 2),
            "real_time_load": round(float(np.percentile(arr, 50)) / 20.0, 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--codec-ops", type=int, default=100_000)
    parser.add_argument("--tissue-windows", type=int, default=100)
    args = parser.parse_args(argv)
    configure_logging("json", "error")
    report = {
        "benchmark": "bench_serial",
        "host": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
        "codec": bench_codec(args.codec_ops),
        "pty": bench_pty(args.round_trips, args.warmup),
        "tissue": bench_tissue(args.tissue_windows),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
