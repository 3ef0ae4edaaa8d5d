"""Arrays on a cache line (simulator/aligned.py), which the threaded kernel's partition needs."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import aligned


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [(1600, np.float64), ((3, 5), np.int32), ((2, 25, 448), np.float32), (7, np.bool_)],
)  # fmt: skip
def test_zeros_start_on_a_cache_line(shape: int | tuple[int, ...], dtype: type) -> None:
    a = aligned.zeros(shape, dtype)
    assert a.shape == (shape if isinstance(shape, tuple) else (shape,))
    assert a.dtype == np.dtype(dtype)
    assert a.flags.c_contiguous
    assert a.__array_interface__["data"][0] % aligned.LINE_BYTES == 0
    assert not a.any()


def test_an_empty_array_has_its_shape() -> None:
    """No data, so no line to start on: NumPy may point an empty view anywhere."""
    a = aligned.zeros(0, np.float32)
    assert a.shape == (0,)
    assert a.dtype == np.float32


def test_full_fills_and_aligns() -> None:
    a = aligned.full((4, 9), 2.5, np.float32)
    assert a.__array_interface__["data"][0] % aligned.LINE_BYTES == 0
    assert np.all(a == np.float32(2.5))
