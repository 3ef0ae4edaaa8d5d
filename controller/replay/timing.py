"""Timing of a recorded session, from the recorded timestamps only.

* ``latency_ms``: tick start → next setpoint ready (the ``timing`` record);
* ``step_ms``: backend round trip of each step; ``overhead_ms``: policy + envelope;
* ``period_error_ms``: ``|Δt_s − T|`` between consecutive command times (real-time runs; a
  fast-paced run has no wall-clock tick times, so it has no jitter);
* ``deadline_misses``: real-time ticks whose observation came later than ``T`` (the policy was
  skipped and the setpoint held) plus a deadline fault past ``2·T``;
* ``late_windows``: ticks whose round trip exceeded ``T`` whatever the pace (how a fast-paced
  session would have fared in real time).

Percentiles are of the recorded values (``numpy.percentile``, linear interpolation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.replay.session import Session


@dataclass(frozen=True)
class Spread:
    """Summary of one measured quantity (ms)."""

    n: int
    p50: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        """Percentiles of ``values`` (``None`` when empty)."""
        if not values:
            return cls(0, None, None, None)
        arr = np.asarray(values, dtype=np.float64)
        return cls(
            len(values),
            float(np.percentile(arr, 50)),
            float(np.percentile(arr, 99)),
            float(arr.max()),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping."""
        return {"n": self.n, "p50": self.p50, "p99": self.p99, "max": self.max}


@dataclass(frozen=True)
class TimingReport:
    """Timing of a session."""

    pace: str
    period_ms: float
    ticks: int
    latency_ms: Spread
    step_ms: Spread
    overhead_ms: Spread
    period_error_ms: Spread
    deadline_misses: int
    late_windows: int

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for JSON."""
        return {
            "pace": self.pace,
            "period_ms": self.period_ms,
            "ticks": self.ticks,
            "latency_ms": self.latency_ms.as_dict(),
            "step_ms": self.step_ms.as_dict(),
            "overhead_ms": self.overhead_ms.as_dict(),
            "period_error_ms": self.period_error_ms.as_dict(),
            "deadline_misses": self.deadline_misses,
            "late_windows": self.late_windows,
        }


def timing_report(session: Session) -> TimingReport:
    """Compute the timing report of ``session``."""
    period_ms = session.period_ms
    # A lockstep run's command times are control times k·T (no wall-clock jitter to report)
    # and its late windows were counted, not deadline misses.
    realtime = session.pace == "realtime" and not session.lockstep
    latency: list[float] = []
    step: list[float] = []
    overhead: list[float] = []
    for t in session.ticks:
        if t.timing is None:
            continue
        for key, out in (("latency_ms", latency), ("step_ms", step), ("overhead_ms", overhead)):
            value = t.timing.get(key)
            if isinstance(value, int | float):
                out.append(float(value))
    errors: list[float] = []
    if realtime:
        times = [float((t.command or {}).get("t_s", 0.0)) for t in session.ticks]
        errors = [abs((b - a) * 1000.0 - period_ms) for a, b in itertools.pairwise(times)]
    late = len([s for s in step if s > period_ms])
    deadline_faults = sum(
        1 for r in session.records_of("fault") if r.payload.get("reason") == "deadline_2t"
    )
    return TimingReport(
        session.pace,
        period_ms,
        len(session.ticks),
        Spread.of(latency),
        Spread.of(step),
        Spread.of(overhead),
        Spread.of(errors),
        (late + deadline_faults) if realtime else 0,
        late,
    )
