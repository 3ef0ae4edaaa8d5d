"""Duty rule: two phases, the interphase gap and a recharge margin fit into one period.

``1e6 / frequency_hz >= 2·pulse_width_us + interphase_gap_us + recharge_margin_us``. When they do
not fit, the pulse width is shortened (never the period stretched) and the clamp is flagged.
"""

from __future__ import annotations

from dataclasses import replace

from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Finding, Setpoint
from protocol.envelope.tolerance import within


def max_pulse_width_us(frequency_hz: float, env: SafetyEnvelope) -> float:
    """Longest phase that fits at ``frequency_hz``."""
    return (1e6 / frequency_hz - env.interphase_gap_us - env.recharge_margin_us) / 2.0


def apply_duty(sp: Setpoint, env: SafetyEnvelope) -> tuple[Setpoint, list[Finding]]:
    """Shorten the pulse width so that the pulse fits its period (frequency already in range)."""
    limit = min(env.pulse_width_max_us, max_pulse_width_us(sp.frequency_hz, env))
    if sp.pulse_width_us <= limit:
        return sp, []
    detail = (
        f"Expected pulse_width_us <= {limit:.3f} so that 2 phases + "
        f"{env.interphase_gap_us} µs gap + {env.recharge_margin_us} µs margin fit in "
        f"1/{sp.frequency_hz} Hz, actual {sp.pulse_width_us}"
    )
    finding = Finding("duty_cycle", "clamp", "pulse_width_us", sp.pulse_width_us, limit, detail)
    return replace(sp, pulse_width_us=limit), [finding]


def fits_duty(sp: Setpoint, env: SafetyEnvelope) -> bool:
    """Whether ``sp`` satisfies the duty rule (up to the envelope's shared tolerance)."""
    return within(sp.pulse_width_us, max_pulse_width_us(sp.frequency_hz, env))
