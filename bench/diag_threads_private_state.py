"""Diagnosis: one network on two threads, with thread 1 on private copies of some state; prints.

Not a speed setting and its results are not valid (each thread keeps its own copy of the
chosen arrays, so the copies drift): it asks which of the arrays the two threads share costs
them time. Alternated in one process, ``--windows`` 20 ms windows of the Fig 3 network
(N = 2000) each: ``split`` (the threaded kernel as it is) and ``private`` (thread 1 works on
copies of the kernel arguments listed in ``--copy``: 2 neuron state, 4 spike state,
5 plasticity state, 7 synapses, 9 Kuramoto state). Prints each run's wall time, each thread's
median ticks per block in phases A + B (``Threading.block_ticks``) and barrier seconds.

    python bench/diag_threads_private_state.py [--copy 2] [--rounds 3] [--windows 150]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

import simulator.network as network_module
import simulator.threaded as threaded
from simulator import aligned
from simulator.experiments import get_experiment
from simulator.network import Network

_COPIES: dict[int, list[Any]] = {}


def _deep(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        c = aligned.zeros(x.shape, x.dtype)
        c[...] = x
        return c
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*[_deep(a) for a in x])
    return x


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copy", default="2,4,5,7,9", help="argument positions to copy")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (≥ 1)")
    parser.add_argument("--windows", type=int, default=150, help="20 ms windows per run")
    args = parser.parse_args()
    which = {int(x) for x in args.copy.split(",")}

    def private(par: threaded.Threading, kargs: tuple[Any, ...]) -> None:
        if id(par) not in _COPIES:
            _COPIES[id(par)] = [_deep(a) if i in which else None for i, a in enumerate(kargs)]
        mine = tuple(
            c if c is not None else a for c, a in zip(_COPIES[id(par)], kargs, strict=True)
        )
        if 4 in which:  # the copy's spike flags as words
            spk = mine[4]
            mine = (*mine[:4], spk._replace(spiked_words=spk.spiked.view(np.uint64)), *mine[5:])
        par.barrier[:] = 0
        par.rng[1:] = kargs[8].rng_state
        future = threaded._pool(1).submit(threaded._share, 1, par, mine)
        try:
            threaded._share(0, par, kargs)
        finally:
            future.result()

    exp = get_experiment("ftsts-desync")
    cfg = exp.network_config("paper", 1.0)
    nets = {"split": Network(cfg, threads=2), "private": Network(cfg, threads=2)}
    kernels = {"split": threaded.run_threaded, "private": private}
    for net in nets.values():
        net.reset(seed=1)

    def advance(name: str, windows: int) -> None:
        vars(network_module)["run_threaded"] = kernels[name]
        for _ in range(windows):
            nets[name].advance(exp.stimulus, 20.0)

    for name in nets:
        advance(name, 5)
    print(f"copied arguments {sorted(which)}")
    for k in range(args.rounds):
        for name in ("split", "private") if k % 2 == 0 else ("private", "split"):
            par = nets[name]._plan
            assert par is not None
            par.ticks[:] = 0
            t0 = time.perf_counter()
            advance(name, args.windows)
            wall = time.perf_counter() - t0
            blocks = int(min(par.ticks[0, 3], threaded.BLOCK_LOG))
            rows = par.block_ticks[:, :blocks]
            med = [int(np.median(rows[t, :, 0] + rows[t, :, 1])) for t in range(2)]
            bar = [round(float(par.ticks[t, 2]) / 2.1e9, 3) for t in range(2)]
            print(f"{name:8s} wall {wall:.3f} s, median A+B per block {med}, barrier s {bar}, "
                  f"load {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
