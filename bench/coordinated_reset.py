"""Figs 10 and 14: FTSTS in a coordinated-reset pattern against CR alone, over seeds; prints JSON.

The paper's claim for its coordinated-reset figures (its abstract; ``§4.1`` and ``§5`` of
``../shared/specs/ftsts-model.md``) is qualitative: combining FTSTS with coordinated reset
improves on coordinated reset alone. The figures' own numbers are not available, so each seed
runs both members of a pair (``fig10-cr-ftsts`` against ``fig10-cr-only``, ``fig14-cr-ftsts``
against ``fig14-cr-only``) on the same network, noise and CR slot order, and the two are
compared seed by seed: R while stimulating, and how far the mean E→I weight moved from the
stimulation's onset to the run's end (FTSTS's purpose is to depress it; CR alone does not aim
at the weight). Each run is ``neuroloop-sim run --experiment NAME --seed S`` in paper semantics
(N = 2000, the experiments' 5 s).

    python bench/coordinated_reset.py [--seeds 1 2 3 4 5] [--duration 5]
        [--out docs/results/coordinated_reset.json]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from json_out import emit, shown
from tqdm import tqdm

from simulator.experiments import get_experiment
from simulator.run import run_experiment

#: Each pair: (FTSTS in the CR pattern, CR alone), the same network and CR settings
PAIRS = {"10": ("fig10-cr-ftsts", "fig10-cr-only"), "14": ("fig14-cr-ftsts", "fig14-cr-only")}
#: What each run reports (from its summary, plus the weight's move during stimulation)
FIELDS = ("r_pre", "r_stim", "r_tail", "weight_mv", "rate_e_hz", "rate_i_hz", "charge_delivered")


def _run(name: str, seed: int, duration_s: float) -> dict[str, Any]:
    result = run_experiment(get_experiment(name), semantics="paper", seed=seed,
                            duration_s=duration_s)  # fmt: skip
    onset = int(np.argmax(result.window_stim)) if result.window_stim.any() else 0
    before = result.window_weight_mv[onset - 1] if onset > 0 else result.window_weight_mv[0]
    row = {k: result.summary[k] for k in FIELDS}
    row["weight_at_onset_mv"] = float(before)
    row["weight_change_mv"] = float(result.window_weight_mv[-1] - before)
    return row


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="network seeds (default 1 2 3 4 5)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=5.0,
                        help="model seconds per run (default 5, the experiments' own)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if not args.duration > 2.5:
        parser.error(f"expected --duration > 2.5 s (stimulation starts at 1.98 s), actual "
                     f"{args.duration}")  # fmt: skip
    if any(s < 0 for s in args.seeds):
        parser.error(f"expected seeds >= 0, actual {args.seeds}")
    jobs = [(fig, name, seed) for fig in PAIRS for seed in args.seeds for name in PAIRS[fig]]
    runs: dict[str, dict[str, dict[str, Any]]] = {n: {} for pair in PAIRS.values() for n in pair}
    for _fig, name, seed in tqdm(jobs, desc="coordinated reset", unit="run"):
        runs[name][str(seed)] = _run(name, seed, args.duration)
    comparison: dict[str, Any] = {}
    for fig, (cr_ftsts, cr_only) in PAIRS.items():

        def per_seed(name: str, key: str) -> list[float]:
            return [runs[name][str(s)][key] for s in args.seeds]

        ftsts_r, cr_r = per_seed(cr_ftsts, "r_stim"), per_seed(cr_only, "r_stim")
        ftsts_w = per_seed(cr_ftsts, "weight_change_mv")
        cr_w = per_seed(cr_only, "weight_change_mv")
        d_r = [a - b for a, b in zip(ftsts_r, cr_r, strict=True)]
        d_w = [a - b for a, b in zip(ftsts_w, cr_w, strict=True)]
        comparison[fig] = {
            "pair": [cr_ftsts, cr_only],
            "r_stim": {cr_ftsts: _stats(ftsts_r), cr_only: _stats(cr_r)},
            "weight_change_mv": {cr_ftsts: _stats(ftsts_w), cr_only: _stats(cr_w)},
            "r_stim_ftsts_minus_cr": _stats(d_r),
            "seeds_ftsts_lower_r_stim": sum(d < 0 for d in d_r),
            "weight_change_ftsts_minus_cr_mv": _stats(d_w),
            "seeds_ftsts_weight_lower": sum(d < 0 for d in d_w),
            "seeds_ftsts_depresses": sum(w < 0 for w in ftsts_w),
            "seeds_cr_only_depresses": sum(w < 0 for w in cr_w),
        }
    report = {
        "benchmark": "coordinated_reset",
        "command": "python bench/coordinated_reset.py --seeds "
        + " ".join(str(s) for s in args.seeds)
        + (f" --duration {args.duration:g}" if args.duration != 5.0 else "")
        + (f" --out {shown(args.out)}" if args.out is not None else ""),
        "each_run": "neuroloop-sim run --experiment NAME --seed S (paper semantics, N = 2000)",
        "compared_against": "the paper's qualitative claim (spec §4.1, §5 and the abstract): "
        "FTSTS combined with coordinated reset improves on CR alone; no numbers of Figs 10/14 "
        "are available to us",
        "duration_s": args.duration,
        "seeds": args.seeds,
        "comparison": comparison,
        "runs": runs,
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
