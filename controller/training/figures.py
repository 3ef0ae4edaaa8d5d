"""Figures of a training run and an evaluation, in the layout of the seed's "Results" section."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.training.evaluate import (
    DESYNC_R,
    DESYNC_WINDOW_MS,
    FTSTS_LATCH_MV,
    LATCHED_LATCH_MV,
    LATCHED_SLOW_LATCH_MV,
    LATCHED_SLOW_SETPOINT_MA,
    METHODS,
    RASTER_MS,
    SENSED_METHODS,
    RunRecord,
)

FloatArray = npt.NDArray[np.float64]
COLORS = {"policy": "tab:blue", "ftsts": "tab:red", "ftsts-sensed": "tab:pink",
          "adbs-onoff": "tab:green", "adbs-single": "tab:purple", "adbs-dual": "tab:olive",
          "adbs-prop": "tab:cyan", "latched": "tab:orange", "latched-slow": "tab:brown",
          "off": "tab:gray"}  # fmt: skip
_SLOW = f"{LATCHED_SLOW_SETPOINT_MA.amplitude:g} mA/{LATCHED_SLOW_SETPOINT_MA.frequency_hz:g} Hz"
LABELS = {
    "policy": "closed-loop policy",
    "ftsts": "open-loop FTSTS",
    "ftsts-sensed": "FTSTS, sensed latch",
    "adbs-onoff": "aDBS on/off (B1)",
    "adbs-single": "aDBS single threshold (B3-ST)",
    "adbs-dual": "aDBS dual threshold (B3-DT)",
    "adbs-prop": "aDBS proportional (B2)",
    "latched": "latched 110 mV/180 Hz",
    "latched-slow": f"slow train {_SLOW}, device",
    "off": "no stimulation",
}
#: Two-line labels for bar charts, where the long labels would overlap.
SHORT_LABELS = {
    "policy": "closed-loop\npolicy",
    "ftsts": "open-loop\nFTSTS",
    "ftsts-sensed": "FTSTS\nsensed\nlatch",
    "adbs-onoff": "aDBS\non/off",
    "adbs-single": "aDBS\nsingle\nthreshold",
    "adbs-dual": "aDBS\ndual\nthreshold",
    "adbs-prop": "aDBS\nproport.",
    "latched": "latched\n110 mV\n180 Hz",
    "latched-slow": "slow\n" + _SLOW.replace("/", "\n"),
    "off": "no\nstimulation",
}
#: Episodes in the running mean drawn over the training curves.
SMOOTH_EPISODES = 20
#: TensorBoard scalars drawn as training losses.
LOSS_TAGS = ("train/loss", "train/value_loss", "train/policy_gradient_loss")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_monitor(run_dirs: Sequence[Path]) -> dict[str, FloatArray]:
    """Concatenate every ``*.monitor.csv`` of the runs (in order) into per-episode columns."""
    cols: dict[str, list[float]] = {"r": [], "l": [], "r_tail": [], "total_charge_mv_ms": []}
    for run in run_dirs:
        for file in sorted(Path(run).glob("*.monitor.csv")):
            with file.open(encoding="utf-8") as fh:
                fh.readline()  # the JSON header line
                for row in csv.DictReader(fh):
                    for key in cols:
                        cols[key].append(float(row.get(key) or "nan"))
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


def read_losses(run_dirs: Sequence[Path]) -> dict[str, tuple[FloatArray, FloatArray]]:
    """TensorBoard loss scalars of the runs: ``tag -> (steps, values)``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, tuple[list[float], list[float]]] = {t: ([], []) for t in LOSS_TAGS}
    for run in run_dirs:
        for events in sorted(Path(run).glob("tb/**/events.out.tfevents.*")):
            acc = EventAccumulator(str(events))
            acc.Reload()
            tags = set(acc.Tags().get("scalars", []))
            for tag in LOSS_TAGS:
                if tag in tags:
                    for ev in acc.Scalars(tag):
                        out[tag][0].append(float(ev.step))
                        out[tag][1].append(float(ev.value))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in out.items() if s}


def _smooth(x: FloatArray, n: int = SMOOTH_EPISODES) -> FloatArray:
    if x.size < n:
        return x
    kernel = np.ones(n) / n
    return np.convolve(x, kernel, mode="valid")


