"""Any protocol backend object, called in process, behaves as it does over the wire."""

from __future__ import annotations

import pytest

from controller.backends.inprocess import InProcessConnection
from controller.envelope.governor import SafetyGovernor
from controller.loop import ControlLoop, LoopSettings
from controller.policies.builtin import ConstantPolicy
from core.errors import ProtocolError, SafetyLimitError
from protocol.envelope.setpoint import Setpoint
from protocol.loopback import LOOPBACK_ENVELOPE, LoopbackBackend

PERIOD_S = 0.02


def test_the_loop_drives_the_loopback_in_process_through_the_governor() -> None:
    backend = LoopbackBackend(session_timeout_s=60.0)
    connection = InProcessConnection(backend)
    policy = ConstantPolicy(Setpoint(amplitude=4.0, frequency_hz=100.0, pulse_width_us=200.0))
    gov = SafetyGovernor(LOOPBACK_ENVELOPE, PERIOD_S)
    loop = ControlLoop(connection, policy, gov, LoopSettings(20.0, 40 * PERIOD_S, "fast", 1))
    result = loop.run()
    assert result.end_reason == "completed"
    assert result.info.kind == "loopback"
    assert result.info.lockstep
    applied = connection.applied
    assert applied[0] is None  # the governor's first setpoint is off (soft start)
    on = [a for a in applied if a is not None]
    # The soft start and ramp reached the backend, then the request itself.
    assert 0.0 < on[0].amplitude < 4.0
    assert on[-1] == Setpoint(amplitude=4.0, frequency_hz=100.0, pulse_width_us=200.0)
    assert backend.state == "stopped"  # the loop's stop reached the backend
    connection.close()
    assert backend.state == "idle"


def test_an_in_process_backend_refuses_what_the_envelope_forbids_and_stops() -> None:
    backend = LoopbackBackend(session_timeout_s=60.0)
    connection = InProcessConnection(backend)
    connection.hello("test")
    connection.configure(LOOPBACK_ENVELOPE, 20.0)
    connection.reset(None)
    # The first step after reset must be off: the backend's own soft start refuses 5 mV.
    with pytest.raises(SafetyLimitError, match="configured envelope"):
        connection.step(
            Setpoint(amplitude=5.0, frequency_hz=100.0, pulse_width_us=200.0), 20.0, 1.0
        )
    assert backend.state == "stopped"
    with pytest.raises(ProtocolError, match="send reset first"):
        connection.step(
            Setpoint(amplitude=0.0, frequency_hz=100.0, pulse_width_us=200.0), 20.0, 1.0
        )
    connection.close()
