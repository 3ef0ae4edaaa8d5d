"""Synchrony measures: the Kuramoto order parameter of E spike times and the voltage measure χ.

* :func:`order_parameter` — offline R(t) from spike lists over a whole run. A neuron's phase
  rises linearly by 2π between consecutive spikes; a neuron is only counted at times bracketed
  by two of its spikes (before its first and after its last spike it is masked, instead of the
  authors' un-normalised phase that inflates R in the first ~100 ms and the last ISI).
  Masking alone still leaves an edge artefact: within one inter-spike interval of the end of
  the spike list, the neurons still bracketed are those about to fire (all near phase 2π), and
  near its start those that just fired (near 0), so R climbs towards 1 there (in the 25 s
  FTSTS run: from 0.03 to 0.6 over the last 20 ms). With ``edge_quantile`` R is reported
  only between the time by which that share of the E cells have fired their first spike and
  the time after which that share still fire their last, where the bracketed cells are not
  a selection by phase.
* The causal windowed R that a controller sees is computed inside the kernel: each E neuron's
  phase is extrapolated from its most recent inter-spike interval (exact for a regular
  oscillator; neurons that have not yet fired twice are masked) and sampled every
  ``kop_sample_ms``.
* :func:`chi_from_sums` — χ = sqrt(Var_t[V̄] / mean_k Var_t[V_k]) over one window
  (Golomb; Hansel–Sompolinsky). It is high during successful FTSTS entrainment, when R is low.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from simulator import reductions
from simulator.kernel import offline_order_parameter

FloatArray = npt.NDArray[np.float64]


def order_parameter(
    spike_times_ms: FloatArray | npt.NDArray[np.integer],
    spike_neurons: npt.NDArray[np.integer],
    n_e: int,
    t_stop_ms: float,
    resolution_ms: float = 1.0,
    t_start_ms: float = 0.0,
    min_valid_fraction: float = 0.5,
    edge_quantile: float | None = None,
    *,
    dt_ms: float | None = None,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """Offline Kuramoto order parameter R(t) of the E population.

    Args:
        spike_times_ms: Spike times of the run.
        spike_neurons: Neuron index per spike (E neurons are ``0..n_e-1``; others are ignored).
        n_e: Number of E neurons.
        t_stop_ms: End of the grid (exclusive).
        resolution_ms: Grid spacing.
        t_start_ms: Start of the grid.
        min_valid_fraction: R is NaN where fewer than this fraction of E neurons have a
            defined phase (the first and last inter-spike interval of the run), so that a
            handful of neurons cannot fake synchrony.
        edge_quantile: If given (e.g. 0.99), R is also NaN before the time by which this share
            of the E cells that fire at least twice have fired their first spike, and after
            the time after which this share still fire their last one (the edge artefact of
            the module docstring). ``None`` keeps every sample with enough bracketed neurons.
        dt_ms: If given, ``spike_times_ms`` holds integer steps and each time is
            ``step * dt_ms`` (as the kernel reports it): the same R(t) bit for bit, without a
            float64 copy of the times.

    Returns:
        ``(t_ms, r, n_valid)``: the grid, R on it (NaN where too few neurons are bracketed),
        and the number of neurons that entered each sample.
    """
    t = np.arange(t_start_ms, t_stop_ms, resolution_ms, dtype=np.float64)
    times = (
        np.ascontiguousarray(spike_times_ms, dtype=np.float64)
        if dt_ms is None
        else np.ascontiguousarray(spike_times_ms)
    )
    r, cnt = offline_order_parameter(
        times,
        # the run's own int32 indices: an int64 copy was 8 bytes per spike (20 MB in 25 s)
        np.ascontiguousarray(spike_neurons),
        n_e,
        t,
        1.0 if dt_ms is None else float(dt_ms),
    )
    r[cnt < min_valid_fraction * n_e] = np.nan
    if edge_quantile is not None:
        start_ms, stop_ms = bracketed_span(
            spike_times_ms, spike_neurons, n_e, edge_quantile, dt_ms=dt_ms
        )
        r[(t < start_ms) | (t > stop_ms)] = np.nan
    return t, r, cnt


def bracketed_span(
    spike_times_ms: FloatArray | npt.NDArray[np.integer],
    spike_neurons: npt.NDArray[np.integer],
    n_e: int,
    quantile: float,
    *,
    dt_ms: float | None = None,
) -> tuple[float, float]:
    """Where at least ``quantile`` of the E cells firing twice or more have a defined phase.

    With ``dt_ms``, ``spike_times_ms`` holds integer steps (times ``step * dt_ms``).

    Returns:
        ``(start_ms, stop_ms)``: the ``quantile`` of the E cells' first spike times and the
        ``1 - quantile`` quantile of their last spike times (``(inf, -inf)``: no such cell).

    Raises:
        ValueError: ``quantile`` is not in (0, 1].
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"Expected edge quantile in (0, 1], actual {quantile!r}")
    if dt_ms is None:
        first, last, count = _first_last_count(
            np.ascontiguousarray(spike_times_ms, dtype=np.float64),
            np.ascontiguousarray(spike_neurons), n_e,
        )  # fmt: skip
    else:
        # the first and last step, then their times: min and max commute with × dt_ms > 0
        first, last, count = _first_last_count(
            np.ascontiguousarray(spike_times_ms), np.ascontiguousarray(spike_neurons), n_e
        )
        first, last = first * dt_ms, last * dt_ms
    fired_twice = count >= 2
    if not fired_twice.any():
        return math.inf, -math.inf
    start = float(np.quantile(first[fired_twice], quantile, method="higher"))
    stop = float(np.quantile(last[fired_twice], 1.0 - quantile, method="lower"))
    return start, stop


