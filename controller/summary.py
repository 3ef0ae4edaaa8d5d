"""End-of-run summary: ticks, deadline misses, envelope findings, charge and synchrony trend.

:class:`SummaryBuilder` is fed once per tick by the loop; :meth:`SummaryBuilder.build` returns a
:class:`Summary` that prints as a table (:func:`format_table`) and is written as JSON next to the
recording.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Longest value column of the printed table before a value wraps.
VALUE_WIDTH = 72


def percentiles_ms(samples_s: list[float]) -> dict[str, float | None]:
    """p50/p99/max of a list of durations in s, reported in ms (``None`` when empty)."""
    if not samples_s:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(samples_s) * 1000.0
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


@dataclass
class Summary:
    """Everything reported at the end of a run (all times in ms unless named otherwise)."""

    backend: str
    policy: str
    pace: str
    period_ms: float
    envelope_name: str
    envelope_hash: str
    amplitude_unit: str
    charge_unit: str
    ticks: int
    model_time_s: float
    end_reason: str
    fault: str | None
    deadline_misses: int
    overruns: int
    clamps: dict[str, int]
    rejects: dict[str, int]
    holds: dict[str, int]
    recoveries: dict[str, int]
    charge_delivered: float
    synchrony: dict[str, Any]
    latch_time_ms: float | None
    timing: dict[str, dict[str, float | None]]
    recording: str | None = None
    lockstep: bool = False
    late_steps: int = 0
    fault_detail: str | None = None
    advice: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN mapped to ``None``)."""
        cleaned: dict[str, Any] = json_safe(asdict(self))
        return cleaned

    def write_json(self, path: Path) -> None:
        """Write the summary as indented JSON."""
        path.write_text(json.dumps(self.as_dict(), indent=2, allow_nan=False) + "\n", "utf-8")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by ``None`` (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class SummaryBuilder:
    """Accumulates per-tick facts for the summary."""

    def __init__(self) -> None:
        self.synchrony: list[float] = []
        #: The field the R trend reads: ``synchrony`` (all E cells, a simulator) or, from a
        #: device, the recorded units' ``units_synchrony`` (``protocol/observables.py``).
        self.synchrony_field = "synchrony"
        self.stimulating: list[bool] = []
        self.charge = 0.0
        self.latency_s: list[float] = []
        self.overhead_s: list[float] = []
        self.step_s: list[float] = []
        self.period_error_s: list[float] = []
        self.wake_late_s: list[float] = []
        self.deadline_misses = 0
        self.late_steps = 0
        self.lockstep = False
        self.overruns = 0
        self.model_time_ms = 0.0

    def add_window(self, fields: dict[str, float] | Any, stimulating: bool, charge: float) -> None:
        """One observed window: its synchrony R, whether stimulation was on, its charge."""
        if "synchrony" not in fields and "units_synchrony" in fields:
            self.synchrony_field = "units_synchrony"
        r = fields.get(self.synchrony_field, math.nan)
        self.synchrony.append(float(r) if isinstance(r, int | float) else math.nan)
        self.stimulating.append(stimulating)
        if math.isfinite(charge):
            self.charge += charge

    def synchrony_trend(self) -> dict[str, Any]:
        """Mean R before the first stimulated window, during, and after the last one."""
        on = [i for i, s in enumerate(self.stimulating) if s]
        r = np.asarray(self.synchrony, dtype=float)

        def mean(lo: int, hi: int) -> dict[str, Any]:
            part = r[lo:hi]
            part = part[np.isfinite(part)]
            return {"mean_r": float(part.mean()) if part.size else None, "windows": int(hi - lo)}

        field = self.synchrony_field
        if not on:
            return {"before": mean(0, len(r)), "during": mean(0, 0), "after": mean(0, 0),
                    "field": field}  # fmt: skip
        return {
            "before": mean(0, on[0]),
            "during": mean(on[0], on[-1] + 1),
            "after": mean(on[-1] + 1, len(r)),
            "field": field,
        }

    def timing(self) -> dict[str, dict[str, float | None]]:
        """Percentiles of every measured duration."""
        return {
            "tick_latency_ms": percentiles_ms(self.latency_s),
            "overhead_ms": percentiles_ms(self.overhead_s),
            "backend_step_ms": percentiles_ms(self.step_s),
            "period_jitter_ms": percentiles_ms([abs(x) for x in self.period_error_s]),
            "wake_late_ms": percentiles_ms(self.wake_late_s),
        }


def format_table(summary: Summary) -> str:
    """The summary as a readable two-column table."""
    s = summary
    rows: list[tuple[str, str]] = [
        ("backend / policy / pace", f"{s.backend} / {s.policy} / {s.pace}"),
        ("envelope", f"{s.envelope_name} {s.envelope_hash[:16]}…"),
        ("ticks (period)", f"{s.ticks} ({s.period_ms:g} ms), model time {s.model_time_s:.3f} s"),
        ("end", s.end_reason + (f" (fault: {s.fault})" if s.fault else "")),
    ]
    if s.fault_detail:
        rows.append(("what happened", s.fault_detail))
    if s.advice:
        rows.append(("what to try", s.advice))
    if s.lockstep:
        rows.append(
            (
                "late steps / overruns",
                f"{s.late_steps} / {s.overruns} (lockstep backend: the model waited, "
                "the run is unaffected)",
            )
        )
    else:
        rows.append(("deadline misses / overruns", f"{s.deadline_misses} / {s.overruns}"))
    for title, counts in (
        ("clamps", s.clamps),
        ("rejects", s.rejects),
        ("holds", s.holds),
        ("recoveries", s.recoveries),
    ):
        text = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"
        rows.append((title, text))
    # A replay delivers nothing: its charge is what this run's setpoints commanded.
    charge_label = "charge commanded" if s.backend.startswith("replay") else "charge delivered"
    rows.append((charge_label, f"{s.charge_delivered:.6g} {s.charge_unit}"))
    units = s.synchrony.get("field", "synchrony") == "units_synchrony"
    for phase in ("before", "during", "after"):
        part = s.synchrony.get(phase, {})
        mean_r = part.get("mean_r")
        shown = "n/a" if mean_r is None else f"{mean_r:.3f}"
        label = "units' R" if units else "synchrony R"
        rows.append((f"{label} {phase}", f"{shown} over {part.get('windows', 0)} windows"))
    rows.append(("latch", "none" if s.latch_time_ms is None else f"{s.latch_time_ms / 1000:.3f} s"))
    for name, stats in s.timing.items():
        if stats["p50"] is None:
            continue
        rows.append(
            (name, f"p50 {stats['p50']:.3f}  p99 {stats['p99']:.3f}  max {stats['max']:.3f}")
        )
    if s.recording:
        rows.append(("recording", s.recording))
    width = max(len(k) for k, _ in rows)
    # Long sentences (what happened, what to try) wrap under their column.
    wrapped = [
        (k, textwrap.wrap(v, VALUE_WIDTH, break_long_words=False, break_on_hyphens=False) or [""])
        for k, v in rows
    ]
    line = "-" * (width + 3 + max(len(part) for _, parts in wrapped for part in parts))
    body = "\n".join(
        f"{(k if i == 0 else '').ljust(width)} | {part}"
        for k, parts in wrapped
        for i, part in enumerate(parts)
    )
    return f"{line}\nNeuroLoop controller run summary\n{line}\n{body}\n{line}"


#: What to try after each fault, by reason (``{period}`` is the control period in ms).
_ADVICE: dict[str, str] = {
    "deadline_2t": (
        "the backend answered later than 2·T, so the real-time tissue was protected by a safe "
        "stop; on a busy host try --rt-priority N (SCHED_FIFO, needs CAP_SYS_NICE or an "
        "rtprio limit), a longer --period-ms, or fewer other programs; docs/controller.md, "
        "Deadlines"
    ),
    "backend_unreachable": (
        "no observation within the watchdog (or the backend was lost): check that the backend "
        "process or device service is running and reachable at its address (--connect), its "
        "log lines above, and on a busy host try --rt-priority N"
    ),
    "backend_unreachable_lockstep": (
        "the backend stalled longer than the lockstep stall limit or was lost: check that its "
        "process is alive (its log lines above) and that the host is not overloaded; "
        "--pace fast runs the same session without real-time pacing"
    ),
    "backend_error": (
        "the backend refused a command or failed (the detail names why): check that the "
        "envelope (--envelope) fits the backend's advertised limits and read its log lines above"
    ),
    "invalid_streak": (
        "the policy's outputs or the observations were invalid (NaN, Inf, wrong shape) several "
        "ticks in a row: check the policy (bundle, --amplitude ...) and the backend's sensing"
    ),
}


def advice_for(fault: str | None, lockstep: bool) -> str | None:
    """What to try after a run that ended in ``fault`` (``None`` when it completed).

    Args:
        fault: The fault reason code (``deadline_2t``, ``backend_unreachable`` ...), an operator
            stop (``estop...``, ``SIGINT``...), or ``None``.
        lockstep: Whether the backend was a lockstep one (the simulator, a replay).
    """
    if fault is None:
        return None
    if fault == "backend_unreachable" and lockstep:
        return _ADVICE["backend_unreachable_lockstep"]
    if fault in _ADVICE:
        return _ADVICE[fault]
    if fault == "estop_monitor":
        return "the monitor's E-STOP button ended the run; stimulation was stopped"
    if fault.startswith(("estop", "SIG")):
        return "an operator stop (SIGINT/SIGTERM) ended the run; stimulation was stopped"
    return (
        "a safety rule latched a safe stop: read the envelope_fault log line above and "
        "docs/controller.md (The safety envelope)"
    )


def count_kinds(counter: Counter[str], kinds: dict[str, str], kind: str) -> dict[str, int]:
    """Counts of the reasons whose kind is ``kind``."""
    return {r: n for r, n in counter.items() if kinds.get(r) == kind}
