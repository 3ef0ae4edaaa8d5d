"""drivers.shutdown: a shutdown signal ends the bridge's sleep at once and stops the device."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from core.clock import FakeClock
from core.errors import DeviceError
from drivers.envelope import DeviceEnvelope
from drivers.firmware import DeviceFirmware
from drivers.messages import DeviceState, Stop, StopReason
from drivers.shutdown import PreemptingSleep, SignalWakeup
from drivers.virtual import VirtualStimulator

ENV = DeviceEnvelope(ramp_up_ua_per_s=2000, soft_start_ms=100, lease_max_ms=500, watchdog_ms=500)


@pytest.fixture
def handled() -> Iterator[list[int]]:
    """SIGTERM handled by a Python handler, as the service installs one (restored after)."""
    seen: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stimulating() -> VirtualStimulator:
    clock = FakeClock(10.0)
    drv = VirtualStimulator(DeviceFirmware(now_s=clock()), clock=clock)
    drv.handshake()
    drv.arm(ENV)
    drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=500)
    clock.advance(0.2)
    return drv


def test_sigterm_during_the_sleep_stops_the_device_and_cuts_it_short(handled: list[int]) -> None:
    drv = _stimulating()
    with SignalWakeup() as wakeup:
        sleep = PreemptingSleep(wakeup, drv)
        sleep(0.001)  # no signal: an ordinary short sleep
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        try:
            with pytest.raises(DeviceError, match="SIGTERM received"):
                sleep(60.0)  # without the wakeup this would sleep a minute and not raise
        finally:
            timer.cancel()
        assert drv.sent[-1] == Stop(StopReason.HOST_SHUTDOWN)
        assert drv.firmware.state == DeviceState.STOPPING
        assert drv.firmware.target_amp_ua == 0
        with pytest.raises(DeviceError, match="SIGTERM received"):
            sleep(60.0)  # every later wait ends at once too ...
        assert drv.sent.count(Stop(StopReason.HOST_SHUTDOWN)) == 1  # ... without a second STOP
    assert handled == [signal.SIGTERM]  # the service's own handler still ran
    drv.close()


def test_sigterm_before_the_sleep_is_not_lost(handled: list[int]) -> None:
    drv = _stimulating()
    with SignalWakeup() as wakeup:
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while a command was on the wire
        with pytest.raises(DeviceError, match="SIGTERM received"):
            PreemptingSleep(wakeup, drv)(60.0)
        assert drv.sent[-1] == Stop(StopReason.HOST_SHUTDOWN)
    drv.close()


def test_the_previous_wakeup_descriptor_is_restored() -> None:
    with SignalWakeup():
        pass
    assert signal.set_wakeup_fd(-1) == -1
