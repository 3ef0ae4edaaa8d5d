"""The stimulation setpoint that the envelope emits and every backend receives.

A setpoint is held by the backend until the next one (or until its lease runs out). The amplitude
unit depends on the envelope's domain: ``mV`` of drive for the simulator (model units) and ``mA``
for a current-mode device. Frequency is always in Hz and the pulse width is per phase in µs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Setpoint:
    """One stimulation setting.

    Keyword-only (``Setpoint(amplitude=…, frequency_hz=…, pulse_width_us=…)``): the device
    layer orders the same three values differently, so no triplet is passed by position.

    Args:
        amplitude: Amplitude per phase in the envelope's unit (mV of drive or mA); 0 means off.
        frequency_hz: Pulse rate in Hz.
        pulse_width_us: Width of each of the two phases in µs.
    """

    amplitude: float
    frequency_hz: float
    pulse_width_us: float

    @property
    def is_on(self) -> bool:
        """Whether this setting delivers pulses."""
        return self.amplitude > 0.0

    def charge_per_phase(self) -> float:
        """Charge of one phase: amplitude × width in mV·ms (model) or µC (mA × ms)."""
        return self.amplitude * self.pulse_width_us / 1000.0

    def as_dict(self) -> dict[str, float]:
        """Plain mapping for logs and recordings."""
        return {
            "amplitude": self.amplitude,
            "frequency_hz": self.frequency_hz,
            "pulse_width_us": self.pulse_width_us,
        }


@dataclass(frozen=True)
class Finding:
    """One thing a rule did to a request.

    Args:
        reason: Stable reason code (``amplitude_above_max``, ``invalid_action`` …).
        kind: ``clamp`` (value changed, command sent), ``reject`` (request dropped, previous
            setpoint held) or ``fault`` (safe stop latched).
        field: Which quantity the finding is about (``amplitude``, ``action[1]`` …).
        requested: Value before the rule (NaN when there was none).
        applied: Value after the rule (NaN when rejected).
        detail: Human-readable explanation with the limit that applied.
    """

    reason: str
    kind: str
    field: str
    requested: float
    applied: float
    detail: str
