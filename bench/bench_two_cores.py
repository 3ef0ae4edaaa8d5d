"""What two cores of this machine give two threads, without the simulator; prints JSON.

The threaded kernel (``simulator/threaded.py``) splits one network's cells between threads,
each sweeping its own range of the same per-cell arrays. This bench separates what the
machine allows from what the kernel does, with two synthetic loops compiled by Numba
(``nogil``), in one process, variants alternated for ``--rounds`` rounds:

* ``compute``: a loop on a private 16 kB array (in L1), run by one thread alone and then by
  two threads at once, each the same work. Their throughput against one thread is the
  ceiling of any split on these cores.
* ``sweep``: a leaky-integrator pass over ``--cells`` cells per step, in the kernel's shape
  (a potential, two synaptic variables and a delay line of 50 rows read and written per
  step), the threads meeting at the kernel's barrier (:mod:`simulator.barrier`) every 25 steps:
  one thread over all cells (``one``); two threads over halves of the *same* arrays cut at a
  multiple of 64 cells, as the kernel cuts (``shared_line_cut``); the same halves of arrays
  of their own (``private``); the same arrays cut at a 4 kB page (``shared_page_cut``; 1024
  float32 cells); and the line cut with the first thread sweeping its half downwards
  (``shared_line_cut_down``: no thread's sweep runs towards the other's cells).

* ``per_cpu``: the ``compute`` loop by one thread pinned to each CPU in turn
  (``os.sched_setaffinity``), alternated: whether the CPUs this VM is given run at the same
  speed (a split kernel waits for its slower thread), and how much one CPU's speed drifts
  from round to round. The guest's steal time over the run (``/proc/stat``) is printed with
  it: a host can slow a virtual CPU without any steal (a busy sibling thread of its core).

Wall seconds per variant (median and range over rounds) and, for two threads, the speed-up
against one. The 1-minute load average is printed: with other processes runnable the two
threads take turns and the numbers measure the machine's load instead (pause other work).

    python bench/bench_two_cores.py [--rounds 7] [--cells 2000] [--steps 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from simulator import aligned
from simulator.barrier import barrier_wait, new_barrier

BLOCK_STEPS = 25
DELAY_ROWS = 50
PAGE_CELLS = 1024  # float32 cells in a 4 kB page
LINE_CELLS = 64  # the threaded kernel's cut granularity (simulator.threaded.CELL_ALIGN)

F32 = npt.NDArray[np.float32]


@njit(nogil=True, cache=False)
def _compute(a, reps):  # type: ignore[no-untyped-def]
    total = 0.0
    for _ in range(reps):
        for i in range(a.shape[0]):
            a[i] = a[i] * np.float32(0.999) + np.float32(0.001)
        total += a[0]
    return total


@njit(nogil=True, cache=False)
def _sweep(n_threads, bar, v, s, x, hist, drive, lo, hi, steps, down):  # type: ignore[no-untyped-def]
    gen = 0
    h = 0
    for k in range(steps):
        row = hist[h]
        for j in range(lo, hi):
            i = lo + hi - 1 - j if down else j
            vv = v[i] * np.float32(0.99) + row[i] * np.float32(0.5) + drive[i]
            spike = vv > np.float32(20.0)
            v[i] = np.float32(0.0) if spike else vv
            s[i] = s[i] * np.float32(0.9) + x[i]
            x[i] = x[i] * np.float32(0.8) + (np.float32(1.0) if spike else np.float32(0.0))
            row[i] = s[i]
        h = h + 1 if h + 1 < hist.shape[0] else 0
        if n_threads > 1 and (k + 1) % BLOCK_STEPS == 0:
            gen = barrier_wait(bar, n_threads, gen)


def _state(cells: int) -> tuple[Any, ...]:
    vectors = tuple(aligned.zeros(cells, np.float32) for _ in range(3))
    return (*vectors, aligned.zeros((DELAY_ROWS, cells), np.float32),
            aligned.full(cells, 0.1, np.float32))  # fmt: skip


def _in_threads(jobs: list[Callable[[], Any]]) -> float:
    """Run ``jobs`` in one thread each; the wall seconds until all are done."""
    start = time.perf_counter()
    workers = [threading.Thread(target=job) for job in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def _sweep_variant(name: str, cells: int, steps: int, shared: tuple[Any, ...],
                   private: list[tuple[Any, ...]]) -> float:  # fmt: skip
    if name == "one":
        start = time.perf_counter()
        _sweep(1, new_barrier(), *shared, 0, cells, steps, False)
        return time.perf_counter() - start
    cut = PAGE_CELLS if name == "shared_page_cut" else (cells // 2 // LINE_CELLS) * LINE_CELLS
    arrays = private if name == "private" else [shared, shared]
    bar = new_barrier()
    down0 = name == "shared_line_cut_down"
    return _in_threads([
        lambda: _sweep(2, bar, *arrays[0], 0, cut, steps, down0),
        lambda: _sweep(2, bar, *arrays[1], cut, cells, steps, False),
    ])  # fmt: skip


SWEEPS = ("one", "shared_line_cut", "private", "shared_page_cut", "shared_line_cut_down")


def _pinned(cpu: int, job: Callable[[], Any]) -> float:
    """Wall seconds of ``job`` in a new thread pinned to ``cpu``."""

    def run() -> None:
        os.sched_setaffinity(0, {cpu})  # 0: the calling thread
        job()

    return _in_threads([run])


def _steal_jiffies() -> int:
    """The guest's total steal time so far (``/proc/stat``, 0 where not reported)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return 0
    return int(fields[8]) if len(fields) > 8 else 0


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median_s": float(np.median(values)), "min_s": min(values), "max_s": max(values),
            "runs_s": values}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7, help="alternated rounds (≥ 1)")
    parser.add_argument(
        "--cells",
        type=int,
        default=2000,
        help=f"cells of the sweep (> {PAGE_CELLS}: the page cut needs both halves)",
    )
    parser.add_argument("--steps", type=int, default=20_000, help="steps of the sweep (≥ 25)")
    args = parser.parse_args()  # fmt: skip
    if args.rounds < 1 or args.cells <= PAGE_CELLS or args.steps < BLOCK_STEPS:
        parser.error(f"expected --rounds ≥ 1, --cells > {PAGE_CELLS}, --steps ≥ {BLOCK_STEPS}; "
                     f"actual {args.rounds}, {args.cells}, {args.steps}")  # fmt: skip
    load = [os.getloadavg()[0]]
    l1 = [aligned.zeros(4096, np.float32) for _ in range(2)]
    shared = _state(args.cells)
    private = [_state(args.cells), _state(args.cells)]
    reps = 400_000
    _compute(l1[0], 1)  # compile
    _sweep(1, new_barrier(), *shared, 0, args.cells, BLOCK_STEPS, False)
    _sweep(1, new_barrier(), *shared, 0, args.cells, BLOCK_STEPS, True)
    cpus = sorted(os.sched_getaffinity(0))
    per_cpu: dict[int, list[float]] = {cpu: [] for cpu in cpus}
    steal0 = _steal_jiffies()
    compute: dict[str, list[float]] = {"one": [], "two": []}
    sweeps: dict[str, list[float]] = {name: [] for name in SWEEPS}
    for k in range(args.rounds):
        order = SWEEPS if k % 2 == 0 else SWEEPS[::-1]
        compute["one"].append(_in_threads([lambda: _compute(l1[0], reps)]))
        compute["two"].append(_in_threads([lambda: _compute(l1[0], reps),
                                           lambda: _compute(l1[1], reps)]))  # fmt: skip
        for name in order:
            sweeps[name].append(_sweep_variant(name, args.cells, args.steps, shared, private))
        for cpu in cpus if k % 2 == 0 else cpus[::-1]:
            per_cpu[cpu].append(_pinned(cpu, lambda: _compute(l1[0], reps)))
    load.append(os.getloadavg()[0])
    medians = {cpu: float(np.median(v)) for cpu, v in per_cpu.items()}
    one_compute = float(np.median(compute["one"]))
    one_sweep = float(np.median(sweeps["one"]))
    report = {
        "cpu_count": os.cpu_count(),
        "load_avg_1min": load,
        "rounds": args.rounds,
        "compute": {
            **{k: _summary(v) for k, v in compute.items()},
            "throughput_two_over_one": 2 * one_compute / float(np.median(compute["two"])),
        },
        "per_cpu": {
            **{str(cpu): _summary(v) for cpu, v in per_cpu.items()},
            "slowest_over_fastest_median": max(medians.values()) / min(medians.values()),
            "max_over_min_of_one_cpu": {str(cpu): max(v) / min(v) for cpu, v in per_cpu.items()},
            "steal_jiffies_during_run": _steal_jiffies() - steal0,
        },
        "sweep": {
            "cells": args.cells,
            "steps": args.steps,
            **{k: _summary(v) for k, v in sweeps.items()},
            "speedup_over_one": {k: one_sweep / float(np.median(v))
                                 for k, v in sweeps.items() if k != "one"},
        },
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
