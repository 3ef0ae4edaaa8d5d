"""The figure of an open-loop run: R(t), mean J_I·W(t), firing rates, rasters before and after."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from simulator.run import RunResult

_RASTER_MS = 200.0
_RASTER_NEURONS = 200


def plot_run(result: RunResult, path: Path) -> Path:
    """Write a four-row figure of ``result`` to ``path`` (PNG) and return the path."""
    fig = plt.figure(figsize=(11, 10), constrained_layout=True)
    grid = fig.add_gridspec(4, 2, height_ratios=[1.0, 1.0, 1.0, 1.3])
    t_s = result.r_t_ms / 1000.0
    win_s = result.window_t_ms / 1000.0
    stim = result.window_stim

    ax = fig.add_subplot(grid[0, :])
    ax.plot(t_s, result.r, lw=0.6, color="tab:blue")
    _shade(ax, win_s, stim)
    ax.set_ylabel("Kuramoto R")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"{result.protocol} ({result.semantics} semantics), N = {result.n_e + result.n_i}, "
        f"seed {result.seed}"
    )

    ax = fig.add_subplot(grid[1, :], sharex=fig.axes[0])
    ax.plot(win_s, result.window_weight_mv, color="tab:red")
    ax.axhline(75.0, color="grey", ls="--", lw=0.8)
    _shade(ax, win_s, stim)
    ax.set_ylabel("mean J_I·W (mV)")

    ax = fig.add_subplot(grid[2, :], sharex=fig.axes[0])
    ax.plot(win_s, _smooth(result.window_rate_e_hz), label="E", color="tab:green")
    ax.plot(win_s, _smooth(result.window_rate_i_hz), label="I", color="tab:purple")
    _shade(ax, win_s, stim)
    ax.set_ylabel("rate (Hz)")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right")

    stim_idx = np.nonzero(stim)[0]
    before_end = result.window_t_ms[stim_idx[0]] - 20.0 if stim_idx.size else result.duration_ms / 2
    after_end = result.duration_ms
    for col, (label, stop) in enumerate(
        (("before stimulation", before_end), ("end of run", after_end))
    ):
        ax = fig.add_subplot(grid[3, col])
        sel = (
            (result.spike_times_ms >= stop - _RASTER_MS)
            & (result.spike_times_ms < stop)
            & ((result.spike_neurons < _RASTER_NEURONS)
               | ((result.spike_neurons >= result.n_e)
                  & (result.spike_neurons < result.n_e + _RASTER_NEURONS // 4)))
        )  # fmt: skip
        neurons = result.spike_neurons[sel]
        y = np.where(neurons < result.n_e, neurons, neurons - result.n_e + _RASTER_NEURONS)
        colours = np.where(neurons < result.n_e, "tab:green", "tab:purple")
        ax.scatter(result.spike_times_ms[sel] / 1000.0, y, s=1.5, c=colours, marker="|")
        ax.set_title(f"raster, {label}")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("neuron (E green, I purple)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shade(ax: Axes, win_s: np.ndarray, stim: np.ndarray) -> None:
    idx = np.nonzero(stim)[0]
    if idx.size:
        ax.axvspan(win_s[idx[0]] - 0.02, win_s[idx[-1]], color="gold", alpha=0.15, lw=0)


def _smooth(x: np.ndarray, width: int = 25) -> np.ndarray:
    if x.size < width:
        return x
    kernel = np.ones(width)
    return np.convolve(x, kernel, mode="same") / np.convolve(np.ones_like(x), kernel, mode="same")
