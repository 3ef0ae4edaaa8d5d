"""Switching off and on again with a new pulse shape while the device still ramps down.

An off setpoint makes a stimulator ramp its amplitude to 0 at ``amplitude_down_per_s`` with the
width and rate it had; the device checks a new setting's width and rate steps against what it
is delivering (docs/device-protocol.md §5). The governor used to let a policy that had just
switched off come back with any width, which the device refused as a slew breach (a spurious
fault). These tests pin the fix: the governor, every backend's monitor and the device agree.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from controller.envelope.governor import SafetyGovernor
from core.clock import FakeClock
from core.errors import DeviceError
from drivers.bridge import device_envelope
from drivers.firmware import DeviceFirmware
from drivers.virtual import VirtualStimulator
from protocol.envelope.config import load_envelope
from protocol.envelope.monitor import EnvelopeMonitor
from protocol.envelope.rampdown import ramp_down_s, shape_in_force
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.slew import apply_slew

DEV = load_envelope("device")  # mA; width step 10 µs, ramp down 1 mA/s
PERIOD_S = 0.1
ON_NARROW = Setpoint(amplitude=0.5, frequency_hz=130.0, pulse_width_us=60.0)
ON_WIDE = Setpoint(amplitude=0.5, frequency_hz=130.0, pulse_width_us=120.0)
OFF_WIDE = replace(ON_WIDE, amplitude=0.0)


def test_shape_in_force_is_the_last_on_setting_until_its_ramp_down_ends() -> None:
    last_on = Setpoint(amplitude=0.3, frequency_hz=130.0, pulse_width_us=60.0)
    assert ramp_down_s(last_on, DEV) == pytest.approx(0.3)  # 0.3 mA at 1 mA/s
    off = replace(last_on, amplitude=0.0, pulse_width_us=120.0)
    assert shape_in_force(last_on, None, 0.0, DEV) == last_on  # on: itself
    assert shape_in_force(off, last_on, 0.2, DEV) == last_on
    assert shape_in_force(off, last_on, 0.3, DEV) is None
    assert shape_in_force(off, last_on, 0.3, DEV, margin_s=PERIOD_S) == last_on
    assert shape_in_force(off, None, 0.0, DEV) is None  # at rest since the arm


def test_slew_steps_width_from_the_ramping_down_setting() -> None:
    last_on = replace(ON_NARROW, amplitude=0.1)
    sp, found = apply_slew(ON_WIDE, OFF_WIDE, DEV, PERIOD_S, last_on=last_on, off_for_s=PERIOD_S)
    assert sp.pulse_width_us == 70.0  # one 10 µs step from the 60 µs still being delivered
    assert "pulse_width_step" in {f.reason for f in found}
    # Without a recent on setting (or once its ramp and a period have passed) any shape starts.
    sp, _ = apply_slew(ON_WIDE, OFF_WIDE, DEV, PERIOD_S, last_on=last_on, off_for_s=0.25)
    assert sp.pulse_width_us == 120.0
    sp, _ = apply_slew(ON_WIDE, OFF_WIDE, DEV, PERIOD_S)
    assert sp.pulse_width_us == 120.0


def test_monitor_refuses_a_width_jump_while_the_output_ramps_down() -> None:
    fast = replace(DEV, soft_start_s=0.0, amplitude_up_per_s=100.0)
    mon = EnvelopeMonitor(fast)
    mon.accept(ON_NARROW, 1.0)
    assert not mon.breaches(OFF_WIDE)  # straight to 0: the device ramps 0.5 mA over 0.5 s
    mon.accept(OFF_WIDE, PERIOD_S)
    found = mon.breaches(replace(ON_WIDE, amplitude=0.05))
    assert [b.rule for b in found] == ["slew"], found
    assert "while the output ramps down" in str(found[0])
    assert "60 → 120" in str(found[0])
    for _ in range(4):  # 0.5 s off in all: the ramp has run out
        mon.accept(OFF_WIDE, PERIOD_S)
    assert not mon.breaches(replace(ON_WIDE, amplitude=0.05))


def _virtual_device() -> tuple[VirtualStimulator, FakeClock]:
    clock = FakeClock(100.0)
    virt = VirtualStimulator(DeviceFirmware(now_s=clock()), clock=clock)
    virt.handshake()
    virt.arm(device_envelope(DEV, PERIOD_S * 1000.0))
    return virt, clock


@pytest.mark.parametrize("off_ticks", [1, 5, 6, 7, 9])
def test_governor_switching_off_and_on_with_a_new_width_is_accepted_by_the_device(
    off_ticks: int,
) -> None:
    """On at 60 µs, off, then on at 120 µs: every setpoint the governor sends is accepted.

    The device's clock runs 5 % slow against the controller's (a crystal tolerance, or a
    tick that comes a little early), so its ramp to 0 has a few µA left when the next
    command arrives: the case the old governor got refused in.
    """
    virt, clock = _virtual_device()
    gov = SafetyGovernor(DEV, PERIOD_S)
    gov.arm(0.0)
    plan = [ON_NARROW] * 40 + [OFF_WIDE] * off_ticks + [ON_WIDE] * 20
    now = 0.0
    widths = []
    with virt:
        for request in plan:
            decision = gov.command(request, now)
            assert decision.fault is None, decision
            sp = decision.setpoint
            # Any NACK (a slew_limit refusal above all) raises DeviceError here.
            virt.set_stimulation(
                amplitude_ua=sp.amplitude * 1000.0,
                pulse_width_us=sp.pulse_width_us,
                frequency_hz=sp.frequency_hz,
                lease_ms=int(DEV.lease_periods * PERIOD_S * 1000.0),
            )
            widths.append(sp.pulse_width_us)
            for _ in range(10):  # the device runs its ramps in 9.5 ms steps
                clock.advance(0.95 * PERIOD_S / 10)
                virt.poll()
            now += PERIOD_S
        assert virt.firmware.fault_bits == 0
    assert widths[-1] == 120.0  # the new width was reached, one step at a time if needed
    steps = [b - a for a, b in itertools.pairwise(widths)]
    assert max(steps) <= DEV.pulse_width_step_us or off_ticks >= 7


def test_the_device_refuses_the_jump_the_old_governor_made() -> None:
    """The firmware's own check, which the fix keeps the governor inside (can fail if not)."""
    virt, clock = _virtual_device()
    with virt:
        for amp in (0.1, 0.2, 0.3):
            virt.set_stimulation(
                amplitude_ua=amp * 1000, pulse_width_us=60, frequency_hz=130.0, lease_ms=250
            )
            for _ in range(10):
                clock.advance(0.01)
                virt.poll()
        virt.set_stimulation(amplitude_ua=0, pulse_width_us=120, frequency_hz=130.0, lease_ms=250)
        clock.advance(0.05)  # 50 ms into a 300 ms ramp-down
        virt.poll()
        with pytest.raises(DeviceError, match="SLEW_LIMIT"):
            virt.set_stimulation(
                amplitude_ua=50, pulse_width_us=120, frequency_hz=130.0, lease_ms=250
            )


@pytest.mark.parametrize("start", [0.5, 0.5 + 6e-10, 2.0000000006, 0.30000000000000004])
def test_a_ramp_down_to_off_ends_at_exactly_zero(start: float) -> None:
    """Steps that leave a rounding above 0 land on 0 (a device would read 6e-10 mA as off
    while the governor counted it as on); every step passes the backends' check."""
    env = load_envelope("emulator")  # ramp down 5 mA/s: 0.5 mA per 100 ms
    gov = SafetyGovernor(env, PERIOD_S)
    gov.arm(0.0)
    on = Setpoint(amplitude=start, frequency_hz=100.0, pulse_width_us=200.0)
    t = 0.0
    for _ in range(40):  # soft start and ramp up to ``start``
        assert gov.command(on, t).fault is None
        t += PERIOD_S
    off = Setpoint(amplitude=0.0, frequency_hz=100.0, pulse_width_us=200.0)
    amps = []
    for _ in range(10):
        decision = gov.command(off, t)
        assert decision.fault is None
        amps.append(decision.setpoint.amplitude)
        t += PERIOD_S
    assert amps[-1] == 0.0
    assert all(a == 0.0 or a >= 1e-6 for a in amps), amps
