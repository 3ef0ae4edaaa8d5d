"""The figure of an open-loop run: R(t), mean J_I·W(t), firing rates, rasters before and after.

What each panel shows (also written on the figure):

* Kuramoto R of the E cells on a 1 ms grid, unsmoothed (:func:`simulator.run.run_experiment`
  leaves it undefined near the run's start and end, where the cells that still have a phase
  are a selection by phase: see :func:`simulator.synchrony.order_parameter`);
* the mean effective E→I weight J_I·W at the end of each 20 ms window, with the protocol's
  latch threshold;
* E and I population firing rates per 20 ms window, as a centred 0.5 s moving mean
  (:data:`RATE_SMOOTH_WINDOWS` windows, fewer at the run's edges, never padded);
* spike rasters of the first :data:`RASTER_E_CELLS` E and :data:`RASTER_I_CELLS` I cells
  over the :data:`RASTER_MS` ms before stimulation starts and at the end of the run.

Every panel shades the windows in which stimulation was on.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes

from simulator.config import CHUNK_MS
from simulator.run import PRE_EPOCH_MS, RunResult

FloatArray = npt.NDArray[np.float64]

#: Length of each raster (ms).
RASTER_MS = 200.0
#: Cells shown in the rasters: the first E cells and the first I cells (at most).
RASTER_E_CELLS = 200
RASTER_I_CELLS = 50
#: Windows (20 ms each) in the centred moving mean of the firing rates.
RATE_SMOOTH_WINDOWS = 25
_STIM_COLOUR = "gold"


def plot_run(result: RunResult, path: Path) -> Path:
    """Write a four-row figure of ``result`` to ``path`` (PNG) and return the path."""
    from simulator.experiments import EXPERIMENTS

    protocol = EXPERIMENTS.get(result.protocol)
    latch_mv = protocol.latch_mv if protocol is not None else None
    fig = plt.figure(figsize=(11, 11), constrained_layout=True)
    grid = fig.add_gridspec(4, 2, height_ratios=[1.0, 1.0, 1.0, 1.3])
    t_s = result.r_t_ms / 1000.0
    win_s = result.window_t_ms / 1000.0
    stim = result.window_stim
    stim_label = _stim_label(result)
    fig.suptitle(
        f"{result.protocol} ({result.semantics} semantics), N = {result.n_e + result.n_i} "
        f"({result.n_e} E, {result.n_i} I), seed {result.seed}, {result.duration_ms / 1000:g} s"
    )

    ax = fig.add_subplot(grid[0, :])
    ax.plot(t_s, result.r, lw=0.5, color="tab:blue", label="R of E cells, 1 ms grid, unsmoothed")
    ax.axvspan(0.0, PRE_EPOCH_MS[0] / 1000.0, color="0.85", lw=0, label="start-up (not in r_pre)")
    _shade(ax, win_s, stim, stim_label)
    defined = np.nonzero(np.isfinite(result.r))[0]
    if defined.size:
        ax.set_title(
            f"Kuramoto order parameter (defined from {t_s[defined[0]] * 1000:.0f} ms to "
            f"{t_s[defined[-1]]:.3f} s, where ≥ 99 % of E cells are between two spikes)",
            fontsize=10,
        )
    ax.set_ylabel("Kuramoto R")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=8)

    ax = fig.add_subplot(grid[1, :], sharex=fig.axes[0])
    ax.plot(win_s, result.window_weight_mv, color="tab:red", label="mean J_I·W")
    if latch_mv is not None:
        ax.axhline(latch_mv, color="grey", ls="--", lw=0.8,
                   label=f"latch threshold ({latch_mv:g} mV)")  # fmt: skip
    _shade(ax, win_s, stim, None)
    ax.set_ylabel("mean J_I·W (mV)")
    ax.set_title(
        "Mean effective E→I synaptic weight, end of each 20 ms window (shaded: stimulation on)",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8)

    ax = fig.add_subplot(grid[2, :], sharex=fig.axes[0])
    ax.plot(win_s, smooth_rate(result.window_rate_e_hz), label="E", color="tab:green")
    ax.plot(win_s, smooth_rate(result.window_rate_i_hz), label="I", color="tab:purple")
    _shade(ax, win_s, stim, None)
    ax.set_ylabel("rate (Hz)")
    ax.set_xlabel("time (s)")
    ax.set_title(
        f"Population firing rates ({RATE_SMOOTH_WINDOWS * CHUNK_MS / 1000:g} s centred moving "
        f"mean of {CHUNK_MS:g} ms windows)",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8)

    n_e_shown = min(RASTER_E_CELLS, result.n_e)
    n_i_shown = min(RASTER_I_CELLS, result.n_i)
    stim_idx = np.nonzero(stim)[0]
    before_end = (
        result.window_t_ms[stim_idx[0]] - CHUNK_MS if stim_idx.size else result.duration_ms / 2
    )
    for col, (label, stop) in enumerate(
        (("just before stimulation", before_end), ("end of run", result.duration_ms))
    ):
        ax = fig.add_subplot(grid[3, col])
        times, rows, is_e = raster_rows(result, stop - RASTER_MS, stop, n_e_shown, n_i_shown)
        ax.scatter(times / 1000.0, rows, s=1.5, c=np.where(is_e, "tab:green", "tab:purple"),
                   marker="|")  # fmt: skip
        ax.axhline(n_e_shown - 0.5, color="0.6", lw=0.5)
        ax.set_xlim((stop - RASTER_MS) / 1000.0, stop / 1000.0)
        ax.set_ylim(-0.5, n_e_shown + n_i_shown - 0.5)
        ax.set_title(f"Spike raster, {label} ({RASTER_MS:g} ms)", fontsize=10)
        ax.set_xlabel("time (s)")
        ax.set_yticks([(n_e_shown - 1) / 2, n_e_shown + (n_i_shown - 1) / 2], ["E", "I"])
        ax.set_ylabel(
            f"first {n_e_shown} of {result.n_e} E cells (green),\n"
            f"first {n_i_shown} of {result.n_i} I cells (purple)",
            fontsize=9,
        )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def raster_rows(
    result: RunResult, start_ms: float, stop_ms: float, n_e_shown: int, n_i_shown: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Spikes of the shown cells in ``[start_ms, stop_ms)``: times, raster rows, is-E flags.

    E cell ``k`` is drawn on row ``k``, I cell ``j`` on row ``n_e_shown + j``.
    """
    neurons = result.spike_neurons
    is_e = neurons < result.n_e
    shown = np.where(is_e, neurons < n_e_shown, neurons < result.n_e + n_i_shown)
    sel = (result.spike_times_ms >= start_ms) & (result.spike_times_ms < stop_ms) & shown
    rows = np.where(is_e[sel], neurons[sel], neurons[sel] - result.n_e + n_e_shown)
    return result.spike_times_ms[sel], rows.astype(np.float64), is_e[sel]