def training_curves(run_dirs: Sequence[Path], out: Path) -> Path | None:
    """Episode reward, tail R, charge and losses over training; ``None`` if no logs exist."""
    mon = read_monitor(run_dirs)
    if mon["r"].size == 0:
        return None
    losses = read_losses(run_dirs)
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ep = np.arange(1, mon["r"].size + 1)
    for ax, key, label in (
        (axes[0, 0], "r", "episode reward"),
        (axes[0, 1], "r_tail", "tail R (mean, 5 s tail)"),
        (axes[1, 0], "total_charge_mv_ms", "charge per episode (mV·ms)"),
    ):
        ax.plot(ep, mon[key], ".", ms=2, alpha=0.3, color="tab:blue", label="one episode")
        sm = _smooth(mon[key])
        ax.plot(ep[ep.size - sm.size :], sm, color="tab:blue", lw=1.5,
                label=f"trailing mean of {min(SMOOTH_EPISODES, ep.size)} episodes")  # fmt: skip
        ax.set_xlabel("episode")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    ax = axes[1, 1]
    for tag, (steps, values) in losses.items():
        ax.plot(steps, values, lw=1, label=tag.split("/")[1])
    ax.set_xlabel("agent steps")
    if losses:
        ax.set_ylabel("training loss (symmetric log, linear within ±0.01)")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend(fontsize=8)
    else:
        ax.set_ylabel("training loss")
        ax.text(0.5, 0.5, "no TensorBoard loss scalars in the run directories",
                transform=ax.transAxes, ha="center", fontsize=8)  # fmt: skip
    fig.suptitle("Training progress, runs in order: " + ", ".join(Path(r).name for r in run_dirs))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _stim_span(ax: Any, onset_s: float, stop_s: float) -> None:
    ax.axvspan(onset_s, stop_s, color="0.92", zorder=0, label="controlled period")


def comparison_figures(
    records: list[RunRecord], onset_s: float, controlled_s: float, out_dir: Path
) -> list[Path]:
    """Synchrony, weight, rasters, policy settings and the summary bars (first seed's traces)."""
    plt = _plt()
    paths: list[Path] = []
    seed = min(r.seed for r in records)
    first = {r.method: r for r in records if r.seed == seed}
    stop_s = onset_s + controlled_s

    fig, ax = plt.subplots(figsize=(9, 3.5))
    _stim_span(ax, onset_s, stop_s)
    for m in METHODS:
        if m in first:
            ax.plot(first[m].t_r_s, first[m].r_1s, color=COLORS[m], label=LABELS[m], lw=1.2)
    ax.axhline(DESYNC_R, color="k", ls=":", lw=0.8, label=f"desynchronised below R = {DESYNC_R:g}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"Kuramoto R (trailing {DESYNC_WINDOW_MS / 1000:g} s mean)")
    ax.set_ylim(0, 1)
    ax.set_title(f"Synchrony of the E cells, network seed {seed}")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    paths.append(_save(fig, plt, out_dir / "synchrony.png"))

    fig, ax = plt.subplots(figsize=(9, 3.5))
    _stim_span(ax, onset_s, stop_s)
    for m in METHODS:
        if m in first:
            ax.plot(first[m].t_window_s, first[m].weight_mv, color=COLORS[m], label=LABELS[m])
    ax.axhline(FTSTS_LATCH_MV, color=COLORS["ftsts"], ls=":", lw=0.8,
               label=f"FTSTS latch ({FTSTS_LATCH_MV:g} mV)")  # fmt: skip
    if "latched" in first:
        ax.axhline(LATCHED_LATCH_MV, color=COLORS["latched"], ls=":", lw=0.8,
                   label=f"latched-train latch ({LATCHED_LATCH_MV:g} mV)")  # fmt: skip
    if "latched-slow" in first and LATCHED_SLOW_LATCH_MV > 0:
        ax.axhline(LATCHED_SLOW_LATCH_MV, color=COLORS["latched-slow"], ls=":", lw=0.8,
                   label=f"slow-train latch ({LATCHED_SLOW_LATCH_MV:g} mV)")  # fmt: skip
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mean J_I·W (mV)")
    ax.set_title(f"Mean effective E→I synaptic weight, network seed {seed}")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    paths.append(_save(fig, plt, out_dir / "weight.png"))

    methods = [m for m in METHODS if m in first]
    fig, axes = plt.subplots(2, len(methods), figsize=(4 * len(methods), 6), squeeze=False)
    for j, m in enumerate(methods):
        n_e = first[m].n_e
        for i, (raster, when) in enumerate(
            (
                (first[m].raster_pre, f"last {RASTER_MS / 1000:g} s before stimulation"),
                (first[m].raster_post, f"last {RASTER_MS / 1000:g} s of the tail"),
            )
        ):
            ax = axes[i, j]
            t, n = raster
            ax.scatter(t / 1000.0, n, s=0.3, c="k", marker=".", linewidths=0)
            if n_e:
                ax.axhline(n_e - 0.5, color="tab:red", lw=0.6)
            ax.set_title(f"{LABELS[m]}:\n{when}", fontsize=9)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("cell (E below the red line, I above)", fontsize=8)
    fig.suptitle(f"Spike rasters of every cell, network seed {seed}")
    fig.tight_layout()
    paths.append(_save(fig, plt, out_dir / "rasters.png"))

    shown = [m for m in ("policy", *SENSED_METHODS) if m in first]
    if shown:
        fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True)
        for m in shown:
            p = first[m]
            for ax, values in zip(axes, (p.amplitude_mv, p.frequency_hz, p.pulse_width_us),
                                  strict=True):  # fmt: skip
                ax.step(p.t_window_s, values, where="pre", color=COLORS[m], label=LABELS[m],
                        lw=1.0)  # fmt: skip
        for ax, label in zip(axes, ("amplitude (mV)", "frequency (Hz)", "pulse width (µs)"),
                             strict=True):  # fmt: skip
            _stim_span(ax, onset_s, stop_s)
            ax.set_ylabel(label)
        axes[0].legend(fontsize=7, loc="upper right")
        axes[2].set_xlabel("time (s)")
        axes[0].set_title(
            f"Closed-loop stimulation settings after the safety envelope, network seed "
            f"{seed}\n(shaded: controlled period; frequency and width are not drawn while off)",
            fontsize=10,
        )
        fig.tight_layout()
        paths.append(_save(fig, plt, out_dir / "policy_settings.png"))

    paths.append(_save(summary_figure(records, methods, plt), plt, out_dir / "summary.png"))
    return paths


