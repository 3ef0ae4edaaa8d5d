"""What a threaded kernel call costs before any step is taken; prints JSON.

``bench/bench_threads.py`` times whole runs. At N = 2000 a 20 ms window takes about 2 ms of
kernel, so what a call costs apart from its steps is a visible part of it. This bench
measures that part with calls of zero steps: the network's real arguments (captured from one
window of the Fig 3 network on two threads), with ``n_steps`` set to 0, so that each call
returns as soon as it has started. In one process, alternated for ``--rounds`` rounds of
``--calls`` calls each:

* ``dispatch_one_thread``: :func:`simulator.kernel.run_steps` through Numba's dispatcher, the
  one-thread path (the type checks and unboxing of the kernel's arguments);
* ``dispatch_threaded``: :func:`simulator.threaded.run_steps_threaded` for thread 0 alone,
  the same for the threaded kernel;
* ``pool_round_trip``: a call that does nothing, handed to the kernel's thread pool and
  waited for (waking the pool thread and being woken in turn);
* ``run_threaded``: :func:`simulator.threaded.run_threaded` on the plan's threads: the pool
  hand-over plus each thread's dispatch, which take the GIL in turn.

Microseconds per call, median and range over the rounds (each round's mean). ``run_threaded``
less ``dispatch_one_thread`` is what a call on two threads pays over a call on one, before
any barrier.

    python bench/bench_thread_handover.py [--rounds 5] [--calls 2000] [--n-scale 1.0]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fresh_process import median_range
from json_out import emit

import simulator.network as network_module
import simulator.threaded as threaded
from simulator.experiments import get_experiment
from simulator.network import Network


def _captured(n_scale: float, threads: int) -> tuple[threaded.Threading, tuple[Any, ...]]:
    """The plan and kernel arguments of one window of the Fig 3 network on ``threads``."""
    seen: dict[str, Any] = {}
    original = network_module.run_threaded

    def capture(par: threaded.Threading, args: tuple[Any, ...]) -> None:
        seen["par"], seen["args"] = par, args
        original(par, args)

    cfg = get_experiment("ftsts-desync").network_config("paper", n_scale)
    net = Network(cfg, threads=threads)
    net.reset(seed=1)
    vars(network_module)["run_threaded"] = capture
    try:
        net.advance(None, 20.0)
    finally:
        vars(network_module)["run_threaded"] = original
    if "par" not in seen:
        raise SystemExit(f"expected the network to run on {threads} threads; it ran on one")
    args = seen["args"]
    return seen["par"], (args[0]._replace(n_steps=0), *args[1:])


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (≥ 1)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant and round")
    parser.add_argument("--n-scale", type=float, default=1.0, help="network size (1.0: N = 2000)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the plan (≥ 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"expected --rounds ≥ 1, actual {args.rounds}")
    if args.calls < 1:
        parser.error(f"expected --calls ≥ 1, actual {args.calls}")
    if args.threads < 2:
        parser.error(f"expected --threads ≥ 2, actual {args.threads}")
    if not args.n_scale > 0.0:
        parser.error(f"expected --n-scale > 0, actual {args.n_scale}")
    par, zero = _captured(args.n_scale, args.threads)
    pool = threaded._pool(par.n_threads - 1)
    variants: dict[str, Callable[[], object]] = {
        "dispatch_one_thread": lambda: network_module.run_steps(*zero),
        "dispatch_threaded": lambda: threaded.run_steps_threaded(0, par, *zero),
        "pool_round_trip": lambda: pool.submit(int).result(),
        "run_threaded": lambda: threaded.run_threaded(par, zero),
    }
    for call in variants.values():  # compiled and warm before timing
        _per_call_us(call, 10)
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for k in range(args.rounds):
        for name in names if k % 2 == 0 else names[::-1]:
            rounds[name].append(_per_call_us(variants[name], args.calls))
    report: dict[str, Any] = {
        "n": par.owner.shape[0],
        "threads": par.n_threads,
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "us_per_call": {name: median_range(values) for name, values in rounds.items()},
        "us_per_call_rounds": rounds,
    }
    medians = {name: report["us_per_call"][name]["median"] for name in rounds}
    report["threaded_call_over_one_thread_us"] = (
        medians["run_threaded"] - medians["dispatch_one_thread"]
    )
    emit(report, args.json)


if __name__ == "__main__":
    main()
