"""The LLVM intrinsics the kernel uses, against plain Python."""

from __future__ import annotations

import numpy as np
from numba import njit

from simulator.intrinsics import cttz


@njit(cache=False)
def _cttz(x):  # type: ignore[no-untyped-def]
    return cttz(x)


@njit(cache=False)
def _set_bytes(flags):  # type: ignore[no-untyped-def]
    """Indices of the true bytes of a bool array, one tzcnt per true byte (as the kernel does)."""
    out = []
    words = flags.view(np.uint64)
    for wq in range(np.uint64(words.shape[0])):
        word = words[wq]
        while word != 0:
            out.append((wq << np.uint64(3)) + (cttz(word) >> np.uint64(3)))
            word &= word - np.uint64(1)
    return out


def test_cttz_counts_trailing_zero_bits() -> None:
    rng = np.random.default_rng(3)
    values = [1, 2, 3, 1 << 63, (1 << 64) - 1, 0x0100, *rng.integers(1, 2**63, 200).tolist()]
    for x in values:
        expected = (x & -x).bit_length() - 1
        assert _cttz(np.uint64(x)) == expected, x
    assert _cttz(np.uint64(0)) == 64


def test_true_bytes_found_in_ascending_order() -> None:
    rng = np.random.default_rng(4)
    for density in (0.0, 0.05, 0.5, 1.0):
        flags = rng.random(8 * 40) < density
        assert [int(i) for i in _set_bytes(flags)] == np.flatnonzero(flags).tolist()
