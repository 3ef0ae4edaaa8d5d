"""The threaded kernel's work per thread and block, on 1 and 2 threads, in one process; prints JSON.

``bench/bench_threads.py`` times whole runs, and on a machine whose other work leaves the
threads without a core each it measures the machine, not the kernel. This bench reads what
each thread spent in its two phases per block (time-stamp ticks, ``Threading.block_ticks``)
and reports low percentiles per block, which a thread reaches when it ran undisturbed: the
work each thread does, and from it the wall time two free cores would take per block (the
slower thread's phase A plus phase B; the threads meet once per block). The one-thread case
runs the same threaded kernel on a one-thread plan (the same cost as the one-thread kernel
within noise: ``docs/dev/simulator-speed.md``, eighth session). Windows of the two variants
alternate, from two networks with the same seed.

    python bench/bench_thread_phases.py [--case n2000 --case n10000] [--windows 60]
        [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

import simulator.network as network_module
from simulator.experiments import get_experiment
from simulator.network import Network
from simulator.threaded import BLOCK_LOG, Threading, plan, run_threaded

CASES = {"n2000": "ftsts-desync", "n10000": "ftsts-desync-10k"}


def _networks(experiment: str) -> tuple[Any, Network, Network, Threading]:
    exp = get_experiment(experiment)
    cfg = exp.network_config("paper", 1.0)
    one = Network(cfg, threads=1)
    two = Network(cfg, threads=2)
    for net in (one, two):
        net.reset(seed=1)
    one_plan = plan(cfg.n, cfg.n_e, 1, cfg.delay_steps, one._ei, one._ie)
    return exp, one, two, one_plan


def _phase_stats(block_ticks: np.ndarray, blocks: int) -> dict[str, Any]:
    rows = block_ticks[: min(blocks, BLOCK_LOG)]
    total = rows[:, 0] + rows[:, 1]
    return {
        "blocks": int(rows.shape[0]),
        **{f"{name}_p10": float(np.percentile(col, 10)) for name, col in
           (("a", rows[:, 0]), ("b", rows[:, 1]), ("a_plus_b", total))},
        **{f"{name}_median": float(np.median(col)) for name, col in
           (("a", rows[:, 0]), ("b", rows[:, 1]), ("a_plus_b", total))},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="case (default: both)")  # fmt: skip
    parser.add_argument("--windows", type=int, default=60, help="20 ms windows per round")
    parser.add_argument("--rounds", type=int, default=4, help="alternated rounds (≥ 1)")
    args = parser.parse_args()
    if args.rounds < 1 or args.windows < 1:
        parser.error(f"expected --rounds, --windows ≥ 1, actual {args.rounds}, {args.windows}")
    report: dict[str, Any] = {"load_avg_1min": [os.getloadavg()[0]], "windows": args.windows,
                              "rounds": args.rounds}  # fmt: skip
    original = vars(network_module)["run_steps"]
    for case in args.case or sorted(CASES):
        exp, one, two, one_plan = _networks(CASES[case])
        logs: dict[int, list[np.ndarray]] = {1: [], 2: []}
        for net in (one, two):  # warm-up (compile, first windows)
            _advance(net, exp, 5, one_plan, original)
        for k in range(args.rounds):
            for threads in (1, 2) if k % 2 == 0 else (2, 1):
                net = one if threads == 1 else two
                par = one_plan if threads == 1 else two._plan
                assert par is not None
                par.ticks[:] = 0
                _advance(net, exp, args.windows, one_plan, original)
                blocks = int(par.ticks[0, 3])
                logs[threads].append(par.block_ticks[:, : min(blocks, BLOCK_LOG)].copy())
        result: dict[str, Any] = {"experiment": CASES[case]}
        for threads, parts in logs.items():
            joined = np.concatenate(parts, axis=1)
            result[f"threads_{threads}"] = [
                _phase_stats(joined[t], joined.shape[1]) for t in range(threads)
            ]
        one_p10 = result["threads_1"][0]["a_plus_b_p10"]
        two_p10 = max(t["a_plus_b_p10"] for t in result["threads_2"])
        result["work_per_block_1_over_2_p10"] = one_p10 / two_p10
        result["same_spikes"] = bool(
            np.array_equal(one._last_spike, two._last_spike)
            and np.array_equal(one._ei.weight, two._ei.weight)
        )
        report[case] = result
    report["load_avg_1min"].append(os.getloadavg()[0])
    print(json.dumps(report, indent=2))


def _advance(net: Network, exp: Any, windows: int, one_plan: Threading, original: Any) -> None:
    """``windows`` windows; a one-thread network runs the threaded kernel on ``one_plan``."""
    if net.threads == 1:
        vars(network_module)["run_steps"] = lambda *a: run_threaded(one_plan, a)
    try:
        for _ in range(windows):
            net.advance(exp.stimulus, 20.0)
    finally:
        vars(network_module)["run_steps"] = original


if __name__ == "__main__":
    main()
