"""Slew rule: how far one control period may move the output from the previous setpoint.

The amplitude may rise by at most ``amplitude_up_per_s · T`` and fall by at most
``amplitude_down_per_s · T`` per period ``T``. While the previous output was stimulating,
frequency and pulse width move by at most one step per period; while it was off they take the
target at once (no pulses are delivered, so a switch cannot be felt). If an intermediate point of
the ramp would break the duty or charge rule (raising the width while the amplitude ramps, say),
frequency and width stay where they were and only the amplitude moves, never above what the
previous width allows.

"Previous" for frequency and width means the shape the output may still be delivering
(:func:`protocol.envelope.rampdown.shape_in_force`): after an off setpoint the stimulator ramps
down with the last on setting's width and rate, so until that ramp has run out (plus one
control period for a device that lags its command) the step limits count from it.
"""

from __future__ import annotations

from protocol.envelope.charge import max_amplitude_for, within_charge
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.duty import fits_duty
from protocol.envelope.rampdown import shape_in_force
from protocol.envelope.setpoint import Finding, Setpoint
from protocol.envelope.tolerance import within

#: A step that ends within this relative distance of its target lands on the target (a ramp of
#: 0.5 mA in 0.1 mA steps ends at 2.8e-17 mA in floating point: "on" for the governor, 0 µA,
#: off, for a device, which then keeps its old pulse width; see ``tests/test_envelope_rampdown``).
SNAP_REL = 1e-9


def _step_toward(current: float, target: float, max_step: float) -> float:
    if target > current + max_step:
        out = current + max_step
    elif target < current - max_step:
        out = current - max_step
    else:
        return target
    # Land on the target when rounding alone keeps the step from it: always onto 0 (a fall
    # straight to 0 is a stop, which every check allows, and 6e-10 mA would be "on" for the
    # governor but 0 µA, off, for a device), otherwise only if the whole step still passes the
    # backends' check (a target 3e-9 mA beyond a 0.2 mA step, a float32 action, must not make
    # the governor emit a setpoint that the monitor calls a breach).
    snap = abs(out - target) <= SNAP_REL * (1.0 + abs(target))
    return target if snap and (target == 0.0 or within(abs(target - current), max_step)) else out


def apply_slew(
    target: Setpoint,
    previous: Setpoint,
    env: SafetyEnvelope,
    period_s: float,
    last_on: Setpoint | None = None,
    off_for_s: float = 0.0,
) -> tuple[Setpoint, list[Finding]]:
    """Move from ``previous`` toward ``target`` by at most one period's worth of change.

    Args:
        target: A setpoint that already satisfies bounds, duty and charge.
        previous: The last setpoint sent (satisfies every rule).
        env: The envelope.
        period_s: Control period in s.
        last_on: The last setpoint sent with a non-zero amplitude (``None``: none since the
            output was at rest).
        off_for_s: How long the output has been commanded off without a break, in s.

    Returns:
        The next setpoint and a finding per quantity that was slowed down.
    """
    findings: list[Finding] = []
    up = env.amplitude_up_per_s * period_s
    down = env.amplitude_down_per_s * period_s
    amp = _step_toward(
        previous.amplitude, target.amplitude, up if target.amplitude > previous.amplitude else down
    )
    if amp != target.amplitude:
        rising = target.amplitude > previous.amplitude
        reason = "ramp_up" if rising else "ramp_down"
        rate = env.amplitude_up_per_s if rising else env.amplitude_down_per_s
        detail = (
            f"Expected an amplitude change <= {rate} {env.amplitude_unit}/s "
            f"({up if rising else down:.6g} per {period_s * 1000:.6g} ms), "
            f"actual request {previous.amplitude} → {target.amplitude}"
        )
        findings.append(Finding(reason, "clamp", "amplitude", target.amplitude, amp, detail))
    shape = shape_in_force(previous, last_on, off_for_s, env, margin_s=period_s)
    if shape is not None:
        freq = _step_toward(shape.frequency_hz, target.frequency_hz, env.frequency_step_hz)
        width = _step_toward(shape.pulse_width_us, target.pulse_width_us, env.pulse_width_step_us)
    else:
        freq, width = target.frequency_hz, target.pulse_width_us
    ref = shape if shape is not None else previous
    if freq != target.frequency_hz:
        detail = (
            f"Expected a frequency change <= {env.frequency_step_hz} Hz per period, "
            f"actual {ref.frequency_hz} → {target.frequency_hz}"
        )
        findings.append(
            Finding("frequency_step", "clamp", "frequency_hz", target.frequency_hz, freq, detail)
        )
    if width != target.pulse_width_us:
        detail = (
            f"Expected a pulse-width change <= {env.pulse_width_step_us} µs per period, "
            f"actual {ref.pulse_width_us} → {target.pulse_width_us}"
        )
        findings.append(
            Finding(
                "pulse_width_step", "clamp", "pulse_width_us", target.pulse_width_us, width, detail
            )
        )
    out = Setpoint(amplitude=amp, frequency_hz=freq, pulse_width_us=width)
    if fits_duty(out, env) and within_charge(out, env):
        return out, findings
    # An intermediate point breaks a static rule: keep the previous shape, move only amplitude.
    ceiling, reason = max_amplitude_for(ref.pulse_width_us, env)
    held_amp = max(previous.amplitude, min(amp, ceiling)) if amp > previous.amplitude else amp
    detail = (
        f"Expected every ramp step to respect duty and {reason}; holding "
        f"{ref.frequency_hz} Hz, "
        f"{ref.pulse_width_us} µs while the amplitude moves"
    )
    findings.append(
        Finding("ramp_intermediate", "clamp", "pulse_width_us", width, ref.pulse_width_us, detail)
    )
    return Setpoint(
        amplitude=held_amp,
        frequency_hz=ref.frequency_hz,
        pulse_width_us=ref.pulse_width_us,
    ), findings
