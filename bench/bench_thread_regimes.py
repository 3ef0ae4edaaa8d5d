"""One and two threads in the network's two regimes (Fig 5 network, N = 10 000); prints JSON.

``bench/bench_threads.py`` times the Fig 5 protocol whole: 1.98 s unstimulated (the network
synchronous, its spikes in bursts), then FTSTS (it desynchronises). This bench splits the
kernel's time by what the network was doing, in fresh processes alternated round by round
(1 and 2 threads, the two regimes):

* ``protocol``: the protocol as ``neuroloop-sim run`` runs it (the same latch rule), each
  window's kernel time (``WindowStats.wall_s``) summed separately over the unstimulated and
  the stimulated windows;
* ``stimulated``: the same network with the protocol's train on from the first window (it is
  asynchronous within a few windows), all windows but the first three summed.

Medians with ranges per variant, and the 1-thread / 2-thread ratio of the medians per phase.

    python bench/bench_thread_regimes.py [--rounds 3] [--seconds 5] [--experiment NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from fresh_process import median_range, run_case
from json_out import emit

#: One run in a fresh process: argv = threads, regime, seconds, experiment; prints one JSON line
CASE = r"""
import json, sys
import numpy as np
from simulator.config import CHUNK_MS
from simulator.experiments import get_experiment
from simulator.latch import Latch
from simulator.network import Network
threads, regime, seconds, name = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
exp = get_experiment(name)
cfg = exp.network_config("paper", 1.0)
net = Network(cfg, threads=threads)
net.reset(seed=1)
latch = Latch(exp.latch_rule, exp.onset_ms)
w_now, w_ie = net.weight_mv, cfg.j_e_mv * cfg.w_ei
walls, active = [], []
for w in range(round(seconds * 1000.0 / CHUNK_MS)):
    on = True if regime == "stimulated" else latch.stimulating(w * CHUNK_MS, w_now, w_ie)
    st = net.advance(exp.stimulus if on else None, CHUNK_MS)
    w_now, w_ie = st.weight_mv, st.weight_ie_mv
    walls.append(st.wall_s)
    active.append(on)
walls, active = np.array(walls[3:]), np.array(active[3:])  # the first calls load the kernels
print(json.dumps({"unstimulated_s": float(walls[~active].sum()),
                  "unstimulated_windows": int((~active).sum()),
                  "stimulated_s": float(walls[active].sum()),
                  "stimulated_windows": int(active.sum())}))
"""


def _run(threads: int, regime: str, seconds: float, experiment: str) -> dict[str, Any]:
    return run_case(CASE, [str(threads), regime, str(seconds), experiment],
                    f"{regime} on {threads} threads")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="model seconds per run (default 5, the Fig 5 protocol's)")  # fmt: skip
    parser.add_argument(
        "--experiment", default="ftsts-desync-10k",
        help="protocol and network (default ftsts-desync-10k: N = 10 000)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"expected --rounds >= 1, actual {args.rounds}")
    if not args.seconds > 2.5:
        parser.error(f"expected --seconds > 2.5 (stimulation starts at 1.98 s), actual "
                     f"{args.seconds}")  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}
    for k in range(args.rounds):
        order = [(t, r) for t in (1, 2) for r in ("protocol", "stimulated")]
        for threads, regime in order if k % 2 == 0 else order[::-1]:
            result = _run(threads, regime, args.seconds, args.experiment)
            runs.setdefault(f"{regime}/threads_{threads}", []).append(result)
            print(f"round {k + 1}: {regime} on {threads} thread(s): {result}", file=sys.stderr)
    phases = {"protocol": ("unstimulated_s", "stimulated_s"), "stimulated": ("stimulated_s",)}
    summary: dict[str, Any] = {}
    for regime, keys in phases.items():
        for key in keys:
            one = [r[key] for r in runs[f"{regime}/threads_1"]]
            two = [r[key] for r in runs[f"{regime}/threads_2"]]
            summary[f"{regime}/{key}"] = {
                "threads_1": median_range(one),
                "threads_2": median_range(two),
                "speedup_median_1_over_2": statistics.median(one) / statistics.median(two),
            }
    emit({
        "benchmark": "thread_regimes",
        "experiment": args.experiment,
        "model_s": args.seconds,
        "rounds": args.rounds,
        "load_avg_1min": os.getloadavg()[0],
        "summary": summary,
        "runs": runs,
    }, None)  # fmt: skip


if __name__ == "__main__":
    main()
