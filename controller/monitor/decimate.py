"""Min/max decimation of per-tick columns for display.

A chart a thousand pixels wide cannot show more than a thousand distinct x positions, so a
long session is cut into buckets of consecutive ticks and each bucket is drawn as two points:
its minimum and its maximum (per column, NaN ignored). Every excursion stays visible, a single
clamp or fault tick included, while the browser holds at most ``2 · max_buckets`` points per
column however long the session. Sessions shorter than the budget are sent exactly.
"""

from __future__ import annotations

import math
import warnings
from array import array
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

#: Buckets per view by default (two points each).
DEFAULT_BUCKETS = 1000


def _as_numpy(column: array[float] | Sequence[float], stop: int) -> npt.NDArray[np.float64]:
    if isinstance(column, array):
        return np.frombuffer(column, dtype=np.float64, count=stop)
    return np.asarray(column[:stop], dtype=np.float64)


def window(
    column: array[float] | Sequence[float], start: int, stop: int
) -> npt.NDArray[np.float64]:
    """Rows ``[start, stop)`` of a column, exactly."""
    return _as_numpy(column, stop)[start:stop]


def select(x: npt.NDArray[np.float64], t0: float | None, t1: float | None) -> tuple[int, int]:
    """Index range ``[i0, i1)`` of the sorted ``x`` inside ``[t0, t1]`` (``None``: open)."""
    i0 = 0 if t0 is None else int(np.searchsorted(x, t0, side="left"))
    i1 = len(x) if t1 is None else int(np.searchsorted(x, t1, side="right"))
    return i0, max(i0, i1)


def decimate(
    columns: Mapping[str, array[float] | Sequence[float]],
    x_name: str,
    rows: int,
    max_buckets: int = DEFAULT_BUCKETS,
    t0: float | None = None,
    t1: float | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Columns over ``[t0, t1]`` with at most ``2 · max_buckets`` points each.

    Args:
        columns: Name → per-row values (all at least ``rows`` long).
        x_name: The column that orders the rows (time); it is decimated to the first and last
            x of each bucket.
        rows: How many rows to use (a live fold may be growing while this runs).
        max_buckets: Bucket budget (>= 1).
        t0: First x to include (``None``: from the start).
        t1: Last x to include (``None``: to the end).

    Returns:
        Name → values; bucket ``b`` gives points ``2b`` (min) and ``2b + 1`` (max), x at the
        bucket's first and last row.
    """
    if max_buckets < 1:
        raise ValueError(f"Expected max_buckets >= 1, actual {max_buckets}")
    x_all = _as_numpy(columns[x_name], rows)
    i0, i1 = select(x_all, t0, t1)
    n = i1 - i0
    if n <= 2 * max_buckets:
        return {name: _as_numpy(col, rows)[i0:i1].copy() for name, col in columns.items()}
    size = math.ceil(n / max_buckets)
    starts = np.arange(i0, i1, size)
    ends = np.minimum(starts + size, i1) - 1
    out: dict[str, npt.NDArray[np.float64]] = {}
    x = np.empty(2 * len(starts))
    x[0::2] = x_all[starts]
    x[1::2] = x_all[ends]
    out[x_name] = x
    for name, col in columns.items():
        if name == x_name:
            continue
        values = _as_numpy(col, rows)[:i1]
        both = np.empty(2 * len(starts))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets stay NaN
            both[0::2] = np.fmin.reduceat(values, starts)
            both[1::2] = np.fmax.reduceat(values, starts)
        out[name] = both
    return out


def to_json_list(values: npt.NDArray[np.float64]) -> list[float | None]:
    """Values for JSON: NaN and ±Inf become ``null`` (a gap in the chart)."""
    finite = np.isfinite(values)
    if finite.all():
        return list(values.tolist())
    return [v if ok else None for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
