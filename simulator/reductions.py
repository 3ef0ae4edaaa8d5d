"""NumPy's float64 sum, mean and standard deviation, bit for bit, as Numba functions.

Each 20 ms window ends with a handful of reductions over small arrays (the population-mean
voltage series, per-neuron variances, the E→I weights). Through NumPy's Python-level machinery
they cost ≈ 0.2 ms per window on our machines, about 5 % of a window at N = 2000. These
functions compute the same numbers without that overhead: :func:`pairwise_sum` is NumPy's
``add.reduce`` algorithm for contiguous float64 (blocks of at most 128 summed with eight
accumulators, larger blocks halved at multiples of eight), and :func:`mean` / :func:`std` follow
``numpy.ndarray.mean`` / ``std`` step for step. Because the results are identical to NumPy's
(tested on many sizes), observations, latches and closed-loop runs do not change. A float32
array (the stored synaptic weights) is summed by the same tree in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_BLOCK = 128  # NumPy's PW_BLOCKSIZE
_U1, _U2, _U3, _U4, _U5, _U6, _U7, _U8 = (np.uint64(k) for k in range(1, 9))


@njit(cache=True, nogil=True, boundscheck=False)
def _block(a, lo, n):  # type: ignore[no-untyped-def]
    """NumPy's sum of a block of at most 128 elements.

    Indices are unsigned: with signed ones Numba checks every access for a negative index
    (wraparound), which makes this loop 2.5× slower.
    """
    if n < 8:
        res = 0.0
        for k in range(lo, lo + n):
            res += a[k]
        return res
    one = _U1
    i = np.uint64(lo)
    # float64 accumulators whatever the input (a no-op for float64; float32 weights sum in double)
    r0, r1 = np.float64(a[i]), np.float64(a[i + one])
    r2, r3 = np.float64(a[i + _U2]), np.float64(a[i + _U3])
    r4, r5 = np.float64(a[i + _U4]), np.float64(a[i + _U5])
    r6, r7 = np.float64(a[i + _U6]), np.float64(a[i + _U7])
    i += _U8
    stop = np.uint64(lo + n - n % 8)
    while i < stop:
        r0 += a[i]
        r1 += a[i + one]
        r2 += a[i + _U2]
        r3 += a[i + _U3]
        r4 += a[i + _U4]
        r5 += a[i + _U5]
        r6 += a[i + _U6]
        r7 += a[i + _U7]
        i += _U8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    end = np.uint64(lo + n)
    while i < end:
        res += a[i]
        i += one
    return res


@njit(cache=True, nogil=True, boundscheck=False)
def _pairwise(a):  # type: ignore[no-untyped-def]
    """NumPy's split tree (halves at multiples of eight), walked with an explicit stack.

    Numba cannot cache a self-recursive function (a cached one crashes when reloaded), so the
    recursion ``sum(lo, n) = sum(lo, n2) + sum(lo + n2, n - n2)`` runs on a stack of frames:
    state 0 descends left, state 1 keeps the left sum and descends right, and a finished
    frame hands its sum to its parent in ``value``.
    """
    n = a.shape[0]
    if n <= _BLOCK:
        return _block(a, 0, n)
    depth = 2
    while (n >> depth) > 0:
        depth += 1
    f_lo = np.empty(depth + 1, dtype=np.int64)
    f_n = np.empty(depth + 1, dtype=np.int64)
    f_state = np.zeros(depth + 1, dtype=np.int64)
    f_left = np.empty(depth + 1)
    top = 0
    f_lo[0] = 0
    f_n[0] = n
    value = 0.0
    while top >= 0:
        lo, m = f_lo[top], f_n[top]
        half = m // 2
        half -= half % 8
        if f_state[top] == 0:
            f_state[top] = 1
            child_lo, child_n = lo, half
        elif f_state[top] == 1:
            f_state[top] = 2
            f_left[top] = value
            child_lo, child_n = lo + half, m - half
        else:
            value = f_left[top] + value
            top -= 1
            continue
        if child_n <= _BLOCK:
            value = _block(a, child_lo, child_n)
        else:
            top += 1
            f_lo[top] = child_lo
            f_n[top] = child_n
            f_state[top] = 0
    return value


@njit(cache=True, nogil=True)
def pairwise_sum(a):  # type: ignore[no-untyped-def]
    """``numpy.add.reduce(a)`` for a contiguous 1-D float64 array (0.0 when empty).

    A float32 array is summed by the same tree with float64 accumulators.
    """
    return 0.0 + _pairwise(a)


@njit(cache=True, nogil=True)
def mean(a):  # type: ignore[no-untyped-def]
    """``a.mean()`` (NaN when empty, as NumPy gives with a warning)."""
    return pairwise_sum(a) / a.shape[0] if a.shape[0] > 0 else math.nan


@njit(cache=True, nogil=True, boundscheck=False)
def var(a):  # type: ignore[no-untyped-def]
    """``a.var()``: the mean of squared deviations from the mean (ddof 0)."""
    n = a.shape[0]
    if n == 0:
        return math.nan
    m = pairwise_sum(a) / n
    dev = a - m
    for i in range(n):
        dev[i] = dev[i] * dev[i]
    return pairwise_sum(dev) / n


@njit(cache=True, nogil=True)
def std(a):  # type: ignore[no-untyped-def]
    """``a.std()``."""
    return math.sqrt(var(a))