def summary_values(records: list[RunRecord], method: str, key: str) -> FloatArray:
    """One value per seed of ``method`` (``None`` time to desync: NaN)."""
    values = [getattr(r, key) for r in records if r.method == method]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def summary_figure(records: list[RunRecord], methods: list[str], plt: Any) -> Any:
    """Tail R, charge and time to desynchronise per method: mean ± SD bars and every seed."""
    n_seeds = len({r.seed for r in records})
    if len(methods) <= 4:
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    else:  # one panel a row, so that every method's label has room
        fig, axes = plt.subplots(3, 1, figsize=(max(9.0, 1.2 * len(methods)), 10))
    panels = (
        ("r_tail", "tail R (mean over the 5 s tail)"),
        ("charge", "charge delivered (mV·ms)"),
        ("time_to_desync_s", "time to desynchronise (s)"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for k, m in enumerate(methods):
            vals = summary_values(records, m, key)
            done = vals[np.isfinite(vals)]
            if done.size:
                ax.bar(k, done.mean(), yerr=done.std(), color=COLORS[m], alpha=0.6, capsize=3,
                       label="mean ± SD" if k == 0 else None)  # fmt: skip
                ax.plot(np.full(done.size, k), done, "k.", ms=4,
                        label="one seed" if k == 0 else None)  # fmt: skip
            if done.size < vals.size:
                ax.annotate(f"never\n({vals.size - done.size} of {vals.size})", (k, 0.0),
                            ha="center", va="bottom", fontsize=7)  # fmt: skip
        ax.set_xticks(range(len(methods)), [SHORT_LABELS[m] for m in methods], fontsize=8)
        ax.set_ylabel(label)
        ax.ticklabel_format(axis="y", style="plain")
    axes[0].legend(fontsize=7)
    axes[2].set_title(
        f"from onset until the trailing {DESYNC_WINDOW_MS / 1000:g} s mean of R\nstays "
        f"below {DESYNC_R:g} (up to 1 s late by construction)",
        fontsize=8,
    )
    fig.suptitle(f"Held-out network seeds (n = {n_seeds})")
    fig.tight_layout()
    return fig


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
