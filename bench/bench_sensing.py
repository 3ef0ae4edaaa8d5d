"""What sensing costs: the sensor per 20 ms window, and the kernel's extra per-step sum; JSON.

1. **Sensor, A/B in one process.** The Fig 3 network (N = 2000, paper semantics) runs the
   FTSTS protocol for ``--duration-s`` in 20 ms windows, alternately with the real sensor and
   with a stub that returns fixed features (everything else identical), ``--rounds`` times
   each, swapping the order every round so that both see the same drift of a shared machine.
   Reported: process CPU seconds per run (median), their ratio, and the real sensor's own
   time per window (timed around ``Sensor.window``).
2. **Kernel sum.** The kernel now sums the E cells' row of the delay line once per step
   (``sum_in_lanes``, ``Recorder.s_ie_e``). Timed alone in a compiled loop over 250 000 steps
   (25 s) against the same loop reading one element, at N_E = 1600 and 8000; compared with the
   kernel's cost per step measured in part 1.

    python bench/bench_sensing.py [--rounds 3] [--duration-s 25] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.config import CHUNK_MS  # noqa: E402
from simulator.experiments import EXPERIMENTS  # noqa: E402
from simulator.kernel import sum_in_lanes  # noqa: E402
from simulator.latch import Latch  # noqa: E402
from simulator.network import Network  # noqa: E402
from simulator.sensing import SENSED_FIELDS  # noqa: E402


def _run(real: bool, duration_s: float) -> dict[str, float]:
    """One FTSTS run; process CPU seconds and the sensor's seconds."""
    protocol = EXPERIMENTS["ftsts-desync"]
    cfg = protocol.network_config("paper", 1.0)
    net = Network(cfg)
    net.reset(1)
    sensor_s = 0.0
    window = net.sensor.window
    fixed = dict.fromkeys(SENSED_FIELDS, 0.0)

    def timed(*args: Any) -> dict[str, float]:
        nonlocal sensor_s
        t = time.perf_counter()
        out = window(*args) if real else fixed
        sensor_s += time.perf_counter() - t
        return out

    net.sensor.window = timed  # type: ignore[method-assign]
    latch = Latch(protocol.latch_rule, protocol.onset_ms)
    weight, weight_ie = net.weight_mv, cfg.j_e_mv * cfg.w_ei
    n_windows = round(duration_s * 1000.0 / CHUNK_MS)
    c0 = time.process_time()
    for w in range(n_windows):
        on = latch.stimulating(w * CHUNK_MS, weight, weight_ie)
        stats = net.advance(protocol.stimulus if on else None, CHUNK_MS)
        weight, weight_ie = stats.weight_mv, stats.weight_ie_mv
    return {"cpu_s": time.process_time() - c0, "sensor_s": sensor_s, "windows": n_windows}


@njit(cache=False)
def _sums(hist, n_e, steps):  # type: ignore[no-untyped-def]
    acc = 0.0
    h = 0
    for _ in range(steps):
        acc += sum_in_lanes(hist[h], 0, n_e)
        h = h + 1 if h + 1 < hist.shape[0] else 0
    return acc


@njit(cache=False)
def _reads(hist, n_e, steps):  # type: ignore[no-untyped-def]
    acc = 0.0
    h = 0
    for k in range(steps):
        acc += hist[h, k % n_e]
        h = h + 1 if h + 1 < hist.shape[0] else 0
    return acc


def _sum_cost_ns(n_e: int, steps: int = 250_000, trials: int = 7) -> float:
    """Median extra nanoseconds per step of the sum over ``n_e`` float32 values."""
    hist = np.random.default_rng(0).random((50, n_e + n_e // 4)).astype(np.float32)
    _sums(hist, n_e, 10)
    _reads(hist, n_e, 10)
    with_sum, without = [], []
    for _ in range(trials):
        t = time.perf_counter()
        _sums(hist, n_e, steps)
        with_sum.append(time.perf_counter() - t)
        t = time.perf_counter()
        _reads(hist, n_e, steps)
        without.append(time.perf_counter() - t)
    return 1e9 * (statistics.median(with_sum) - statistics.median(without)) / steps


def main(argv: list[str] | None = None) -> None:
    """Run both parts and print (and optionally write) the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (3)")
    parser.add_argument("--duration-s", type=float, default=25.0, help="model seconds (25)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds expected an integer >= 1, actual {args.rounds}")
    if not args.duration_s >= 0.02:
        parser.error(f"--duration-s expected a number >= 0.02, actual {args.duration_s}")
    _run(True, 0.2)  # compile / load every kernel
    runs: dict[str, list[dict[str, float]]] = {"sensor": [], "stub": []}
    for r in range(args.rounds):
        order = ("sensor", "stub") if r % 2 == 0 else ("stub", "sensor")
        for name in order:
            runs[name].append(_run(name == "sensor", args.duration_s))
    cpu = {k: statistics.median(x["cpu_s"] for x in v) for k, v in runs.items()}
    windows = runs["sensor"][0]["windows"]
    per_window_ms = [1000.0 * x["sensor_s"] / x["windows"] for x in runs["sensor"]]
    steps = windows * 200
    kernel_ns_per_step = 1e9 * cpu["stub"] / steps
    sums = {f"n_e={n}": _sum_cost_ns(n) for n in (1600, 8000)}
    report = {
        "command": "python bench/bench_sensing.py " + " ".join(argv or sys.argv[1:]),
        "case": f"ftsts-desync, N = 2000, paper semantics, {args.duration_s} s, 20 ms windows",
        "rounds": args.rounds,
        "load_avg_1min": os.getloadavg()[0],
        "cpu_s": {k: [round(x["cpu_s"], 3) for x in v] for k, v in runs.items()},
        "median_cpu_s": cpu,
        "ratio_sensor_over_stub": cpu["sensor"] / cpu["stub"],
        "sensor_ms_per_window": {
            "median": statistics.median(per_window_ms),
            "runs": [round(x, 4) for x in per_window_ms],
        },
        "run_ms_per_window_stub": 1000.0 * cpu["stub"] / windows,
        "kernel_sum_ns_per_step": sums,
        "whole_step_ns_n2000": kernel_ns_per_step,
        "kernel_sum_share_n2000": sums["n_e=1600"] / kernel_ns_per_step,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
