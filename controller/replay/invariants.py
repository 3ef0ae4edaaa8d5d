"""Safety invariants checked on every recorded tick, independently of any re-run.

These hold for any correct session whatever the policy (hil-safety-protocol §5.2, item 3):

* the envelope rules ``finite``, ``bounds``, ``charge``, ``duty``, ``slew`` and ``soft_start``,
  checked by :class:`~protocol.envelope.monitor.EnvelopeMonitor`, the same check every backend
  runs on each ``step`` (one tick of the recording is one step of ``T``);
* ``off``: a tick whose policy request had amplitude 0 commands 0, or a ramp down from a
  previous command that was on; never a rise (amplitude 0 means off, whatever
  ``amplitude_min`` is);
* ``latched``: after a fault, no command stimulates;
* ``reasons``: every envelope event carries a reason, every held command (before a latch)
  carries one, and a command that differs from the setpoint the policy asked for carries one;
* ``sequence``: observation ``seq`` increases by one per tick; the run ends with a ``stop``
  (or, if it never reached its first tick, with the controller's ``run_error`` record).

Values are compared with the envelope's one slack (``protocol.envelope.tolerance``: 1e-9
relative, 1e-12 absolute; the governor's and the monitor's too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from controller.replay.session import Session
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.monitor import EnvelopeMonitor
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.tolerance import ABS_SLACK, REL_SLACK


@dataclass(frozen=True)
class Violation:
    """One broken invariant.

    Args:
        tick: Where (``None``: the run as a whole).
        invariant: Which (``bounds``, ``slew``, ``latched`` …).
        detail: Expected vs actual.
    """

    tick: int | None
    invariant: str
    detail: str

    def __str__(self) -> str:
        where = "run" if self.tick is None else f"tick {self.tick}"
        return f"{where}, {self.invariant}: {self.detail}"


def _setpoint(cmd: dict[str, Any]) -> Setpoint | None:
    sp = cmd.get("setpoint")
    if not isinstance(sp, dict):
        return None
    try:
        return Setpoint(
            amplitude=float(sp["amplitude"]),
            frequency_hz=float(sp["frequency_hz"]),
            pulse_width_us=float(sp["pulse_width_us"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _values(sp: Setpoint) -> tuple[float, float, float]:
    return (sp.amplitude, sp.frequency_hz, sp.pulse_width_us)


def _action_setpoint(action: dict[str, Any] | None) -> Setpoint | None:
    if action is None or "setpoint" not in action:
        return None
    return _setpoint(action)


def check_invariants(session: Session, env: SafetyEnvelope) -> list[Violation]:
    """Check every invariant on every recorded tick of ``session`` under ``env``."""
    out: list[Violation] = []
    period_s = session.period_ms / 1000.0
    monitor = EnvelopeMonitor(env)
    prev: Setpoint | None = None
    latched: str | None = None
    asked: Setpoint | None = None
    prev_seq = 0
    for t in session.ticks:
        k, cmd = t.tick, t.command or {}
        for i, ev in enumerate(t.events):
            if not ev.get("reason"):
                out.append(Violation(k, "reasons", f"Expected a reason in envelope event {i}"))
        sp = _setpoint(cmd)
        if sp is None:
            out.append(Violation(k, "finite", f"Expected a setpoint map, actual {cmd!r}"))
            break
        breaches = monitor.breaches(sp)
        out += [Violation(k, b.rule, b.detail) for b in breaches]
        if breaches and breaches[0].rule == "finite":
            break
        monitor.accept(sp, period_s)
        reasons = list(cmd.get("reasons") or [])
        if latched is not None and sp.is_on:
            out.append(
                Violation(
                    k,
                    "latched",
                    f"Expected amplitude 0 after fault {latched!r}, actual {sp.amplitude}",
                )
            )
        if cmd.get("fault") is not None and sp.is_on:
            out.append(Violation(k, "latched", f"Expected a fault command to be off, actual {sp}"))
        if asked is not None and not asked.is_on and prev is not None:
            ceiling = prev.amplitude if prev.is_on else 0.0
            if sp.amplitude > ceiling:
                out.append(
                    Violation(
                        k,
                        "off",
                        f"Expected a request for amplitude 0 (off) to give 0 or a ramp down "
                        f"from {prev.amplitude:g}, actual {sp.amplitude:g}",
                    )
                )
        if cmd.get("held") and latched is None and not reasons:
            out.append(Violation(k, "reasons", "Expected a reason for a held command, actual none"))
        differs = asked is not None and any(
            not math.isclose(a, b, rel_tol=REL_SLACK, abs_tol=ABS_SLACK)
            for a, b in zip(_values(asked), _values(sp), strict=True)
        )
        if differs and not cmd.get("held") and not reasons:
            out.append(
                Violation(
                    k,
                    "reasons",
                    f"Expected a reason when the command {_values(sp)} differs from the "
                    f"policy's request {_values(asked)}, actual none",  # type: ignore[arg-type]
                )
            )
        if cmd.get("fault") is not None:
            latched = str(cmd["fault"])
        for payload in t.faults():
            latched = latched or str(payload.get("reason", "fault"))
        if t.observation is not None:
            seq = t.observation.get("seq")
            if seq != prev_seq + 1:
                out.append(Violation(k, "sequence", f"Expected seq {prev_seq + 1}, actual {seq}"))
            prev_seq = int(seq) if isinstance(seq, int) else prev_seq + 1
        asked = _action_setpoint(t.action)
        prev = sp
    errored_before_start = not session.ticks and session.records_of("run_error")
    if session.tail.clean and not session.records_of("stop") and not errored_before_start:
        out.append(Violation(None, "sequence", "Expected the run to end with a stop record"))
    return out
