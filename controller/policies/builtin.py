"""Built-in policies: ``off``, ``constant`` and ``ftsts`` (the paper's open-loop protocol).

``ftsts`` reproduces Schmalz & Kumar (2019) Fig 3: stimulation off until 1.98 s of model time,
then 100 mV / 83.33 Hz / 1000 µs desynchronising pulses until the mean E→I weight observation
``weight_mv`` falls below 75 mV, then off for the rest of the run (the latch,
:class:`simulator.latch.Latch`, the same one the open-loop experiments use).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from controller.envelope.action import ActionMap
from protocol.envelope.setpoint import Setpoint
from simulator.latch import Latch, LatchRule

#: The paper's desynchronising pulse train in model units.
FTSTS_SETPOINT = Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)


class OffPolicy:
    """Never stimulates (a sham run)."""

    name = "off"
    required_fields: tuple[str, ...] = ()
    action_map: ActionMap | None = None

    def __init__(self, shape: Setpoint = FTSTS_SETPOINT) -> None:
        self._off = Setpoint(
            amplitude=0.0, frequency_hz=shape.frequency_hz, pulse_width_us=shape.pulse_width_us
        )

    def reset(self) -> None:
        """Stateless."""

    def act(self, fields: Mapping[str, float], t_model_ms: float) -> Setpoint:
        """Always off."""
        return self._off


class ConstantPolicy:
    """Always requests the same setpoint.

    Args:
        setpoint: The request (units of the envelope in use).
    """

    name = "constant"
    required_fields: tuple[str, ...] = ()
    action_map: ActionMap | None = None

    def __init__(self, setpoint: Setpoint) -> None:
        self.setpoint = setpoint

    def reset(self) -> None:
        """Stateless."""

    def act(self, fields: Mapping[str, float], t_model_ms: float) -> Setpoint:
        """The constant setpoint."""
        return self.setpoint


@dataclass
class FtstsPolicy:
    """The paper's open-loop protocol with the weight latch.

    Args:
        onset_ms: Model time from which stimulation is on.
        setpoint: The stimulation while on.
        latch_below_mv: Stimulation stops for good once ``weight_mv`` is below this.
    """

    onset_ms: float = 1980.0
    setpoint: Setpoint = FTSTS_SETPOINT
    latch_below_mv: float = 75.0
    name: str = "ftsts"
    required_fields: tuple[str, ...] = ("weight_mv",)
    action_map: ActionMap | None = None
    _latch: Latch = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._latch = Latch(LatchRule(self.latch_below_mv), self.onset_ms)

    @property
    def latched_at_ms(self) -> float | None:
        """Model time at which the latch tripped (``None`` until it does)."""
        return self._latch.latched_at_ms

    def reset(self) -> None:
        """Clear the latch."""
        self._latch.reset()

    def act(self, fields: Mapping[str, float], t_model_ms: float) -> Setpoint:
        """Off before onset and after the latch, the FTSTS train in between."""
        off = Setpoint(
            amplitude=0.0,
            frequency_hz=self.setpoint.frequency_hz,
            pulse_width_us=self.setpoint.pulse_width_us,
        )
        was_latched = self._latch.latched
        if self._latch.stimulating(t_model_ms, fields["weight_mv"]):
            return self.setpoint
        if self._latch.latched and not was_latched:
            structlog.get_logger("controller.policies").info(
                "ftsts_latch",
                t_model_ms=t_model_ms,
                weight_mv=fields["weight_mv"],
                threshold_mv=self.latch_below_mv,
            )
        return off
