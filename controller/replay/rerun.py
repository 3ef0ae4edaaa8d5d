"""Re-run a session's policy and envelope on its recorded observations and compare.

The replay drives a fresh :class:`~controller.envelope.governor.SafetyGovernor` and the
rebuilt policy through the same calls, in the same order, as
:class:`~controller.loop.ControlLoop` did while recording:

* before tick 0: ``arm(0)`` and ``idle(0)``: the first command;
* after tick ``k``'s observation, at control time ``t_next`` (``(k+1)·T`` for a fast-paced
  run or a lockstep backend, the recorded command time plus ``T`` for a real-time run against
  a device): a ``hold`` when the recorded round trip of such a real-time run exceeded ``T``,
  otherwise the observation check, the policy and ``command``; that decision is tick
  ``k+1``'s command;
* recorded ``fault`` records (operator stop, lost backend, a deadline past ``2·T``) are facts
  of the run and are applied to the governor where they occurred.

Every recorded command (setpoint, held, fault, reasons), every envelope finding and every raw
action must be reproduced within the :class:`~controller.replay.compare.Tolerance`; the end of
the run (stop reason, summary counts) must match too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from controller.envelope.governor import Decision, SafetyGovernor
from controller.policies.base import Policy
from controller.replay.compare import Mismatch, Tolerance, compare_maps
from controller.replay.session import Session, Tick
from controller.summary import count_kinds
from controller.tick import charge_of_window, dose_field
from protocol.envelope.setpoint import Finding, Setpoint

#: Sessions at least this long show a progress bar on a terminal (stderr).
PROGRESS_FROM_TICKS = 20_000


@dataclass
class RerunResult:
    """What the re-run found.

    Args:
        mismatches: Every difference, in tick order.
        ticks: Ticks replayed.
        commands: Commands compared.
        actions: Raw policy outputs compared.
        end_reason: How the replayed run ended (``completed`` or a fault reason).
        counts: Envelope findings of the replay by reason.
    """

    mismatches: list[Mismatch] = field(default_factory=list)
    ticks: int = 0
    commands: int = 0
    actions: int = 0
    end_reason: str = "completed"
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def raw_to_record(raw: Any) -> dict[str, Any]:
    """The recorded form of a raw policy output (as the controller's recorder writes it)."""
    if isinstance(raw, Setpoint):
        return {"setpoint": raw.as_dict()}
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return {"unreadable": repr(raw)[:200]}
    return {"action": arr.ravel().tolist(), "shape": list(arr.shape)}


def finding_to_record(tick: int, f: Finding) -> dict[str, Any]:
    """The recorded form of an envelope finding (without its free-text detail)."""
    return {
        "tick": tick,
        "event": f.kind,
        "reason": f.reason,
        "param": f.field,
        "requested": f.requested,
        "applied": f.applied,
    }


class Rerun:
    """Replays one session.

    Args:
        session: The recorded session.
        policy: The policy to run (rebuilt from the header or an override).
        governor: A fresh governor for the envelope to apply.
        tol: Float tolerance.
    """

    def __init__(
        self, session: Session, policy: Policy, governor: SafetyGovernor, tol: Tolerance
    ) -> None:
        self.session = session
        self.policy = policy
        self.gov = governor
        self.tol = tol
        self.period_ms = session.period_ms
        self.period_s = self.period_ms / 1000.0
        # The deadline rules of the loop apply to real-time runs against real-time tissue only.
        self.realtime = session.pace == "realtime" and not session.lockstep
        self.result = RerunResult()
        # What the loop added to the policy's view (controller.tick): the delivered dose.
        self.dose = 0.0
        self.dose_field = dose_field(governor.envelope)
        # The run's stimulation-free tail (``--tail-s``): the policy was not asked in it.
        tail_s = float(session.config.get("tail_s", 0.0) or 0.0)
        duration_s = float(session.config.get("duration_s", 0.0) or 0.0)
        self.tail_from_s = duration_s - tail_s if tail_s > 0.0 else math.inf

    # ----------------------------------------------------------------------- compare

    def _command(self, t: Tick, decision: Decision) -> None:
        cmd = t.command or {}
        out = self.result.mismatches
        k = t.tick
        self.result.commands += 1
        out += compare_maps(
            self.tol, k, "command", "setpoint", cmd.get("setpoint"), decision.setpoint.as_dict()
        )
        for key, got in (
            ("held", decision.held),
            ("fault", decision.fault),
            ("reasons", [f.reason for f in decision.findings]),
        ):
            if cmd.get(key) != got:
                out.append(Mismatch(k, "command", key, cmd.get(key), got))
        replayed = [finding_to_record(k, f) for f in decision.findings]
        if len(t.events) != len(replayed):
            out.append(
                Mismatch(
                    k,
                    "envelope_event",
                    "count",
                    [e.get("reason") for e in t.events],
                    [e["reason"] for e in replayed],
                )
            )
            return
        for i, (rec, rep) in enumerate(zip(t.events, replayed, strict=True)):
            recorded = {key: rec.get(key) for key in rep}
            out += compare_maps(self.tol, k, "envelope_event", f"[{i}]", recorded, rep)

    def _action(self, t: Tick, raw: Any, ran: bool) -> None:
        k, out = t.tick, self.result.mismatches
        if not ran:
            if t.action is not None:
                out.append(
                    Mismatch(
                        k,
                        "action",
                        "presence",
                        "recorded",
                        "none",
                        "the replay skipped the policy (held or invalid observation)",
                    )
                )
            return
        if t.action is None:
            out.append(
                Mismatch(k, "action", "presence", "none", "computed", "the replay ran the policy")
            )
            return
        got = raw_to_record(raw)
        recorded = {key: v for key, v in t.action.items() if key != "tick"}
        if "unreadable" in recorded and "unreadable" in got:
            self.result.actions += 1
            return
        if set(recorded) != set(got):
            out.append(Mismatch(k, "action", "form", sorted(recorded), sorted(got)))
            return
        if "setpoint" in got:
            out += compare_maps(
                self.tol, k, "action", "setpoint", recorded["setpoint"], got["setpoint"]
            )
        else:
            if recorded["shape"] != got["shape"]:
                out.append(Mismatch(k, "action", "shape", recorded["shape"], got["shape"]))
            elif len(recorded["action"]) == len(got["action"]):
                for i, (e, g) in enumerate(zip(recorded["action"], got["action"], strict=True)):
                    if not self.tol.same(e, g):
                        out.append(Mismatch(k, "action", f"action[{i}]", e, g))
        self.result.actions += 1

    # -------------------------------------------------------------------------- run

    def _decide(self, obs: Mapping[str, Any], t_next: float) -> tuple[Decision, Any, bool]:
        if t_next >= self.tail_from_s - 1e-9:  # the tail: the envelope ramps off (ControlLoop)
            return self.gov.command(self.gov.envelope.off_setpoint(), t_next), None, False
        fields = {str(k): float(v) for k, v in obs["fields"].items()}
        fields[self.dose_field] = self.dose
        held = self.gov.check_observation(fields, self.policy.required_fields, t_next)
        if held is not None:
            return held, None, False
        try:
            raw: Any = self.policy.act(fields, float(obs["t_model_ms"]))
        except (ArithmeticError, ValueError, KeyError) as err:
            raw = err
        # The loop records an action only for a non-None output (see ControlLoop._ticks).
        return self.gov.command(raw, t_next), raw, raw is not None

    def _t_next(self, t: Tick) -> float:
        if not self.realtime:
            return (t.tick + 1) * self.period_s
        return float((t.command or {})["t_s"]) + self.period_s

    def _external_faults(self, t: Tick) -> str | None:
        reason = None
        for payload in t.faults():
            reason = str(payload.get("reason", "fault"))
            self.gov.fault(reason, str(payload.get("detail", "")))
        return reason

    def run(self) -> RerunResult:
        """Replay every tick and compare; return the findings."""
        gov, res = self.gov, self.result
        self.policy.reset()
        gov.arm(0.0)
        decision = gov.idle(0.0)
        ended: str | None = None
        last = self.session.ticks[-1] if self.session.ticks else None
        ticks = tqdm(
            self.session.ticks,
            desc="replay",
            unit="tick",
            leave=False,
            disable=None if len(self.session.ticks) >= PROGRESS_FROM_TICKS else True,
        )
        for t in ticks:
            if ended is not None:
                res.mismatches.append(
                    Mismatch(
                        t.tick,
                        "command",
                        "presence",
                        "none",
                        "a command",
                        f"the replayed run had ended ({ended})",
                    )
                )
                break
            res.ticks += 1
            self._command(t, decision)
            if t.observation is None:
                ended = self._external_faults(t) or ended
                if ended is None and t is last and not self.session.tail.clean:
                    break
                if ended is None:
                    res.mismatches.append(
                        Mismatch(
                            t.tick,
                            "observation",
                            "presence",
                            "a fault record",
                            "none",
                            "a tick without an observation must end in a fault",
                        )
                    )
                continue
            self.dose += window_charge(t.observation, self.gov.envelope.charge_unit)
            timing = t.timing
            if timing is None and t.faults():
                ended = self._external_faults(t)
                self._action(t, None, False)
                continue
            if timing is None and t is last and not self.session.tail.clean:
                break
            t_next = self._t_next(t)
            late = (
                self.realtime
                and timing is not None
                and float(timing.get("step_ms", 0.0)) > self.period_ms
            )
            if late:
                detail = f"recorded round trip {timing['step_ms'] if timing else '?'} ms"
                decision, raw, ran = gov.hold(t_next, "late_observation", detail), None, False
            else:
                decision, raw, ran = self._decide(t.observation, t_next)
            self._action(t, raw, ran)
            if decision.fault is not None:
                ended = decision.fault
            ended = self._external_faults(t) or ended
        res.end_reason = ended or "completed"
        self._check_end()
        res.counts = {
            kind: count_kinds(gov.counts, gov.reason_kinds, kind)
            for kind in ("clamp", "reject", "hold", "recovery")
        }
        self._check_summary()
        return res

    def _charge(self) -> float:
        total = 0.0
        for t in self.session.ticks:
            if t.observation is not None:
                charge = window_charge(t.observation, self.gov.envelope.charge_unit)
                if math.isfinite(charge):
                    total += charge
        return total

    def _deadline_misses(self) -> int:
        if not self.realtime:
            return 0
        late = 0
        for t in self.session.ticks:
            step = (t.timing or {}).get("step_ms")
            if isinstance(step, int | float) and step > self.period_ms:
                late += 1
            late += sum(1 for f in t.faults() if f.get("reason") == "deadline_2t")
        return late

    def _check_end(self) -> None:
        stops = self.session.records_of("stop")
        res = self.result
        if not stops:
            return
        recorded = str(stops[0].payload.get("reason", ""))
        if recorded != res.end_reason:
            res.mismatches.append(Mismatch(None, "stop", "reason", recorded, res.end_reason))
        duration_s = self.session.config.get("duration_s")
        if res.end_reason == "completed" and isinstance(duration_s, int | float):
            planned = max(1, round(float(duration_s) * 1000.0 / self.period_ms))
            if planned != len(self.session.ticks):
                res.mismatches.append(
                    Mismatch(
                        None,
                        "stop",
                        "ticks",
                        planned,
                        len(self.session.ticks),
                        "a completed run has duration_s / period ticks",
                    )
                )

    def _check_summary(self) -> None:
        summary = self.session.summary()
        if summary is None:
            return
        res = self.result
        for kind, key in (
            ("clamp", "clamps"),
            ("reject", "rejects"),
            ("hold", "holds"),
            ("recovery", "recoveries"),
        ):
            recorded = summary.get(key)
            if isinstance(recorded, dict) and recorded != res.counts[kind]:
                res.mismatches.append(Mismatch(None, "summary", key, recorded, res.counts[kind]))
        charge = summary.get("charge_delivered")
        if isinstance(charge, int | float) and not self.tol.same(charge, self._charge()):
            res.mismatches.append(
                Mismatch(
                    None,
                    "summary",
                    "charge_delivered",
                    charge,
                    self._charge(),
                    "sum over the recorded observations",
                )
            )
        latch = summary.get("latch_time_ms")
        replayed_latch = getattr(self.policy, "latched_at_ms", None)
        if "latch_time_ms" in summary and not self.tol.same(latch, replayed_latch):
            res.mismatches.append(Mismatch(None, "summary", "latch_time_ms", latch, replayed_latch))
        misses = summary.get("deadline_misses")
        if isinstance(misses, int) and misses != self._deadline_misses():
            res.mismatches.append(
                Mismatch(
                    None,
                    "summary",
                    "deadline_misses",
                    misses,
                    self._deadline_misses(),
                    "recorded round trips > T, plus a deadline fault past 2·T",
                )
            )
        ticks = summary.get("ticks")
        observed = sum(1 for t in self.session.ticks if t.observation is not None)
        if isinstance(ticks, int) and ticks != observed:
            res.mismatches.append(
                Mismatch(None, "summary", "ticks", ticks, observed, "ticks with an observation")
            )


def window_charge(obs: Mapping[str, Any], charge_unit: str) -> float:
    """Charge of one recorded window, as the control loop accounted it (``charge_of_window``).

    The recorded observation carries the fields, the applied setpoint (a map, or ``None``) and
    the window's duration.
    """
    applied = obs.get("applied")
    setpoint = None
    if isinstance(applied, dict):
        setpoint = Setpoint(
            amplitude=float(applied.get("amplitude", 0.0)),
            frequency_hz=float(applied.get("frequency_hz", 0.0)),
            pulse_width_us=float(applied.get("pulse_width_us", 0.0)),
        )
    fields: Mapping[str, float] = obs.get("fields", {})
    return charge_of_window(fields, setpoint, float(obs["duration_ms"]), charge_unit)


def rerun(
    session: Session, policy: Policy, governor: SafetyGovernor, tol: Tolerance
) -> RerunResult:
    """Replay ``session`` with ``policy`` and ``governor``; see :class:`Rerun`."""
    return Rerun(session, policy, governor, tol).run()
