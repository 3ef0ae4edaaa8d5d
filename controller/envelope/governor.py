"""The safety governor: the one place where a policy's request becomes a backend setpoint.

Per tick the request goes through the rules in a fixed order, each in its own module:

1. action (``action.py``): normalised actions are checked for type, shape, NaN/Inf and
   ``|a| <= 2``, clamped to ``[-1, 1]`` and mapped to physical values;
2. bounds (``bounds.py``): session limits, clamp or reject;
3. duty (``duty.py``) and charge (``charge.py``): static limits of one setpoint;
4. lease (``lease.py``): an expired lease means the output is off, so soft start restarts;
5. slew (``slew.py``) and soft start (``softstart.py``): limits on the change per period.

A rejected request holds the previous setpoint for this tick. ``invalid_streak_to_fault``
rejections (or invalid observations) in a row latch a safe stop: from then on every decision
is "off" and :meth:`SafetyGovernor.arm` refuses until a new governor is made (explicit operator
action, never an automatic restart). Every finding is logged with its reason and counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import structlog

from controller.envelope.action import ActionMap, check_action
from controller.envelope.eventlog import FindingLog
from controller.envelope.lease import Lease
from controller.envelope.observation import Streak, check_observation
from core.errors import SafetyFaultError
from protocol.envelope.bounds import apply_bounds
from protocol.envelope.charge import apply_charge
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.duty import apply_duty
from protocol.envelope.floors import check_timing
from protocol.envelope.monitor import EnvelopeMonitor
from protocol.envelope.setpoint import Finding, Setpoint
from protocol.envelope.slew import apply_slew
from protocol.envelope.softstart import apply_soft_start


@dataclass(frozen=True)
class Decision:
    """What the governor sends for one tick.

    Args:
        setpoint: The setpoint for the backend (always inside the envelope).
        findings: Everything the rules did this tick.
        held: The request was not used (rejected, or the policy was skipped) and the previous
            setpoint was re-sent.
        fault: Reason code of a safe stop latched this tick (the setpoint is then off).
    """

    setpoint: Setpoint
    findings: tuple[Finding, ...]
    held: bool = False
    fault: str | None = None


class SafetyGovernor:
    """Applies the envelope to every request and keeps the state the rules need.

    Args:
        envelope: The validated envelope.
        period_s: Control period ``T`` in s (ramps are per period; lease is ``lease_periods·T``).
        action_map: Layout of normalised policy actions; ``None`` if the policy emits setpoints.
    """

    def __init__(
        self, envelope: SafetyEnvelope, period_s: float, action_map: ActionMap | None = None
    ) -> None:
        if not (math.isfinite(period_s) and period_s > 0.0):
            raise ValueError(f"Expected period_s > 0, actual {period_s}")
        check_timing(
            envelope.domain,
            envelope.lease_periods,
            envelope.watchdog_periods,
            period_s * 1000.0,
            f"envelope {envelope.name!r}",
        )
        self.envelope = envelope
        self.envelope_hash = envelope.sha256()
        self.period_s = period_s
        self.action_map = action_map
        self.lease = Lease.for_envelope(envelope, period_s)
        self.streak = Streak(envelope.invalid_streak_to_fault)
        self.counts: Counter[str] = Counter()
        self.counts_by_kind: Counter[str] = Counter()
        self.reason_kinds: dict[str, str] = {}
        self.latched: str | None = None
        self.last = envelope.off_setpoint()
        self._armed = False
        # The backends' own check, run on every setpoint before it leaves (defence in depth).
        # It also keeps the soft start's clock: the time since the most recent off setpoint
        # began, counted in periods, which is a lockstep backend's model time too.
        self.monitor = EnvelopeMonitor(envelope)
        self._log = structlog.get_logger("controller.envelope")
        self._events = FindingLog(self._log)

    @property
    def armed(self) -> bool:
        """Whether :meth:`arm` ran and no fault is latched."""
        return self._armed and self.latched is None

    def arm(self, now_s: float) -> None:
        """Start (or restart) output from zero under a soft start at ``now_s``.

        Raises:
            SafetyFaultError: A safe stop is latched; make a new governor to continue.
        """
        if self.latched is not None:
            raise SafetyFaultError(
                f"Expected no latched fault before arming, actual {self.latched!r}; "
                "an operator must start a new session"
            )
        self.last = replace(self.last, amplitude=0.0)
        self.lease.clear()
        self._armed = True
        self.monitor.restart()
        self._log.info("envelope_armed", t_s=now_s, envelope_hash=self.envelope_hash)

    def command(self, request: Any, now_s: float) -> Decision:
        """Turn a policy request (a :class:`Setpoint` or a normalised action) into a decision."""
        if self.latched is not None:
            return Decision(self._stopped(), (), held=True)
        if not self._armed:
            raise SafetyFaultError("Expected arm() before the first command, actual none")
        findings: list[Finding] = []
        target: Setpoint | None
        if isinstance(request, Setpoint):
            target = request
        elif self.action_map is not None and isinstance(request, np.ndarray | Sequence):
            action, found = check_action(request, self.action_map)
            findings += found
            target = None if action is None else self.action_map.to_setpoint(action)
        else:
            detail = (
                "Expected a Setpoint or a normalised action vector, "
                f"actual {type(request).__name__}"
            )
            findings.append(
                Finding("invalid_action", "reject", "action", math.nan, math.nan, detail)
            )
            target = None
        if target is not None:
            target, found = apply_bounds(target, self.envelope)
            findings += found
        if target is None:
            return self._reject(findings, now_s)
        self.streak.good()
        for rule in (apply_duty, apply_charge):
            target, found = rule(target, self.envelope)
            findings += found
        findings += self._check_lease(now_s)
        out, found = apply_slew(
            target,
            self.last,
            self.envelope,
            self.period_s,
            last_on=self.monitor.last_on,
            off_for_s=self.monitor.off_for_s,
        )
        findings += found
        out, found = apply_soft_start(out, self.monitor.since_off_s, self.envelope)
        findings += found
        return self._emit(out, findings, now_s, held=False)

    def idle(self, now_s: float) -> Decision:
        """Send the current setpoint without a request (the first tick, before any observation)."""
        if self.latched is not None:
            return Decision(self._stopped(), (), held=True)
        return self._emit(self.last, [], now_s, held=False)

    def hold(self, now_s: float, reason: str, detail: str) -> Decision:
        """Re-send the previous setpoint without running the rules on a new request.

        Args:
            now_s: Control time in s.
            reason: Why (``late_observation``, ``invalid_observation`` …), logged and counted.
            detail: Human-readable explanation.
        """
        if self.latched is not None:
            return Decision(self._stopped(), (), held=True)
        findings = [
            Finding(reason, "hold", "setpoint", self.last.amplitude, self.last.amplitude, detail)
        ]
        findings += self._check_lease(now_s)
        return self._emit(self.last, findings, now_s, held=True)

    def check_observation(
        self, values: Mapping[str, float], required: Sequence[str], now_s: float
    ) -> Decision | None:
        """Validate an observation; return a hold (or fault) decision when it is unusable.

        Returns:
            ``None`` when the observation is valid and the policy may run.
        """
        findings = check_observation(values, required)
        if not findings:
            return None
        return self._reject(findings, now_s)

    def fault(self, reason: str, detail: str) -> Decision:
        """Latch a safe stop for an external reason (deadline, lost backend, e-stop)."""
        if self.latched is None:
            self.latched = reason
            finding = Finding(reason, "fault", "setpoint", self.last.amplitude, 0.0, detail)
            self._record(finding)
        self.last = self._stopped()
        self.lease.clear()
        return Decision(self.last, (), held=True, fault=reason)

    def _stopped(self) -> Setpoint:
        return replace(self.last, amplitude=0.0)

    def _check_lease(self, now_s: float) -> list[Finding]:
        if not self.lease.expired(now_s):
            return []
        gap = now_s - (self.lease.last_sent_s or now_s)
        detail = (
            f"Expected a command within the {self.lease.lease_s * 1000:.6g} ms lease, actual gap "
            f"{gap * 1000:.6g} ms; the backend dropped its output, restarting from 0 "
            "with a soft start"
        )
        self.last = self._stopped()
        self.monitor.restart()  # the output is off: the soft start begins again
        return [Finding("lease_expired", "recovery", "amplitude", math.nan, 0.0, detail)]

    def _reject(self, findings: list[Finding], now_s: float) -> Decision:
        if self.streak.bad():
            for finding in findings:
                self._record(finding)
            reasons = ",".join(sorted({f.reason for f in findings}))
            detail = (
                f"Expected at most {self.streak.limit - 1} invalid inputs in a row, actual "
                f"{self.streak.count} (last: {reasons}); safe stop latched"
            )
            return self.fault("invalid_streak", detail)
        findings = [*findings, *self._check_lease(now_s)]
        return self._emit(self.last, findings, now_s, held=True)

    def _emit(self, out: Setpoint, findings: list[Finding], now_s: float, held: bool) -> Decision:
        for finding in findings:
            self._record(finding)
        self._events.end_tick()
        breaches = self.monitor.breaches(out)
        if breaches:
            detail = (
                "Expected the governor's setpoint to pass the backends' envelope check, actual "
                + "; ".join(map(str, breaches))
            )
            return self.fault("governor_breach", detail)
        self.monitor.accept(out, self.period_s)
        self.last = out
        self.lease.renew(now_s)
        return Decision(out, tuple(findings), held=held)

    def _record(self, finding: Finding) -> None:
        self.counts[finding.reason] += 1
        self.counts_by_kind[finding.kind] += 1
        self.reason_kinds[finding.reason] = finding.kind
        # Wrong things at once; a clamp repeated tick after tick once per episode (eventlog.py).
        self._events.record(finding)

    def flush_log(self) -> None:
        """Log the end of every clamp episode still open (call when the run ends)."""
        self._events.flush()
