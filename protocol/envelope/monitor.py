"""The whole envelope checked on what is delivered: the rule every backend and replay runs.

The controller's governor *shapes* requests (clamps, ramps, holds) so that every setpoint it
emits obeys the envelope. :class:`EnvelopeMonitor` *verifies* a stream of setpoints against
the same rules, with the same functions, and refuses the first one that breaks any of them.
It runs in every backend (``protocol.backend``) on each ``step``, whoever the client is, and
in the replay invariants on each recorded command. The rules, in envelope units:

* ``finite``: every value is finite;
* ``bounds``: amplitude is 0 (off, always allowed) or in ``(0, amplitude_max]``; frequency and
  pulse width inside the session ranges (``amplitude_min`` is a target floor of the governor,
  which ramps through lower values, so it is not a delivery limit);
* ``duty`` and ``charge`` (while on): two phases, the gap and the recharge margin fit in one
  period; charge per phase (and, physical domain, density) within the limits;
* ``slew``: the amplitude rises by at most ``amplitude_up_per_s`` and falls (except to 0, a
  stop) by at most ``amplitude_down_per_s`` times the time the previous setpoint was held;
  while on, frequency and pulse width move by at most one step from the shape the output may
  still be delivering: the previous setpoint, or after an off setpoint the last on setting
  until its ramp-down (``amplitude / amplitude_down_per_s``) has run out
  (:mod:`protocol.envelope.rampdown`);
* ``soft_start`` (while on): amplitude ≤ ``amplitude_max · elapsed / soft_start_s``, where
  ``elapsed`` is the time since the start of the most recent off setpoint (the arm, a stop,
  a lease recovery or the policy switching off).

Comparisons allow the envelope's one slack (:mod:`protocol.envelope.tolerance`), the governor's too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.envelope.charge import max_amplitude_for
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.duty import max_pulse_width_us
from protocol.envelope.rampdown import shape_in_force
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.softstart import soft_start_ceiling
from protocol.envelope.tolerance import within


@dataclass(frozen=True)
class Breach:
    """One rule a setpoint breaks.

    Args:
        rule: ``finite``, ``bounds``, ``duty``, ``charge``, ``slew`` or ``soft_start``.
        detail: What was expected and what arrived.
    """

    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


def static_breaches(sp: Setpoint, env: SafetyEnvelope) -> list[Breach]:
    """Rules one setpoint must meet on its own: finite, bounds, duty and charge."""
    values = (sp.amplitude, sp.frequency_hz, sp.pulse_width_us)
    if not all(math.isfinite(v) for v in values):
        return [Breach("finite", f"Expected finite setpoint values, actual {values}")]
    out: list[Breach] = []
    unit = env.amplitude_unit
    if sp.amplitude < 0.0 or not within(sp.amplitude, env.amplitude_max):
        out.append(
            Breach(
                "bounds",
                f"Expected amplitude 0 (off) or in (0, {env.amplitude_max:g}] {unit}, "
                f"actual {sp.amplitude:g}",
            )
        )
    for name, value, lo, hi, u in (
        ("frequency_hz", sp.frequency_hz, env.frequency_min_hz, env.frequency_max_hz, "Hz"),
        ("pulse_width_us", sp.pulse_width_us, env.pulse_width_min_us, env.pulse_width_max_us, "µs"),
    ):
        if not (within(lo, value) and within(value, hi)):
            out.append(
                Breach("bounds", f"Expected {name} in [{lo:g}, {hi:g}] {u}, actual {value:g}")
            )
    if not sp.is_on:
        return out
    width_max = max_pulse_width_us(sp.frequency_hz, env)
    if not within(sp.pulse_width_us, width_max):
        out.append(
            Breach(
                "duty",
                f"Expected pulse_width_us <= {width_max:.6g} (2 phases + "
                f"{env.interphase_gap_us:g} µs gap + {env.recharge_margin_us:g} µs margin in "
                f"1/{sp.frequency_hz:g} Hz), actual {sp.pulse_width_us:g}",
            )
        )
    amp_max, reason = max_amplitude_for(sp.pulse_width_us, env)
    if not within(sp.amplitude, amp_max):
        out.append(
            Breach(
                "charge",
                f"Expected amplitude <= {amp_max:.6g} {unit} at {sp.pulse_width_us:g} µs "
                f"({reason}: {env.charge_per_phase_max:g} {env.charge_unit} per phase), "
                f"actual {sp.amplitude:g}",
            )
        )
    return out


def change_breaches(
    sp: Setpoint,
    previous: Setpoint,
    held_s: float,
    since_off_s: float,
    env: SafetyEnvelope,
    last_on: Setpoint | None = None,
    off_for_s: float = 0.0,
) -> list[Breach]:
    """Rules on the change from ``previous``: slew, frequency/width steps and soft start.

    Args:
        sp: The new setpoint.
        previous: The setpoint in force before it.
        held_s: How long ``previous`` was in force, in s.
        since_off_s: Time from the start of the most recent off setpoint to ``sp``, in s.
        env: The envelope.
        last_on: The most recent on setpoint since the output was at rest, or ``None``.
        off_for_s: How long the output has been commanded off without a break, in s.
    """
    out: list[Breach] = []
    unit = env.amplitude_unit
    rise = sp.amplitude - previous.amplitude
    if rise > 0.0 and not within(rise, env.amplitude_up_per_s * held_s):
        out.append(
            Breach(
                "slew",
                f"Expected an amplitude rise <= {env.amplitude_up_per_s:g} {unit}/s × "
                f"{held_s * 1000:g} ms, actual {previous.amplitude:g} → {sp.amplitude:g}",
            )
        )
    if sp.is_on and rise < 0.0 and not within(-rise, env.amplitude_down_per_s * held_s):
        out.append(
            Breach(
                "slew",
                f"Expected an amplitude fall <= {env.amplitude_down_per_s:g} {unit}/s × "
                f"{held_s * 1000:g} ms (or straight to 0), actual "
                f"{previous.amplitude:g} → {sp.amplitude:g}",
            )
        )
    shape = shape_in_force(previous, last_on, off_for_s, env) if sp.is_on else None
    if shape is not None:
        when = "while stimulating" if previous.is_on else "while the output ramps down"
        for name, step, before, after, u in (
            ("frequency_hz", env.frequency_step_hz, shape.frequency_hz, sp.frequency_hz, "Hz"),
            (
                "pulse_width_us",
                env.pulse_width_step_us,
                shape.pulse_width_us,
                sp.pulse_width_us,
                "µs",
            ),
        ):
            if not within(abs(after - before), step):
                out.append(
                    Breach(
                        "slew",
                        f"Expected a {name} change <= {step:g} {u} {when}, actual "
                        f"{before:g} → {after:g}",
                    )
                )
    if sp.is_on:
        ceiling = soft_start_ceiling(since_off_s, env)
        if not within(sp.amplitude, ceiling):
            out.append(
                Breach(
                    "soft_start",
                    f"Expected amplitude <= {ceiling:.6g} {unit} at {since_off_s * 1000:g} ms "
                    f"after the output was last off ({env.soft_start_s:g} s soft start), actual "
                    f"{sp.amplitude:g}",
                )
            )
    return out


class EnvelopeMonitor:
    """Checks a stream of delivered setpoints against the whole envelope.

    Args:
        envelope: The validated envelope (in envelope units).
    """

    def __init__(self, envelope: SafetyEnvelope) -> None:
        self.envelope = envelope
        self._off = envelope.off_setpoint()
        self.restart()

    def restart(self) -> None:
        """Output off (arm, reset or stop): the next setpoint starts a soft start from 0."""
        self.previous = self._off
        self._held_s = 0.0
        self._since_off_s = 0.0
        self._last_on: Setpoint | None = None
        self._off_run_s = 0.0

    @property
    def since_off_s(self) -> float:
        """Time from the start of the most recent off setpoint to the next one (soft start)."""
        return self._since_off_s

    @property
    def last_on(self) -> Setpoint | None:
        """The most recent on setpoint since the output was at rest (its ramp-down shape)."""
        return self._last_on

    @property
    def off_for_s(self) -> float:
        """How long the output has been commanded off without a break (0 while on), in s."""
        return self._off_run_s

    def breaches(self, sp: Setpoint) -> list[Breach]:
        """Every rule ``sp`` breaks as the next setpoint (state unchanged)."""
        found = static_breaches(sp, self.envelope)
        if found and found[0].rule == "finite":
            return found
        return found + change_breaches(
            sp,
            self.previous,
            self._held_s,
            self._since_off_s,
            self.envelope,
            self._last_on,
            self._off_run_s,
        )

    def accept(self, sp: Setpoint, duration_s: float) -> None:
        """Record that ``sp`` is in force for ``duration_s`` (after :meth:`breaches` was empty)."""
        if sp.is_on:
            self._last_on = sp
            self._off_run_s = 0.0
        else:
            self._since_off_s = 0.0
            self._off_run_s += duration_s
        self._since_off_s += duration_s
        self.previous = sp
        self._held_s = duration_s
