"""Where two threads lose time: one network split in two against two networks side by side.

Prints JSON. In one process, alternated for ``--rounds`` rounds, each ``--windows`` 20 ms
windows of the Fig 3 network (N = 2000) on the threaded kernel:

* ``alone``: one network on a one-thread plan, nothing else running in the process;
* ``two_copies``: two networks, each on a one-thread plan, in two threads at once (the same
  work per thread as ``alone``, no data shared: what the machine gives two busy threads);
* ``split``: one network on two threads (the threaded kernel's partition; half the cells each).

For each: wall seconds, each thread's median ticks per block in phases A + B
(``Threading.block_ticks``: time-stamp ticks, interruptions included), and each thread's
seconds on a CPU and waiting in the run queue (Linux ``/proc/self/task/*/schedstat``): a
thread that slept at a barrier and was woken waits there until its core is free again.

    python bench/bench_thread_contention.py [--rounds 3] [--windows 150]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

import numpy as np

import simulator.network as network_module
from simulator.experiments import get_experiment
from simulator.network import Network
from simulator.threaded import BLOCK_LOG, Threading, plan, run_threaded

_LOCAL = threading.local()


def _sched() -> dict[str, tuple[int, int]]:
    """Per thread of this process: nanoseconds on a CPU and waiting in the run queue."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                run_ns, wait_ns, _ = f.read().split()
        except OSError:
            continue
        out[tid] = (int(run_ns), int(wait_ns))
    return out


def _one_thread_kernel(*args: Any) -> None:
    run_threaded(_LOCAL.plan, args)


def _median_block(par: Threading, t: int) -> float:
    blocks = int(min(par.ticks[t, 3], BLOCK_LOG))
    rows = par.block_ticks[t, :blocks]
    return float(np.median(rows[:, 0] + rows[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (≥ 1)")
    parser.add_argument("--windows", type=int, default=150, help="20 ms windows per variant")
    args = parser.parse_args()
    if args.rounds < 1 or args.windows < 1:
        parser.error(f"expected --rounds, --windows ≥ 1, actual {args.rounds}, {args.windows}")
    exp = get_experiment("ftsts-desync")
    cfg = exp.network_config("paper", 1.0)
    vars(network_module)["run_steps"] = _one_thread_kernel
    singles = [Network(cfg, threads=1) for _ in range(2)]
    plans = []
    for net in singles:
        net.reset(seed=1)
        plans.append(plan(cfg.n, cfg.n_e, 1, cfg.delay_steps, net._ei, net._ie))
    split = Network(cfg, threads=2)
    split.reset(seed=1)

    def advance(i: int, windows: int) -> None:
        _LOCAL.plan = plans[i]
        for _ in range(windows):
            singles[i].advance(exp.stimulus, 20.0)

    for i in range(2):
        advance(i, 5)
    for _ in range(5):
        split.advance(exp.stimulus, 20.0)
    report: dict[str, Any] = {"windows": args.windows, "rounds": args.rounds,
                              "load_avg_1min": [os.getloadavg()[0]]}  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {"alone": [], "two_copies": [], "split": []}
    for k in range(args.rounds):
        order = ["alone", "two_copies", "split"]
        for name in order if k % 2 == 0 else order[::-1]:
            for par in [*plans, split._plan]:
                if par is not None:
                    par.ticks[:] = 0
            s0 = _sched()
            t0 = time.perf_counter()
            if name == "alone":
                advance(0, args.windows)
            elif name == "two_copies":
                workers = [
                    threading.Thread(target=advance, args=(i, args.windows)) for i in range(2)
                ]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
            else:
                for _ in range(args.windows):
                    split.advance(exp.stimulus, 20.0)
            wall = time.perf_counter() - t0
            s1 = _sched()
            busy = sorted(
                ((s1[t][0] - s0.get(t, (0, 0))[0]) / 1e9, (s1[t][1] - s0.get(t, (0, 0))[1]) / 1e9)
                for t in s1
                if s1[t][0] - s0.get(t, (0, 0))[0] > 0.01 * 1e9
            )
            if name == "split":
                assert split._plan is not None
                ticks = [_median_block(split._plan, t) for t in range(2)]
            else:
                ticks = [_median_block(plans[i], 0) for i in range(1 if name == "alone" else 2)]
            runs[name].append({
                "wall_s": wall, "median_ticks_a_plus_b_per_block": ticks,
                "threads_cpu_s_and_runqueue_wait_s": busy,
            })  # fmt: skip
    report["load_avg_1min"].append(os.getloadavg()[0])
    report["runs"] = runs
    alone = np.median([r["median_ticks_a_plus_b_per_block"][0] for r in runs["alone"]])
    copies = np.median([max(r["median_ticks_a_plus_b_per_block"]) for r in runs["two_copies"]])
    halves = np.median([max(r["median_ticks_a_plus_b_per_block"]) for r in runs["split"]])
    report["summary"] = {
        "alone_ticks_per_block": float(alone),
        "two_copies_slower_thread_ticks_per_block": float(copies),
        "split_slower_thread_ticks_per_block": float(halves),
        "split_over_alone": float(halves / alone),
        "wall_s_median": {n: float(np.median([r["wall_s"] for r in rs])) for n, rs in runs.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
