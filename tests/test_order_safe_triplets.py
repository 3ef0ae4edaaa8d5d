"""A stimulation triplet is never passed by position (issue 20, item 6).

The protocol side orders it (amplitude, frequency, pulse width), the device side (amplitude,
pulse width, frequency); a positional call that swapped the two would run. Every constructor
and method that takes a triplet refuses one by position and accepts it by keyword.
"""

from __future__ import annotations

import pytest

from core.clock import FakeClock
from drivers.envelope import DeviceEnvelope
from drivers.tissue import TissueTransfer
from drivers.virtual import VirtualStimulator
from protocol.envelope.setpoint import Setpoint
from simulator.stimulus import Stimulus


def test_setpoint_refuses_a_positional_triplet() -> None:
    with pytest.raises(TypeError):
        Setpoint(100.0, 130.0, 90.0)  # type: ignore[misc]
    sp = Setpoint(amplitude=100.0, frequency_hz=130.0, pulse_width_us=90.0)
    assert (sp.frequency_hz, sp.pulse_width_us) == (130.0, 90.0)


def test_stimulus_takes_only_its_amplitude_by_position() -> None:
    with pytest.raises(TypeError):
        Stimulus(100.0, 130.0, 90.0)  # type: ignore[misc]
    stim = Stimulus(100.0, frequency_hz=130.0, pulse_width_us=90.0)
    assert (stim.amplitude_mv, stim.frequency_hz, stim.pulse_width_us) == (100.0, 130.0, 90.0)


def test_tissue_transfer_refuses_a_positional_triplet() -> None:
    transfer = TissueTransfer()
    with pytest.raises(TypeError):
        transfer.stimulus(1000, 90, 1300)  # type: ignore[misc]
    stim = transfer.stimulus(amp_ua=1000, pw_us=90, freq_dhz=1300)
    assert stim is not None
    assert (stim.frequency_hz, stim.pulse_width_us) == (130.0, 90.0)


def test_set_stimulation_refuses_a_positional_triplet() -> None:
    drv = VirtualStimulator(clock=FakeClock())
    drv.handshake()
    drv.arm(DeviceEnvelope())
    with pytest.raises(TypeError):
        drv.set_stimulation(1000, 90, 130.0, 200)  # type: ignore[misc]
    assert drv.commanded is None  # nothing reached the device
    cmd = drv.set_stimulation(
        amplitude_ua=1000, pulse_width_us=90, frequency_hz=130.0, lease_ms=200
    )
    assert (cmd.amp_ua, cmd.pw_us, cmd.freq_dhz) == (1000, 90, 1300)
