"""Charge rule: charge per phase and (physical domain) charge density per phase.

Charge per phase is ``amplitude × pulse_width``: mV·ms in the model domain, µC (mA × ms) in the
physical domain. The physical domain also bounds ``charge / electrode_area`` (µC/cm²). When a
request exceeds a limit the amplitude is lowered to the largest value that satisfies both.
"""

from __future__ import annotations

from dataclasses import replace

from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Finding, Setpoint
from protocol.envelope.tolerance import within


def max_amplitude_for(pulse_width_us: float, env: SafetyEnvelope) -> tuple[float, str]:
    """Largest amplitude at ``pulse_width_us`` under the charge limits, and the binding rule."""
    width_ms = pulse_width_us / 1000.0
    best = env.charge_per_phase_max / width_ms
    reason = "charge_per_phase"
    if env.domain == "physical":
        by_density = env.charge_density_max_uc_cm2 * env.electrode_area_cm2 / width_ms
        if by_density < best:
            best, reason = by_density, "charge_density"
    return best, reason


def apply_charge(sp: Setpoint, env: SafetyEnvelope) -> tuple[Setpoint, list[Finding]]:
    """Lower the amplitude of ``sp`` until charge (and density) per phase are within limits."""
    limit, reason = max_amplitude_for(sp.pulse_width_us, env)
    if sp.amplitude <= limit:
        return sp, []
    if reason == "charge_per_phase":
        detail = (
            f"Expected amplitude × {sp.pulse_width_us} µs <= {env.charge_per_phase_max} "
            f"{env.charge_unit}, i.e. amplitude <= {limit:.6g} {env.amplitude_unit}, "
            f"actual {sp.amplitude}"
        )
    else:
        detail = (
            f"Expected charge density <= {env.charge_density_max_uc_cm2} µC/cm² on "
            f"{env.electrode_area_cm2} cm², i.e. amplitude <= {limit:.6g} mA at "
            f"{sp.pulse_width_us} µs, actual {sp.amplitude}"
        )
    finding = Finding(reason, "clamp", "amplitude", sp.amplitude, limit, detail)
    return replace(sp, amplitude=limit), [finding]


def within_charge(sp: Setpoint, env: SafetyEnvelope) -> bool:
    """Whether ``sp`` satisfies the charge limits (up to the envelope's shared tolerance)."""
    limit, _ = max_amplitude_for(sp.pulse_width_us, env)
    return within(sp.amplitude, limit)
