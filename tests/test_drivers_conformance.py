"""One behaviour contract, two drivers: VirtualStimulator (fake clock), SerialStimulator (pty)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from core.clock import FakeClock
from core.errors import DeviceError, DeviceTimeoutError, SafetyLimitError
from drivers.base import StimulatorABC
from drivers.envelope import DeviceEnvelope
from drivers.firmware import DeviceFirmware
from drivers.messages import DeviceState, FaultBits, NackCode, SetStim
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import running_emulator, wait_until
from drivers.virtual import VirtualStimulator

ENV = DeviceEnvelope(
    ramp_up_ua_per_s=2000,
    ramp_down_ua_per_s=5000,
    soft_start_ms=100,
    lease_max_ms=500,
    watchdog_ms=300,
    safe_stop_ms=200,
)


@dataclass
class Rig:
    drv: StimulatorABC
    wait: Callable[[Callable[[], bool], str], None]
    device_state: Callable[[], DeviceState]


@pytest.fixture(params=["virtual", "serial"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "virtual":
        clock = FakeClock(100.0)
        virt = VirtualStimulator(DeviceFirmware(now_s=clock()), clock=clock)

        def advance_until(pred: Callable[[], bool], what: str) -> None:
            for _ in range(500):  # 5 s of device time in 10 ms steps, renewing the lease
                if pred():
                    return
                clock.advance(0.01)
                if virt.commanded is not None:
                    virt.heartbeat(300)
            raise DeviceTimeoutError(f"Expected {what} within 5 s of device time")

        def state() -> DeviceState:
            virt.poll()
            return virt.firmware.state

        with virt:
            yield Rig(virt, advance_until, state)
        return
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=0.1) as drv:

        def wait_real(pred: Callable[[], bool], what: str) -> None:
            def renewed() -> bool:
                if drv.commanded is not None:
                    drv.heartbeat(300)
                return pred()

            wait_until(renewed, 5.0, what)

        yield Rig(drv, wait_real, lambda: emu.snapshot().state)


def _amp(rig: Rig) -> int:
    status = rig.drv.status()
    return -1 if status is None else status.amp_ua


def test_handshake_arm_ramp_stop(rig: Rig) -> None:
    caps = rig.drv.handshake()
    assert caps.fw_major == 1
    assert rig.drv.arm(ENV).envelope_hash == ENV.hash()
    assert rig.device_state() == DeviceState.ARMED_IDLE
    cmd = rig.drv.set_stimulation(
        amplitude_ua=1500.4, pulse_width_us=90.2, frequency_hz=130.04, lease_ms=300
    )
    assert cmd == SetStim(0, 1500, 90, 1300, 0, 300)  # integer units, rounded
    rig.wait(lambda: _amp(rig) == 1500, "the ramp to reach 1500 µA")
    assert rig.device_state() == DeviceState.STIMULATING
    rig.drv.stop()
    rig.wait(lambda: _amp(rig) == 0, "the ramp down to 0")
    rig.wait(lambda: rig.device_state() == DeviceState.ARMED_IDLE, "ARMED_IDLE after the stop")


def test_host_checks_refuse_without_sending(rig: Rig) -> None:
    rig.drv.handshake()
    with pytest.raises(SafetyLimitError, match=re.escape("Expected amp_max_ua in [0, 10000]")):
        rig.drv.arm(DeviceEnvelope(amp_max_ua=20_000))
    rig.drv.arm(ENV)
    with pytest.raises(SafetyLimitError, match=re.escape("Expected freq_dhz in [600, 1850]")):
        rig.drv.set_stimulation(
            amplitude_ua=1000, pulse_width_us=90, frequency_hz=200.0, lease_ms=300
        )
    assert rig.device_state() == DeviceState.ARMED_IDLE


def test_device_refusal_carries_its_code(rig: Rig) -> None:
    rig.drv.handshake()
    rig.drv.arm(ENV)
    with pytest.raises(DeviceError, match="NACK OUT_OF_RANGE") as info:
        rig.drv._set_stimulation_internal(SetStim(0, 9000, 90, 1300, 0, 300))
    assert info.value.error_code == NackCode.OUT_OF_RANGE


def test_estop_then_rearm(rig: Rig) -> None:
    rig.drv.handshake()
    rig.drv.arm(ENV)
    rig.drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=300)
    rig.wait(lambda: _amp(rig) > 0, "output on")
    rig.drv.estop()
    assert rig.device_state() == DeviceState.DISARMED

    def reported() -> bool:
        status = rig.drv.status()
        return status is not None and bool(status.fault_bits & FaultBits.ESTOP)

    rig.wait(reported, "a STATUS with the ESTOP latch")
    assert _amp(rig) == 0
    rig.drv.arm(ENV)
    assert rig.device_state() == DeviceState.ARMED_IDLE


def test_close_is_idempotent(rig: Rig) -> None:
    rig.drv.handshake()
    rig.drv.close()
    rig.drv.close()
    assert rig.drv.closed
    with pytest.raises(DeviceError, match="actual closed"):
        rig.drv.heartbeat(100)


def test_virtual_lease_expiry_is_exact_on_a_fake_clock() -> None:
    clock = FakeClock(100.0)
    with VirtualStimulator(DeviceFirmware(now_s=clock()), clock=clock) as drv:
        drv.handshake()
        drv.arm(DeviceEnvelope(lease_max_ms=500, watchdog_ms=500, soft_start_ms=1,
                         ramp_up_ua_per_s=2000, safe_stop_ms=100))  # fmt: skip
        drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=200)
        clock.advance(0.199)
        drv.poll()
        assert drv.firmware.state == DeviceState.STIMULATING
        clock.advance(0.002)
        drv.poll()
        assert drv.firmware.fault_bits == FaultBits.LEASE
        assert [f.new_bits for f in drv.faults] == [FaultBits.LEASE]
        clock.advance(0.101)
        drv.poll()
        assert drv.firmware.state == DeviceState.DISARMED
        assert drv.firmware.amp_ua == 0
        assert [type(m).__name__ for m in drv.sent] == ["Hello", "Arm", "SetStim"]


@pytest.mark.parametrize("field", ["freq_step_dhz", "pw_step_us", "amp_max_ua", "soft_start_ms"])
def test_a_zero_limit_is_refused_before_sending(rig: Rig, field: str) -> None:
    rig.drv.handshake()
    with pytest.raises(SafetyLimitError, match=rf"Expected {field} (≥ 1|in \[[1-9])"):
        rig.drv.arm(replace(ENV, **{field: 0}))
    assert rig.device_state() == DeviceState.CONFIGURED


def test_status_after_arm_is_from_after_the_arm(rig: Rig) -> None:
    """A fault latched before ARM is not what the host sees once ARM has cleared it."""
    rig.drv.handshake()
    rig.drv.arm(ENV)
    rig.drv.estop()
    rig.drv.arm(ENV)  # no wait in between: the STATUS read next must be a fresh one
    status = rig.drv.status()
    assert status is not None
    assert (status.state, status.fault_bits) == (DeviceState.ARMED_IDLE, 0)


def test_status_after_a_new_handshake_is_from_after_the_hello(rig: Rig) -> None:
    """HELLO while stimulating voids the setpoint; the host sees that at once, not a stale ON."""
    rig.drv.handshake()
    rig.drv.arm(ENV)
    rig.drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=300)
    rig.wait(lambda: _amp(rig) == 1000, "the ramp to reach 1000 µA")
    rig.drv.handshake()  # a new session while current flows
    status = rig.drv.status()
    assert status is not None
    assert status.state == DeviceState.STOPPING
    assert status.target_amp_ua == 0
    assert rig.drv.envelope is None
    rig.wait(lambda: rig.device_state() == DeviceState.CONFIGURED, "CONFIGURED once off")
    assert rig.device_state() == DeviceState.CONFIGURED
