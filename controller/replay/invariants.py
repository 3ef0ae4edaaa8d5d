"""Safety invariants checked on every recorded tick, independently of any re-run.

These hold for any correct session whatever the policy (hil-safety-protocol §5.2, item 3):

* ``finite``: every setpoint value is finite (NaN or Inf never reaches a backend);
* ``bounds``: amplitude in ``[0, amplitude_max]``, frequency and pulse width inside the session
  limits;
* ``charge``: charge (and, physical domain, charge density) per phase within the limits;
* ``duty``: while on, two phases, the gap and the recharge margin fit into one period;
* ``slew``: amplitude rises by at most ``amplitude_up_per_s·T`` and falls (except to 0, a stop)
  by at most ``amplitude_down_per_s·T`` per tick; while on, frequency and pulse width move by
  at most one step per tick;
* ``soft_start``: amplitude below ``amplitude_max·elapsed/soft_start_s`` after the arm at
  t = 0 and after every lease recovery;
* ``latched``: after a fault, no command stimulates;
* ``reasons``: every envelope event carries a reason, every held command (before a latch)
  carries one, and a command that differs from the setpoint the policy asked for carries one;
* ``sequence``: observation ``seq`` increases by one per tick; the run ends with a ``stop``
  (or, if it never reached its first tick, with the controller's ``run_error`` record).

Values are compared with a relative slack of 1e-9 (the governor's own tolerance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from controller.replay.session import Session
from protocol.envelope.config import Envelope
from protocol.envelope.duty import max_pulse_width_us
from protocol.envelope.softstart import soft_start_ceiling

_REL = 1e-9
_ABS = 1e-12


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


def _le(value: float, limit: float) -> bool:
    return value <= limit + _ABS + _REL * abs(limit)


def _setpoint(cmd: dict[str, Any]) -> tuple[float, float, float] | None:
    sp = cmd.get("setpoint")
    if not isinstance(sp, dict):
        return None
    try:
        return (
            float(sp["amplitude"]),
            float(sp["frequency_hz"]),
            float(sp["pulse_width_us"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _static(k: int, sp: tuple[float, float, float], env: Envelope) -> list[Violation]:
    amp, freq, width = sp
    out: list[Violation] = []
    if not all(math.isfinite(v) for v in sp):
        return [Violation(k, "finite", f"Expected finite setpoint values, actual {sp}")]
    if not (amp >= 0.0 and _le(amp, env.amplitude_max)):
        out.append(
            Violation(k, "bounds", f"Expected amplitude in [0, {env.amplitude_max}], actual {amp}")
        )
    lo, hi = env.frequency_min_hz, env.frequency_max_hz
    if not (_le(lo, freq) and _le(freq, hi)):
        out.append(Violation(k, "bounds", f"Expected frequency_hz in [{lo}, {hi}], actual {freq}"))
    lo, hi = env.pulse_width_min_us, env.pulse_width_max_us
    if not (_le(lo, width) and _le(width, hi)):
        out.append(
            Violation(k, "bounds", f"Expected pulse_width_us in [{lo}, {hi}], actual {width}")
        )
    charge = amp * width / 1000.0
    if not _le(charge, env.charge_per_phase_max):
        out.append(
            Violation(
                k,
                "charge",
                f"Expected charge per phase <= {env.charge_per_phase_max} {env.charge_unit}, "
                f"actual {charge}",
            )
        )
    if env.domain == "physical" and env.electrode_area_cm2 > 0.0:
        density = charge / env.electrode_area_cm2
        if not _le(density, env.charge_density_max_uc_cm2):
            out.append(
                Violation(
                    k,
                    "charge",
                    f"Expected charge density <= {env.charge_density_max_uc_cm2} µC/cm², "
                    f"actual {density}",
                )
            )
    if amp > 0.0 and freq > 0.0 and not _le(width, max_pulse_width_us(freq, env) + 1e-9):
        out.append(
            Violation(
                k,
                "duty",
                f"Expected pulse_width_us <= {max_pulse_width_us(freq, env):.6g} at {freq} Hz, "
                f"actual {width}",
            )
        )
    return out


def _slew(
    k: int,
    prev: tuple[float, float, float],
    sp: tuple[float, float, float],
    env: Envelope,
    period_s: float,
    recovered: bool,
) -> list[Violation]:
    out: list[Violation] = []
    up, down = env.amplitude_up_per_s * period_s, env.amplitude_down_per_s * period_s
    rise = sp[0] - prev[0]
    if not _le(rise, up):
        out.append(
            Violation(k, "slew", f"Expected an amplitude rise <= {up:.6g} per tick, actual {rise}")
        )
    if sp[0] > 0.0 and not _le(-rise, down):
        out.append(
            Violation(
                k, "slew", f"Expected an amplitude fall <= {down:.6g} per tick, actual {-rise}"
            )
        )
    if prev[0] > 0.0 and not recovered:
        for name, i, step in (
            ("frequency_hz", 1, env.frequency_step_hz),
            ("pulse_width_us", 2, env.pulse_width_step_us),
        ):
            change = abs(sp[i] - prev[i])
            if not _le(change, step):
                out.append(
                    Violation(
                        k, "slew", f"Expected a {name} change <= {step} per tick, actual {change}"
                    )
                )
    return out


def _action_setpoint(action: dict[str, Any] | None) -> tuple[float, float, float] | None:
    if action is None or "setpoint" not in action:
        return None
    return _setpoint(action)


def check_invariants(session: Session, env: Envelope) -> list[Violation]:
    """Check every invariant on every recorded tick of ``session`` under ``env``."""
    out: list[Violation] = []
    period_s = session.period_ms / 1000.0
    prev: tuple[float, float, float] | None = None
    latched: str | None = None
    soft_from_s = 0.0
    decided_at_s = 0.0
    asked: tuple[float, float, float] | None = None
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
        out += _static(k, sp, env)
        reasons = list(cmd.get("reasons") or [])
        recovered = "lease_expired" in reasons
        if recovered:
            soft_from_s = decided_at_s
        if latched is not None and sp[0] > 0.0:
            out.append(
                Violation(
                    k, "latched", f"Expected amplitude 0 after fault {latched!r}, actual {sp[0]}"
                )
            )
        if cmd.get("fault") is not None and sp[0] != 0.0:
            out.append(Violation(k, "latched", f"Expected a fault command to be off, actual {sp}"))
        ceiling = soft_start_ceiling(decided_at_s - soft_from_s, env)
        if not _le(sp[0], ceiling):
            out.append(
                Violation(
                    k,
                    "soft_start",
                    f"Expected amplitude <= {ceiling:.6g} at {decided_at_s - soft_from_s:.6g} s "
                    f"of the soft start, actual {sp[0]}",
                )
            )
        if prev is not None and all(math.isfinite(v) for v in prev + sp):
            out += _slew(k, prev, sp, env, period_s, recovered)
        if cmd.get("held") and latched is None and not reasons:
            out.append(Violation(k, "reasons", "Expected a reason for a held command, actual none"))
        differs = asked is not None and any(
            not math.isclose(a, b, rel_tol=_REL, abs_tol=_ABS)
            for a, b in zip(asked, sp, strict=True)
        )
        if differs and not cmd.get("held") and not reasons:
            out.append(
                Violation(
                    k,
                    "reasons",
                    f"Expected a reason when the command {sp} differs from the policy's "
                    f"request {asked}, actual none",
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
        if session.pace == "realtime":
            decided_at_s = float(cmd.get("t_s", k * period_s)) + period_s
        else:
            decided_at_s = (k + 1) * period_s
    errored_before_start = not session.ticks and session.records_of("run_error")
    if session.tail.clean and not session.records_of("stop") and not errored_before_start:
        out.append(Violation(None, "sequence", "Expected the run to end with a stop record"))
    return out