def smooth_rate(x: FloatArray, width: int = RATE_SMOOTH_WINDOWS) -> FloatArray:
    """Centred moving mean over ``width`` windows; at the edges over the windows that exist."""
    if x.size == 0:
        return x
    odd = min(width, x.size) | 1  # an odd window is centred on its sample
    kernel = np.ones(odd if odd <= x.size else odd - 2)
    total = np.convolve(x, kernel, mode="same")
    count = np.convolve(np.ones_like(x), kernel, mode="same")
    out: FloatArray = total / count
    return out


def _stim_label(result: RunResult) -> str:
    idx = np.nonzero(result.window_stim)[0]
    if not idx.size:
        return "stimulation on"
    start = (result.window_t_ms[idx[0]] - CHUNK_MS) / 1000.0
    stop = result.window_t_ms[idx[-1]] / 1000.0
    why = f", latched off at {result.latch_time_s:g} s" if result.latch_time_s else ""
    return f"stimulation on ({start:g}–{stop:g} s{why})"


def _shade(ax: Axes, win_s: FloatArray, stim: npt.NDArray[np.bool_], label: str | None) -> None:
    """Shade every stretch of windows with stimulation on (window ``k`` covers ``t_k - 20 ms``)."""
    idx = np.nonzero(stim)[0]
    if not idx.size:
        return
    breaks = np.nonzero(np.diff(idx) > 1)[0]
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks], [idx[-1]]])
    for k, (a, b) in enumerate(zip(starts, stops, strict=True)):
        ax.axvspan(win_s[a] - CHUNK_MS / 1000.0, win_s[b], color=_STIM_COLOUR, alpha=0.2, lw=0,
                   label=label if k == 0 else None)  # fmt: skip
