"""Results of a fit: ranked solutions, their spread, JSON/CSV files and a trace figure.

Several parameter sets usually reproduce the same measurements (parameters are not always
identifiable), so the product is the *list* of acceptable sets, ranked by score, together with
how far they spread per parameter.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fitting.measurements import MeasurementSet
from fitting.objective import Evaluation
from fitting.parameters import ParameterSpace

#: pyplot keeps global state: figures drawn from several threads (a folder's lanes) take turns.
_PYPLOT_LOCK = threading.Lock()


def rank_solutions(
    history: Sequence[Evaluation], k: float, limit: int | None = 50
) -> list[Evaluation]:
    """Distinct evaluations with every ``|z| <= k``, best score first (at most ``limit``)."""
    seen: set[tuple[float, ...]] = set()
    ranked = []
    for evaluation in sorted((e for e in history if e.reproduces(k)), key=lambda e: e.score):
        key = tuple(round(v, 12) for v in evaluation.params.values())
        if key not in seen:
            seen.add(key)
            ranked.append(evaluation)
    return ranked if limit is None else ranked[:limit]


def count_solutions(history: Sequence[Evaluation], k: float) -> int:
    """How many distinct parameter sets reproduce every target within ``k`` (no cap)."""
    return len(rank_solutions(history, k, None))


def best_max_abs_z(history: Sequence[Evaluation]) -> float | None:
    """The smallest max|z| of any evaluation (``None`` before the first).

    A set reproduces the measurements when its max|z| is at most ``k``, so this is how close
    the fit has come to acceptance. The progress bar, the ``fit_done`` log line, the closing
    line of ``neuroloop-fit`` and the first of ``best_candidates`` all report this one number.
    """
    return min((e.max_abs_z for e in history), default=None)


def best_candidates(history: Sequence[Evaluation], count: int = 5) -> list[Evaluation]:
    """The ``count`` evaluations closest to reproducing, whether or not they do.

    Ordered by max|z| (the acceptance criterion, see :func:`best_max_abs_z`), ties by score.
    """
    return sorted(history, key=lambda e: (e.max_abs_z, e.score))[:count]


def spread_summary(
    solutions: Sequence[Evaluation], space: ParameterSpace
) -> dict[str, dict[str, float]]:
    """Per parameter: min, median, max, fold range (max/min) and the share of its box covered.

    A parameter whose solutions cover much of its search box is poorly constrained by the
    measurements (not identifiable from them).
    """
    summary: dict[str, dict[str, float]] = {}
    if not solutions:
        return summary
    for spec in space.specs:
        values = np.array([s.params[spec.name] for s in solutions])
        unit = np.array([spec.to_unit(float(v)) for v in values])
        low, high = float(values.min()), float(values.max())
        summary[spec.name] = {
            "min": low,
            "median": float(np.median(values)),
            "max": high,
            "fold_range": high / low if low > 0 else math.inf,
            "box_fraction_covered": float(unit.max() - unit.min()),
        }
    return summary


def write_results(
    out_dir: Path,
    solutions: Sequence[Evaluation],
    candidates: Sequence[Evaluation],
    space: ParameterSpace,
    measurements: MeasurementSet,
    run: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``solutions.json`` and ``solutions.csv``; return the JSON document."""
    keys = [t.key for t in measurements.targets]
    spread = spread_summary(solutions, space)
    document: dict[str, Any] = {
        "run": dict(run),
        "targets": measurements.to_dict()["targets"],
        "solutions": [
            {
                "rank": i + 1,
                "score": s.score,
                "max_abs_z": s.max_abs_z,
                "params": s.params,
                "z": s.z,
            }
            for i, s in enumerate(solutions)
        ],
        "spread": spread,
        "best_candidates": [
            {
                "score": c.score,
                "max_abs_z": c.max_abs_z,
                "status": c.status,
                "params": c.params,
                "z": c.z,
                "statuses": c.statuses,
            }
            for c in candidates
        ],
    }
    (out_dir / "solutions.json").write_text(json.dumps(document, indent=2))
    with (out_dir / "solutions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "score", "max_abs_z", *space.names, *(f"z:{k}" for k in keys)])
        for i, s in enumerate(solutions):
            writer.writerow(
                [
                    i + 1,
                    f"{s.score:.6g}",
                    f"{s.max_abs_z:.6g}",
                    *(f"{s.params[n]:.6g}" for n in space.names),
                    *(f"{s.z[k]:.4g}" for k in keys),
                ]
            )
    return document


def plot_traces(
    path: Path,
    traces: Sequence[Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    labels: Sequence[str],
    best: Evaluation,
    measurements: MeasurementSet,
    k: float,
    title: str | None = None,
) -> None:
    """One panel per stimulus with the best traces, and a panel of the best set's z-scores.

    Args:
        path: PNG to write.
        traces: Per plotted parameter set, ``stimulus → (t_ms, v_mv)``.
        labels: Legend label per parameter set.
        best: The best evaluation (its z-scores are drawn against the ±k band).
        measurements: For the stimulus descriptions and target order.
        k: Acceptance threshold.
        title: Figure title (what was fitted, how many simulations).
    """
    with _PYPLOT_LOCK:  # pyplot's state is global: one figure at a time
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        stimuli = [p for p in measurements.stimuli if measurements.features_for(p.name)]
        fig, axes = plt.subplots(len(stimuli) + 1, 1, figsize=(9, 3.0 * (len(stimuli) + 1)))
        for axis, stim in zip(axes, stimuli, strict=False):
            for trace_set, label in zip(traces, labels, strict=True):
                t_ms, v_mv = trace_set[stim.name]
                axis.plot(t_ms, v_mv, lw=0.8, label=label)
            axis.axvspan(stim.delay_ms, stim.stim_end_ms, color="0.9", zorder=0,
                         label=f"current step {stim.amplitude_na:+g} nA")  # fmt: skip
            axis.set_title(
                f"stimulus {stim.name}: {stim.amplitude_na:+g} nA step at {stim.location}, "
                f"{stim.delay_ms:g}–{stim.stim_end_ms:g} ms",
                fontsize=10,
            )
            axis.set_xlabel("time (ms)")
            axis.set_ylabel("V (mV)")
            axis.legend(fontsize=7, loc="upper right")
        keys = [t.key for t in measurements.targets]
        z = [max(-10.0, min(10.0, best.z[key])) for key in keys]
        bottom = axes[-1]
        bottom.axhspan(-k, k, color="tab:green", alpha=0.15, label=f"|z| ≤ {k:g}")
        bottom.bar(range(len(keys)), z, color=["tab:blue" if abs(v) <= k else "tab:red" for v in z])
        bottom.set_xticks(range(len(keys)), keys, rotation=30, ha="right", fontsize=7)
        bottom.axhline(0.0, color="0.5", lw=0.6)
        bottom.set_ylabel("z = (feature − target mean) / SD\n(clipped to ±10)", fontsize=8)
        bottom.set_title(
            f"z-scores of the first set drawn above (red: outside the accepted |z| ≤ {k:g})",
            fontsize=10,
        )
        bottom.legend(fontsize=7, loc="upper right")
        if title:
            fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
