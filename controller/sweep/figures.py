"""Heat maps of a study: each metric's mean over seeds, with the seed spread in every cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Default metrics drawn per kind of study.
DEFAULT_METRICS = {"protocol": ["latch_time_s", "r_tail"], "policy": ["r_tail", "charge"]}


def _values(rows: Sequence[dict[str, Any]], metric: str) -> list[float]:
    out = []
    for r in rows:
        v = r.get(metric)
        out.append(float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan)
    return out


def heat_maps(
    rows: Sequence[dict[str, Any]],
    x: str,
    y: str | None,
    metrics: Sequence[str],
    out_dir: Path,
    title: str,
) -> list[Path]:
    """One figure per metric: mean over seeds per (x, y) cell, annotated ``mean ± SD (k/n)``.

    ``k/n`` counts the seeds with a value (a run that never latches has no latch time). Other
    varied parameters are pooled with the seeds. With no ``y``, a line with SD error bars.

    Returns:
        The PNG files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted({float(r[x]) for r in rows})
    ys = sorted({float(r[y]) for r in rows}) if y else [0.0]
    paths = []
    for metric in metrics:
        mean = np.full((len(ys), len(xs)), np.nan)
        sd = np.full_like(mean, np.nan)
        have = np.zeros(mean.shape, dtype=int)
        total = np.zeros(mean.shape, dtype=int)
        for i, yv in enumerate(ys):
            for j, xv in enumerate(xs):
                cell = [r for r in rows if float(r[x]) == xv and (not y or float(r[y]) == yv)]
                vals = np.array(_values(cell, metric))
                total[i, j] = vals.size
                ok = vals[np.isfinite(vals)]
                have[i, j] = ok.size
                if ok.size:
                    mean[i, j], sd[i, j] = ok.mean(), ok.std()
        fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.5, 0.9 * len(ys) + 2.0) if y else (6, 4))
        if y:
            im = ax.imshow(mean, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
            ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
            ax.set_ylabel(y)
            fig.colorbar(im, ax=ax, label=f"{metric} (mean over seeds)")
            lo, hi = (
                np.nanmin(mean) if np.isfinite(mean).any() else 0,
                np.nanmax(mean) if np.isfinite(mean).any() else 1,
            )
            for i in range(len(ys)):
                for j in range(len(xs)):
                    if have[i, j]:
                        text = f"{mean[i, j]:.3g}\n±{sd[i, j]:.2g}"
                        if have[i, j] < total[i, j]:
                            text += f"\n({have[i, j]}/{total[i, j]})"
                        light = hi > lo and (mean[i, j] - lo) / (hi - lo) > 0.6
                    else:
                        text, light = f"none\n(0/{total[i, j]})", True
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if light else "white",
                    )
        else:
            ax.errorbar(xs, mean[0], yerr=sd[0], marker="o", capsize=3)
            ax.set_ylabel(f"{metric} (mean ± SD over seeds)")
        ax.set_xlabel(x)
        ax.set_title(f"{title}: {metric}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"heatmap_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
