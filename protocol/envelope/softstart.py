"""Soft-start rule: after every arm, resume or recovery the amplitude ceiling grows linearly.

For ``soft_start_s`` seconds after the start instant the amplitude stays below
``amplitude_max · elapsed / soft_start_s``; afterwards only the slew rule limits the ramp.
"""

from __future__ import annotations

from dataclasses import replace

from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Finding, Setpoint


def soft_start_ceiling(elapsed_s: float, env: SafetyEnvelope) -> float:
    """Amplitude ceiling ``elapsed_s`` after the soft start began."""
    if env.soft_start_s <= 0.0 or elapsed_s >= env.soft_start_s:
        return env.amplitude_max
    return env.amplitude_max * max(0.0, elapsed_s) / env.soft_start_s


def apply_soft_start(
    sp: Setpoint, elapsed_s: float, env: SafetyEnvelope
) -> tuple[Setpoint, list[Finding]]:
    """Lower the amplitude of ``sp`` to the soft-start ceiling."""
    ceiling = soft_start_ceiling(elapsed_s, env)
    if sp.amplitude <= ceiling:
        return sp, []
    detail = (
        f"Expected amplitude <= {ceiling:.6g} {env.amplitude_unit} at {elapsed_s:.3f} s of a "
        f"{env.soft_start_s} s soft start, actual {sp.amplitude}"
    )
    finding = Finding("soft_start", "clamp", "amplitude", sp.amplitude, ceiling, detail)
    return replace(sp, amplitude=ceiling), [finding]
