"""What an episode looked like: per-window traces, optional spikes, and the rendered frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.envs.models import ModelWindow
from protocol.envelope.setpoint import Setpoint

#: Raster shown by ``render``: the most recent spikes over this many ms.
RASTER_MS = 500.0


@dataclass
class EpisodeTrace:
    """Per-window record of an episode (and its spikes when ``keep_spikes``).

    Attributes:
        keep_spikes: Whether every spike is kept (otherwise only the last window's).
        t_ms: Window end times.
        synchrony: Causal windowed R per window.
        weight_mv: Mean effective E→I weight at each window end.
        amplitude_mv: Applied amplitude (0 = off).
        frequency_hz: Applied frequency (NaN when off).
        pulse_width_us: Applied phase width (NaN when off).
        charge_mv_ms: Charge delivered in the window.
    """

    keep_spikes: bool = False
    t_ms: list[float] = field(default_factory=list)
    synchrony: list[float] = field(default_factory=list)
    weight_mv: list[float] = field(default_factory=list)
    amplitude_mv: list[float] = field(default_factory=list)
    frequency_hz: list[float] = field(default_factory=list)
    pulse_width_us: list[float] = field(default_factory=list)
    charge_mv_ms: list[float] = field(default_factory=list)
    _times: list[npt.NDArray[np.float64]] = field(default_factory=list, repr=False)
    _neurons: list[npt.NDArray[np.int32]] = field(default_factory=list, repr=False)

    def add_window(self, window: ModelWindow, setpoint: Setpoint | None, charge: float) -> None:
        """Record one window and the setpoint applied in it (``None``: off)."""
        on = setpoint is not None and setpoint.is_on
        self.t_ms.append(window.t_end_ms)
        self.synchrony.append(float(window.fields["synchrony"]))
        self.weight_mv.append(float(window.fields["weight_mv"]))
        self.amplitude_mv.append(setpoint.amplitude if on and setpoint is not None else 0.0)
        self.frequency_hz.append(setpoint.frequency_hz if on and setpoint is not None else np.nan)
        self.pulse_width_us.append(
            setpoint.pulse_width_us if on and setpoint is not None else np.nan
        )
        self.charge_mv_ms.append(charge)

    def add_spikes(self, window: ModelWindow) -> None:
        """Keep the window's spikes (all of them, or only the latest when not ``keep_spikes``)."""
        if window.spike_times_ms is None or window.spike_neurons is None:
            return
        if not self.keep_spikes:
            self._times.clear()
            self._neurons.clear()
        self._times.append(window.spike_times_ms)
        self._neurons.append(window.spike_neurons)

    def spikes(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
        """All kept spikes as ``(times_ms, neurons)``."""
        if not self._times:
            return np.zeros(0), np.zeros(0, dtype=np.int32)
        return np.concatenate(self._times), np.concatenate(self._neurons)


def render_frame(trace: EpisodeTrace, n_e: int, figure: Any = None) -> tuple[Any, Any]:
    """Draw synchrony, weight and amplitude over time and a raster of the latest spikes.

    Returns:
        ``(rgb, figure)``: an ``(H, W, 3)`` uint8 frame and the figure (reused next call).
    """
    import matplotlib

    if figure is None:
        matplotlib.use(matplotlib.get_backend())
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(8, 6), dpi=80)
    figure.clf()
    axes = figure.subplots(4, 1, sharex=False, height_ratios=[1, 1, 1, 2])
    t_s = np.asarray(trace.t_ms) / 1000.0
    axes[0].plot(t_s, trace.synchrony, color="tab:blue", lw=1)
    axes[0].set_ylabel("R (window)")
    axes[0].set_title("Causal Kuramoto R, mean E→I weight and amplitude per control window",
                      fontsize=9)  # fmt: skip
    axes[0].set_ylim(0.0, 1.0)
    axes[1].plot(t_s, trace.weight_mv, color="tab:red", lw=1)
    axes[1].set_ylabel("J_I·W (mV)")
    axes[2].step(t_s, trace.amplitude_mv, where="pre", color="tab:green", lw=1)
    axes[2].set_ylabel("amp (mV)")
    axes[2].set_xlabel("time (s)")
    times, neurons = trace.spikes()
    if times.size:
        recent = times >= times.max() - RASTER_MS
        exc = recent & (neurons < n_e)
        inh = recent & (neurons >= n_e)
        axes[3].scatter(times[exc] / 1000.0, neurons[exc], s=0.2, c="k", marker=".")
        axes[3].scatter(times[inh] / 1000.0, neurons[inh], s=0.2, c="tab:orange", marker=".")
    axes[3].set_ylabel("cell", fontsize=8)
    axes[3].set_title(f"Spikes of the latest {RASTER_MS:g} ms: E cells black, I cells orange",
                      fontsize=9)  # fmt: skip
    axes[3].set_xlabel("time (s)")
    figure.tight_layout()
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3]), figure
