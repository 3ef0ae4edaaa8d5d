"""Comparison rules of a replay: what "the same" means for each recorded value.

Integers, booleans, strings and ``None`` must be equal. Floats must satisfy
``|got - expected| <= atol + rtol·|expected|`` (defaults 1e-9 each: replay runs the same
arithmetic, so only last-bit differences in reconstructed control times are tolerated). NaN
equals NaN (a recorded NaN must be reproduced as NaN), and an infinity only equals itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Default float tolerances (absolute and relative).
DEFAULT_ATOL = 1e-9
DEFAULT_RTOL = 1e-9


@dataclass(frozen=True)
class Tolerance:
    """Float tolerance of a replay comparison.

    Args:
        atol: Absolute tolerance.
        rtol: Relative tolerance (relative to the recorded value).
    """

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"Expected {name} in [0, 1], actual {value!r}")

    def same(self, expected: Any, got: Any) -> bool:
        """Whether ``got`` reproduces the recorded ``expected``."""
        if isinstance(expected, bool) or isinstance(got, bool):
            return type(expected) is type(got) and expected == got
        if isinstance(expected, int | float) and isinstance(got, int | float):
            e, g = float(expected), float(got)
            if math.isnan(e) or math.isnan(g):
                return math.isnan(e) and math.isnan(g)
            if math.isinf(e) or math.isinf(g):
                return e == g
            return abs(g - e) <= self.atol + self.rtol * abs(e)
        return bool(expected == got)


@dataclass(frozen=True)
class Mismatch:
    """One place where the replay does not reproduce the recording.

    Args:
        tick: The tick (``None`` for header or end-of-run checks).
        record: Which record (``command``, ``action``, ``envelope_event``, ``summary`` …).
        field: Which field (``setpoint.amplitude``, ``reasons``, ``action[0]`` …).
        expected: The recorded value.
        got: The value the replay computed.
        note: Extra explanation.
    """

    tick: int | None
    record: str
    field: str
    expected: Any
    got: Any
    note: str = ""

    def __str__(self) -> str:
        where = "end of run" if self.tick is None else f"tick {self.tick}"
        text = (
            f"{where}, {self.record}.{self.field}: expected {self.expected!r} (recorded), "
            f"got {self.got!r} (replayed)"
        )
        return f"{text}; {self.note}" if self.note else text


def compare_maps(
    tol: Tolerance,
    tick: int | None,
    record: str,
    prefix: str,
    expected: Any,
    got: Any,
) -> list[Mismatch]:
    """Compare two flat maps key by key (missing keys and differing values are mismatches)."""
    if not isinstance(expected, dict) or not isinstance(got, dict):
        if tol.same(expected, got):
            return []
        return [Mismatch(tick, record, prefix, expected, got)]
    out: list[Mismatch] = []
    for key in sorted(set(expected) | set(got), key=str):
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in expected or key not in got:
            out.append(
                Mismatch(
                    tick, record, name, expected.get(key, "<absent>"), got.get(key, "<absent>")
                )
            )
        elif not tol.same(expected[key], got[key]):
            out.append(Mismatch(tick, record, name, expected[key], got[key]))
    return out
