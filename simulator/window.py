"""The numbers a window reports, computed from the kernel's outputs in one compiled call.

At N = 2000 a 20 ms window takes ≈ 3 ms, and the dozen NumPy and Numba calls that turned the
kernel's buffers into observations (finiteness check, spike copies, rates, χ, means and SDs, the
mean plastic weight) cost ≈ 0.3 ms of it: each call's own overhead, not its arithmetic. This
function does the same arithmetic in one call. Every reduction is the NumPy-exact one of
:mod:`simulator.reductions` and every elementwise operation is the one NumPy applied, so the
observations are the same bits as before (``tests/test_bench_digest.py`` pins them).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator import reductions
from simulator.synchrony import chi_of_window


@njit(cache=True, nogil=True)
def window_numbers(  # type: ignore[no-untyped-def]
    v, spk_step, spk_idx, ns, dt_ms, n_e, pop_e, pop_i, chunk_steps, dropped, sum_v, sumsq_v,
    weights,
):  # fmt: skip
    """The observations of one window.

    Args:
        v: Membrane potentials at the end of the window (checked for NaN/Inf).
        spk_step: Labelled step of each spike (the first ``ns`` are the window's).
        spk_idx: Neuron of each spike.
        ns: Number of spikes in the window.
        dt_ms: Integration step.
        n_e: Number of E cells (E: ``0..n_e-1``).
        pop_e: E population-mean V at every labelled step.
        pop_i: I population-mean V at every labelled step.
        chunk_steps: Steps per paper chunk.
        dropped: Whether each chunk's last row is the paper's discarded step (left out of χ).
        sum_v: Per-E-cell sum of V over the computed steps.
        sumsq_v: Per-E-cell sum of V².
        weights: The plastic E→I weights (float32 storage; averaged in double).

    Returns:
        ``(finite, spike_times_ms, spike_neurons, n_e_spikes, chi, mean_v_e, sd_v_e, mean_v_i,
        sd_v_i, mean_weight)``; ``mean_weight`` is NaN without synapses.
    """
    finite = True
    for x in v:
        if not math.isfinite(x):
            finite = False
            break
    spike_neurons = spk_idx[:ns].copy()
    spike_times = np.empty(ns)
    n_e_spikes = 0
    for q in range(ns):
        spike_times[q] = spk_step[q] * dt_ms
        if spike_neurons[q] < n_e:
            n_e_spikes += 1
    total = pop_e.shape[0]
    if dropped:
        kept = total - total // chunk_steps
        rows = np.empty(kept)
        m = 0
        for k in range(total):
            if k % chunk_steps != chunk_steps - 1:
                rows[m] = pop_e[k]
                m += 1
    else:
        kept = total
        rows = pop_e
    chi = chi_of_window(rows, sum_v, sumsq_v, kept)
    mean_weight = reductions.mean(weights) if weights.shape[0] > 0 else math.nan
    return (
        finite, spike_times, spike_neurons, n_e_spikes, chi,
        reductions.mean(pop_e), reductions.std(pop_e),
        reductions.mean(pop_i), reductions.std(pop_i), mean_weight,
    )  # fmt: skip
