"""One verdict on a recorded session: header checks, re-run, invariants and timing.

A session passes when the rebuilt envelope and policy match the header's hashes, the re-run
reproduces every command, finding and raw action, no invariant is broken, and (if a budget is
given) the period jitter stays within it. :func:`verify_session` returns a
:class:`VerifyReport` that prints as text or JSON and says where each failure is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.envelope.governor import SafetyGovernor
from controller.replay.compare import Mismatch, Tolerance
from controller.replay.invariants import Violation, check_invariants
from controller.replay.rebuild import HeaderCheck, rebuild, recorded_envelope
from controller.replay.rerun import RerunResult, rerun
from controller.replay.session import Session
from controller.replay.timing import TimingReport, timing_report


@dataclass
class VerifyReport:
    """Everything ``neuroloop-replay verify`` found."""

    session: str
    format_version: int
    tail: str
    tail_clean: bool
    policy_source: str
    envelope_name: str
    tolerance: Tolerance
    checks: list[HeaderCheck]
    rerun: RerunResult
    violations: list[Violation]
    timing: TimingReport
    jitter_budget_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def jitter_ok(self) -> bool:
        """Whether the p99 period error is within the budget (true without a budget)."""
        p99 = self.timing.period_error_ms.p99
        return self.jitter_budget_ms is None or p99 is None or p99 <= self.jitter_budget_ms

    @property
    def passed(self) -> bool:
        """The verdict."""
        return (
            all(c.ok or not c.binding for c in self.checks)
            and not self.rerun.mismatches
            and not self.violations
            and self.jitter_ok
        )

    def as_dict(self, limit: int = 1000) -> dict[str, Any]:
        """JSON-ready mapping (non-finite floats become strings; lists capped at ``limit``)."""
        r = self.rerun
        out: dict[str, Any] = _jsonable(
            {
                "session": self.session,
                "passed": self.passed,
                "format_version": self.format_version,
                "tail": self.tail,
                "policy": self.policy_source,
                "envelope": self.envelope_name,
                "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
                "header_checks": [c.__dict__ for c in self.checks],
                "rerun": {
                    "ticks": r.ticks,
                    "commands": r.commands,
                    "actions": r.actions,
                    "end_reason": r.end_reason,
                    "mismatch_count": len(r.mismatches),
                    "mismatches": [m.__dict__ for m in r.mismatches[:limit]],
                },
                "invariants": {
                    "violation_count": len(self.violations),
                    "violations": [v.__dict__ for v in self.violations[:limit]],
                },
                "timing": self.timing.as_dict(),
                "jitter_budget_ms": self.jitter_budget_ms,
                "jitter_ok": self.jitter_ok,
                "notes": self.notes,
            }
        )
        return out

    def text(self, limit: int = 20) -> str:
        """Human-readable report (the first ``limit`` failures of each kind)."""
        r, t = self.rerun, self.timing
        lines = [
            f"session   {self.session} (format v{self.format_version}, {self.tail})",
            f"policy    {self.policy_source}",
            f"envelope  {self.envelope_name}",
            f"tolerance |got - expected| <= {self.tolerance.atol:g} + "
            f"{self.tolerance.rtol:g}·|expected|",
        ]
        for c in self.checks:
            state = "ok" if c.ok else ("FAIL" if c.binding else "differs (override)")
            lines.append(
                f"header    {c.field}: {state}"
                + ("" if c.ok else f" expected {c.expected}, got {c.got}")
            )
        lines.append(
            f"re-run    {r.ticks} ticks, {r.commands} commands, {r.actions} actions, end "
            f"{r.end_reason}: {len(r.mismatches)} mismatches"
        )
        lines += [f"  MISMATCH {m}" for m in r.mismatches[:limit]]
        if len(r.mismatches) > limit:
            lines.append(f"  ... {len(r.mismatches) - limit} more (use --json for all)")
        lines.append(f"invariants {len(self.violations)} violations")
        lines += [f"  VIOLATION {v}" for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... {len(self.violations) - limit} more (use --json for all)")
        lines.append(
            f"timing    pace {t.pace}, T {t.period_ms:g} ms, deadline misses "
            f"{t.deadline_misses}, windows later than T {t.late_windows}"
        )
        for name, spread in (
            ("latency_ms", t.latency_ms),
            ("step_ms", t.step_ms),
            ("overhead_ms", t.overhead_ms),
            ("period_error_ms", t.period_error_ms),
        ):
            if spread.n:
                lines.append(
                    f"  {name:<16} p50 {spread.p50:.3f}  p99 {spread.p99:.3f}  "
                    f"max {spread.max:.3f}  (n={spread.n})"
                )
            else:
                lines.append(f"  {name:<16} n/a")
        if self.jitter_budget_ms is not None:
            lines.append(
                f"  jitter budget p99 <= {self.jitter_budget_ms:g} ms: "
                + ("ok" if self.jitter_ok else "EXCEEDED")
            )
        lines += [f"note      {n}" for n in self.notes]
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def verify_session(
    session: Session,
    *,
    tolerance: Tolerance | None = None,
    envelope_path: str | None = None,
    policy_spec: str | None = None,
    jitter_budget_ms: float | None = None,
) -> VerifyReport:
    """Verify ``session``; see the module docstring.

    Args:
        session: The loaded session.
        tolerance: Float tolerance (default 1e-9 absolute and relative).
        envelope_path: Replace the recorded envelope (try a new one).
        policy_spec: Replace the recorded policy (try a new one).
        jitter_budget_ms: Fail when the p99 period error exceeds this (real-time runs).

    Raises:
        RecordingError: The header cannot be rebuilt.
        ConfigError: An override or the recorded bundle is unusable.
    """
    tol = tolerance or Tolerance()
    built = rebuild(session, envelope_path=envelope_path, policy_spec=policy_spec)
    governor = SafetyGovernor(built.envelope, session.period_ms / 1000.0, built.policy.action_map)
    # Log lines of the replayed envelope (clamps, faults) carry replay=<file>, so they are
    # never mistaken for a live session's.
    with structlog.contextvars.bound_contextvars(replay=session.path.name):
        result = rerun(session, built.policy, governor, tol)
    # Invariants hold against the envelope that was in force when recording.
    invariant_env = built.envelope
    if envelope_path is not None:
        invariant_env = recorded_envelope(session)
    violations = check_invariants(session, invariant_env)
    notes: list[str] = []
    if not session.tail.clean:
        notes.append(
            f"torn tail accepted: {session.tail}; only the intact records before it are "
            "verified (the end of the run is not recorded)"
        )
    for record in session.records_of("run_error"):
        notes.append(
            f"the controller exited with code {record.payload.get('exit_code')}: "
            f"{record.payload.get('error')}"
        )
    return VerifyReport(
        str(session.path),
        session.header.format_version,
        str(session.tail),
        session.tail.clean,
        built.policy_source,
        f"{built.envelope.name} {built.envelope.sha256()[:12]}…",
        tol,
        list(built.checks),
        result,
        violations,
        timing_report(session),
        jitter_budget_ms,
        notes,
    )


__all__ = ["Mismatch", "VerifyReport", "Violation", "verify_session"]