@njit(cache=True, nogil=True)
def _first_last_count(times, neurons, n_e):  # type: ignore[no-untyped-def]
    """Each E cell's first and last spike time and spike count, in one pass (no copies)."""
    first = np.full(n_e, np.inf)
    last = np.full(n_e, -np.inf)
    count = np.zeros(n_e, dtype=np.int64)
    for q in range(neurons.shape[0]):
        k = neurons[q]
        if 0 <= k < n_e:
            t = times[q]
            first[k] = min(first[k], t)
            last[k] = max(last[k], t)
            count[k] += 1
    return first, last, count


def epoch_mean(t_ms: FloatArray, values: FloatArray, start_ms: float, stop_ms: float) -> float:
    """Mean of ``values`` over ``start_ms <= t < stop_ms``, ignoring NaN; NaN if empty."""
    sel = (t_ms >= start_ms) & (t_ms < stop_ms) & np.isfinite(values)
    return float(values[sel].mean()) if sel.any() else math.nan


def chi_from_sums(
    pop_mean: FloatArray, sum_v: FloatArray, sumsq_v: FloatArray, n_samples: int
) -> float:
    """χ of one window from the population-mean series and per-neuron running sums.

    Args:
        pop_mean: Population-mean V at each sample of the window.
        sum_v: Per-neuron sum of V over the window's samples.
        sumsq_v: Per-neuron sum of V² over the window's samples.
        n_samples: Number of samples that went into the sums.

    Returns:
        χ in [0, 1]; 0 when no neuron's voltage varied.
    """
    return float(chi_of_window(np.ascontiguousarray(pop_mean), sum_v, sumsq_v, n_samples))


@njit(cache=True, nogil=True)
def chi_of_window(pop_mean, sum_v, sumsq_v, n_samples):  # type: ignore[no-untyped-def]
    """:func:`chi_from_sums` inside compiled code (``pop_mean`` contiguous)."""
    if n_samples < 2:
        return 0.0
    return _chi(pop_mean, sum_v, sumsq_v, float(n_samples))


@njit(cache=True, nogil=True, boundscheck=False)
def _chi(pop_mean, sum_v, sumsq_v, n_samples):  # type: ignore[no-untyped-def]
    """sqrt(Var_t[pop_mean] / mean_k Var_t[V_k]), with NumPy's reductions bit for bit."""
    var_k = np.empty(sum_v.shape[0])
    for k in range(sum_v.shape[0]):
        m = sum_v[k] / n_samples
        d = sumsq_v[k] / n_samples - m * m
        var_k[k] = d if d >= 0.0 else 0.0  # numpy.maximum(d, 0.0), NaN aside
    denominator = reductions.mean(var_k)
    if denominator <= 0.0:
        return 0.0
    return math.sqrt(min(1.0, reductions.var(pop_mean) / denominator))
