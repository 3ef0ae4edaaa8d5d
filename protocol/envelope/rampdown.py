"""The pulse shape a stimulator may still be delivering after it was told to stop.

An off setpoint does not stop the pulses at once: the stimulator ramps the amplitude from
where it was to 0 at ``amplitude_down_per_s`` and keeps the pulse width and rate it had while
it ramps (``docs/device-protocol.md`` §5: a device checks a new setting's frequency and width
steps against what it is delivering). So for ``last_on.amplitude / amplitude_down_per_s``
after an off setpoint, the step limits on frequency and pulse width still count from the last
setting that was on. The governor and every backend's monitor take that shape from here, so a
policy that switches off and back on with a new width is slowed the same way everywhere, and
never refused by the device as a slew breach.
"""

from __future__ import annotations

from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint


def ramp_down_s(last_on: Setpoint, env: SafetyEnvelope) -> float:
    """Time the output takes to ramp from ``last_on``'s amplitude to 0, in s."""
    if env.amplitude_down_per_s <= 0.0:
        return float("inf")
    return last_on.amplitude / env.amplitude_down_per_s


def shape_in_force(
    previous: Setpoint,
    last_on: Setpoint | None,
    off_for_s: float,
    env: SafetyEnvelope,
    margin_s: float = 0.0,
) -> Setpoint | None:
    """The setting whose frequency and pulse width the output may still be delivering.

    Args:
        previous: The setpoint in force before the next one.
        last_on: The most recent setpoint with a non-zero amplitude since the output was last
            at rest (arm, reset), or ``None``.
        off_for_s: How long the output has been commanded off without a break, in s.
        env: The envelope (its ``amplitude_down_per_s`` sets the ramp's length).
        margin_s: Extra time to assume the ramp lasts (the governor allows one control
            period for a device whose ramp lags its command).

    Returns:
        ``previous`` while it is on; ``last_on`` while an off setpoint's ramp-down may still be
        delivering pulses; ``None`` once nothing can be flowing (any shape may start).
    """
    if previous.is_on:
        return previous
    if last_on is None or not last_on.is_on:
        return None
    if off_for_s < ramp_down_s(last_on, env) + margin_s:
        return last_on
    return None
