"""The device emulator's tissue in lockstep: the simulator served in the device's units.

A policy that is to run on a stimulator must be trained against the envelope it will meet
there (its bundle carries that envelope's hash), so in mA, µs and Hz. Training against the
emulator itself would run in real time (27 s per episode). :class:`TissueBackend` is the
simulator backend with the emulator's stimulus path in front of it: a step's
``amplitude_ma`` / ``frequency_hz`` / ``pulse_width_us`` are rounded to the device's integer
units (µA, µs, 0.1 Hz) exactly as ``SET_STIM`` carries them, and mapped onto model drive by
the same :class:`~drivers.tissue.TissueTransfer` the emulator's tissue uses (0.04 mV per µA by
default), so a setting has the same effect here and behind ``neuroloop-driver emulate``.
Observations are the simulator's (sensed features, and the unobservable ones for rewards and
studies); model time advances only inside ``step`` (lockstep, kind ``sim``).

What it leaves out is the device's own timing: the firmware ramps the amplitude between two
settings within a control period and senses on its own 20 ms clock, where this backend applies
each setting for the whole window. The governor ramps at the envelope's rates either way, so
the difference is at most one period's ramp (``docs/device-protocol.md`` §10 has the map).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from core.errors import ConfigError
from drivers.envelope import ABS_AMP_MAX_UA, ABS_FREQ_RANGE_DHZ, ABS_PW_RANGE_US
from drivers.tissue import TissueTransfer
from protocol.schema import Capabilities, ParamSpec
from simulator.server import SIM_CAPABILITIES, SimulatorBackend
from simulator.stimulus import Stimulus

#: Stimulus parameters in device units, over the device's absolute caps.
TISSUE_STIM_PARAMS = (
    ParamSpec("amplitude_ma", "mA", "amplitude", 0.0, ABS_AMP_MAX_UA / 1000.0),
    ParamSpec("frequency_hz", "Hz", "frequency", *(f / 10.0 for f in ABS_FREQ_RANGE_DHZ)),
    ParamSpec("pulse_width_us", "us", "pulse_width", *(float(w) for w in ABS_PW_RANGE_US)),
)


class TissueBackend(SimulatorBackend):
    """The simulator behind the device's stimulus units (see the module docstring).

    Args:
        transfer: Device-to-model map (the emulator's default unless given).
        **kwargs: :class:`~simulator.server.SimulatorBackend`'s arguments.
    """

    def __init__(self, transfer: TissueTransfer | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.transfer = transfer or TissueTransfer()
        self._caps = Capabilities(
            stim_params=TISSUE_STIM_PARAMS,
            observation_fields=SIM_CAPABILITIES.observation_fields,
            control_period_ms=SIM_CAPABILITIES.control_period_ms,
            min_duration_ms=SIM_CAPABILITIES.min_duration_ms,
            max_duration_ms=SIM_CAPABILITIES.max_duration_ms,
            supports_spikes=True,
            config_options=tuple(o for o in SIM_CAPABILITIES.config_options if o != "polarity"),
        )

    def capabilities(self) -> Capabilities:
        """Device units in, the simulator's observations out."""
        return self._caps

    def _on_configure(self, options: Mapping[str, object], control_period_ms: float) -> None:
        if "polarity" in options:
            raise ConfigError(
                "Expected no polarity option for the tissue backend (the electrode placement "
                f"fixes it: {self.transfer.polarity}), actual {options['polarity']!r}"
            )
        super()._on_configure(options, control_period_ms)  # type: ignore[arg-type]

    def _setting(self, stimulus: Mapping[str, float]) -> Stimulus | None:
        """The emulator's map: device integer units, then the tissue transfer.

        Raises:
            ConfigError: A non-finite value, or a setting that makes no valid stimulus.
        """
        values = tuple(
            stimulus[name] for name in ("amplitude_ma", "frequency_hz", "pulse_width_us")
        )
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"Expected finite stimulus values, actual {values}")
        return self.transfer.stimulus(
            amp_ua=round(values[0] * 1000.0),
            pw_us=round(values[2]),
            freq_dhz=round(values[1] * 10.0),
        )
