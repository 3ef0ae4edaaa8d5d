"""Arrays that start on a cache line (64 bytes), for state that several threads write.

NumPy aligns an array's data to 16 bytes. The threaded kernel (:mod:`simulator.threaded`)
gives each thread ranges of cells that start and end on multiples of 64 cells; with the
arrays' data on a cache line too, two threads never write the same line of a per-cell array
but where their ranges meet at a population's end. A line written by two cores moves between
them at every write, which costs more than a step's work on its cells
(``docs/dev/simulator-speed.md``, eighth session).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

#: Bytes of a cache line
LINE_BYTES = 64


def zeros(shape: int | tuple[int, ...], dtype: Any = np.float64) -> npt.NDArray[Any]:
    """Like :func:`numpy.zeros`, with the data starting on a cache line."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    # math.prod and the array interface: a few µs less than np.prod and .ctypes, which counts
    # where a window allocates its scratch (Network.advance, every 20 ms step of an RL env)
    size = math.prod(dims) * np.dtype(dtype).itemsize
    raw = np.zeros(size + LINE_BYTES, dtype=np.uint8)
    start = (-raw.__array_interface__["data"][0]) % LINE_BYTES
    out: npt.NDArray[Any] = raw[start : start + size].view(dtype).reshape(dims)
    return out


def full(shape: int | tuple[int, ...], value: Any, dtype: Any = np.float64) -> npt.NDArray[Any]:
    """Like :func:`numpy.full`, with the data starting on a cache line."""
    out = zeros(shape, dtype)
    out[...] = value
    return out
