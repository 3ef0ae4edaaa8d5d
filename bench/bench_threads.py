"""One network on 1 and on 2 threads, alternated in one run; prints JSON.

Cases (``bench/bench_simulator.py``'s, each run a fresh process, compile excluded): the Fig 3
network (N = 2000, 25 s) and the Fig 5 network (N = 10 000, 5 s), each on 1 and on 2
threads, in rounds whose order alternates, so that every variant meets the same drift of a
shared machine. Reports each variant's runs, median and range (wall seconds, model seconds
per wall second, CPU seconds), the 1-thread / 2-thread ratio of the medians, the largest
peak RSS, the 1-minute load average at each run, and whether the runs gave the same spikes
and final weight (they must: the thread count is a speed setting).

    python bench/bench_threads.py [--rounds 5] [--case n2000 --case n10000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from bench_simulator import CASE
from fresh_process import median_range, run_case

ROOT = Path(__file__).resolve().parents[1]
#: case -> (experiment, model seconds, quick model seconds)
CASES = {"n2000": ("ftsts-desync", 25.0, 2.0), "n10000": ("ftsts-desync-10k", 5.0, 0.5)}


def _run(experiment: str, duration_s: float, threads: int) -> dict[str, Any]:
    return run_case(CASE, [experiment, "1.0", str(duration_s), str(threads)],
                    f"{experiment} on {threads} threads")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (≥ 1)")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="case to run (default: both)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"expected --rounds ≥ 1, actual {args.rounds}")
    report: dict[str, Any] = {"rounds": args.rounds, "cpu_count": os.cpu_count()}
    for case in args.case or sorted(CASES):
        experiment, duration_s, quick_s = CASES[case]
        duration_s = quick_s if args.quick else duration_s
        for threads in (1, 2):  # compile both kernels into the cache first
            _run(experiment, min(duration_s, 0.2), threads)
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for k in range(args.rounds):
            for threads in (1, 2) if k % 2 == 0 else (2, 1):
                runs[threads].append(_run(experiment, duration_s, threads))
        variants = {}
        for threads, rs in runs.items():
            walls = [r["wall_s"] for r in rs]
            variants[f"threads_{threads}"] = {
                "wall_s": walls,
                "wall_s_stats": median_range(walls),
                "model_s_per_wall_s": duration_s / statistics.median(walls),
                "cpu_s": [r["process_cpu_s"] - r["jit_s"] for r in rs],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                "load_avg_1min": [r["load_avg_1min"] for r in rs],
            }
        same = {(r["spikes"], r["weight_mv"]) for rs in runs.values() for r in rs}
        report[case] = {
            "experiment": experiment,
            "model_s": duration_s,
            **variants,
            "speedup_median_1_over_2": (variants["threads_1"]["wall_s_stats"]["median"]
                                        / variants["threads_2"]["wall_s_stats"]["median"]),
            "same_spikes_and_weight_on_every_run": len(same) == 1,
        }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
