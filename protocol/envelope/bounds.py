"""Range rule: each quantity of a requested setpoint lies within the session limits.

A non-finite value is rejected (never clamped). A finite value slightly out of range is clamped
to the nearest limit and flagged. A value more than one full range outside its limits means
the request is broken and is rejected (e.g. amplitude above ``2·max`` when the minimum is 0).

Amplitude 0 means off, always: ``amplitude_min`` is the lowest amplitude of stimulation that is
*on*, so a request of 0 stays 0 and a slightly negative one is clamped to 0 (off), never up to
the minimum. Only a request in ``(0, amplitude_min)`` is raised to the minimum.
"""

from __future__ import annotations

import math

from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Finding, Setpoint


def limits_of(env: SafetyEnvelope) -> dict[str, tuple[float, float, str]]:
    """``{field: (low, high, unit)}`` of the session limits."""
    return {
        "amplitude": (env.amplitude_min, env.amplitude_max, env.amplitude_unit),
        "frequency_hz": (env.frequency_min_hz, env.frequency_max_hz, "Hz"),
        "pulse_width_us": (env.pulse_width_min_us, env.pulse_width_max_us, "µs"),
    }


def apply_bounds(request: Setpoint, env: SafetyEnvelope) -> tuple[Setpoint | None, list[Finding]]:
    """Clamp or reject each field of ``request``.

    Returns:
        ``(setpoint, findings)``; the setpoint is ``None`` when the request is rejected.
    """
    values = request.as_dict()
    findings: list[Finding] = []
    for name, (lo, hi, unit) in limits_of(env).items():
        try:
            value = float(values[name])
        except (OverflowError, TypeError, ValueError):
            raw = values[name]
            shown = repr(raw)
            if isinstance(raw, int):
                shown = f"an integer of {raw.bit_length()} bits, too large for a float"
            detail = f"Expected a finite {name} in [{lo}, {hi}] {unit}, actual {shown[:80]}"
            return None, [Finding("non_finite_request", "reject", name, math.nan, math.nan, detail)]
        if not math.isfinite(value):
            detail = f"Expected a finite {name} in [{lo}, {hi}] {unit}, actual {value}"
            return None, [Finding("non_finite_request", "reject", name, value, math.nan, detail)]
        span = hi - lo if hi > lo else max(abs(hi), 1.0)
        if name == "amplitude" and -span <= value <= 0.0:
            if value < 0.0:
                detail = f"Expected amplitude 0 (off) or in [{lo}, {hi}] {unit}, actual {value}"
                findings.append(Finding("amplitude_below_zero", "clamp", name, value, 0.0, detail))
            values[name] = 0.0
            continue
        if value > hi + span or value < lo - span:
            detail = (
                f"Expected {name} in [{lo}, {hi}] {unit} (clamp zone [{lo - span}, {hi + span}]), "
                f"actual {value}"
            )
            return None, [
                Finding(f"{name}_far_out_of_range", "reject", name, value, math.nan, detail)
            ]
        if value > hi or value < lo:
            clamped = min(hi, max(lo, value))
            side = "above_max" if value > hi else "below_min"
            detail = f"Expected {name} in [{lo}, {hi}] {unit}, actual {value}"
            findings.append(Finding(f"{name}_{side}", "clamp", name, value, clamped, detail))
            values[name] = clamped
    return Setpoint(
        amplitude=values["amplitude"],
        frequency_hz=values["frequency_hz"],
        pulse_width_us=values["pulse_width_us"],
    ), findings
