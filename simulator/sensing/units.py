"""Recorded single units: a few E cells' spikes, and the synchrony and rate read from them.

An implant's microelectrodes isolate a handful of cells; the sensor records ``n_units`` E
cells drawn once per run by its own seeded generator. Spikes that fall in the amplifier's
blanking windows are lost (nothing can be sorted from a held output).

The order parameter is the kernel's causal Kuramoto estimate restricted to the units: each
unit's phase is extrapolated from its last inter-spike interval, ``2π(t − t_last)/ISI``, and
``R = |Σ e^{iφ}| / n`` over the units that have fired twice, sampled every
``units_sample_ms`` and averaged over the window. For ``n`` independent units R sits near
``√(π/4n)`` (0.22 for 16) without any synchrony (``docs/simulator.md#sensing``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def units_order_parameter(times, slots, last, prev, t0_ms, t1_ms, sample_ms):  # type: ignore[no-untyped-def]
    """Mean R over the samples in ``(t0_ms, t1_ms]`` from units' spikes (time-sorted).

    ``slots[q]`` is spike ``q``'s unit; ``last``/``prev`` (per unit, −1: none) are carried
    from window to window. A sample at ``t`` sees the spikes at times ``≤ t``. Windows with
    no unit that has fired twice give 0.
    """
    q = 0
    n_spk = times.shape[0]
    total = 0.0
    count = 0
    first = math.floor(t0_ms / sample_ms + 1e-9) + 1
    stop = math.floor(t1_ms / sample_ms + 1e-9)
    for g in range(first, stop + 1):
        t = g * sample_ms
        while q < n_spk and times[q] <= t + 1e-9:
            u = slots[q]
            prev[u] = last[u]
            last[u] = times[q]
            q += 1
        sr = 0.0
        si = 0.0
        valid = 0
        for u in range(last.shape[0]):
            if prev[u] >= 0.0 and last[u] > prev[u]:
                ang = TWO_PI * (t - last[u]) / (last[u] - prev[u])
                sr += math.cos(ang)
                si += math.sin(ang)
                valid += 1
        if valid > 0:
            total += math.sqrt(sr * sr + si * si) / valid
            count += 1
    while q < n_spk:  # spikes after the last sample (none when the window ends on one)
        u = slots[q]
        prev[u] = last[u]
        last[u] = times[q]
        q += 1
    return total / count if count > 0 else 0.0


@njit(cache=True, nogil=True)
def _units_window(times, neurons, slot, lost, t0_ms, dt_ms):  # type: ignore[no-untyped-def]
    """The units' spikes of a window that survive blanking: ``(times, slots)``, time-sorted."""
    n = times.shape[0]
    t_out = np.empty(n)
    s_out = np.empty(n, dtype=np.int64)
    m = 0
    ordered = True
    n_lost = lost.shape[0]
    for q in range(n):
        u = slot[neurons[q]]
        if u < 0:
            continue
        if n_lost:
            k = min(max(round((times[q] - t0_ms) / dt_ms) - 1, 0), n_lost - 1)
            if lost[k]:
                continue
        if m > 0 and times[q] < t_out[m - 1]:
            ordered = False
        t_out[m] = times[q]
        s_out[m] = u
        m += 1
    t_out = t_out[:m]
    s_out = s_out[:m]
    if not ordered:
        order = np.argsort(t_out, kind="mergesort")
        t_out = t_out[order]
        s_out = s_out[order]
    return t_out, s_out


@njit(cache=True, nogil=True)
def _units_features(times, neurons, slot, lost, t0_ms, t1_ms, dt_ms, last, prev, sample_ms):  # type: ignore[no-untyped-def]
    """``(R, spikes kept)`` of the units over one window (one compiled call)."""
    kept_t, kept_s = _units_window(times, neurons, slot, lost, t0_ms, dt_ms)
    r = units_order_parameter(kept_t, kept_s, last, prev, t0_ms, t1_ms, sample_ms)
    return r, kept_t.shape[0]


class RecordedUnits:
    """The recorded E cells and their spike history.

    Args:
        n_units: Cells recorded (at most ``n_e``).
        n_e: E cells in the network (``0..n_e-1``).
        n: All cells.
        sample_ms: Sampling interval of the order parameter.
    """

    def __init__(self, n_units: int, n_e: int, n: int, sample_ms: float) -> None:
        self.n_units = min(n_units, n_e)
        self.n_e = n_e
        self.sample_ms = sample_ms
        self.cells: I64 = np.zeros(0, dtype=np.int64)
        self._slot = np.full(n, -1, dtype=np.int64)
        self._last = np.full(self.n_units, -1.0)
        self._prev = np.full(self.n_units, -1.0)

    def reset(self, rng: np.random.Generator) -> None:
        """Draw the recorded cells (ascending) and forget their spikes."""
        self.cells = np.sort(rng.choice(self.n_e, size=self.n_units, replace=False))
        self._slot[:] = -1
        self._slot[self.cells] = np.arange(self.n_units)
        self._last[:] = -1.0
        self._prev[:] = -1.0

    def window(
        self,
        t0_ms: float,
        t1_ms: float,
        spike_times_ms: F64,
        spike_neurons: npt.NDArray[np.integer],
        lost: npt.NDArray[np.bool_],
        dt_ms: float,
    ) -> tuple[float, float]:
        """``(R, rate_hz)`` of the units over one window.

        Args:
            t0_ms: Window start.
            t1_ms: Window end.
            spike_times_ms: The window's spikes (every cell).
            spike_neurons: Their cells.
            lost: Per kernel step of the window, whether a spike there is lost (blanking).
            dt_ms: Kernel step.
        """
        if self.n_units == 0:
            return 0.0, 0.0
        r, kept = _units_features(
            spike_times_ms, spike_neurons, self._slot, lost, t0_ms, t1_ms, dt_ms,
            self._last, self._prev, self.sample_ms,
        )  # fmt: skip
        rate = kept / self.n_units / ((t1_ms - t0_ms) / 1000.0)
        return float(r), float(rate)
