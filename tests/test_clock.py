"""One clock convention (monotonic seconds from a callable) and the one fake the tests use."""

from __future__ import annotations

import math
import time

import pytest

from controller.clock import Clock, MonotonicClock
from core.clock import FakeClock
from drivers.virtual import VirtualStimulator
from protocol.loopback import LoopbackBackend


def test_the_fake_moves_only_forward_and_only_when_told() -> None:
    clock = FakeClock(100.0)
    assert clock() == clock.now() == 100.0
    assert clock.advance(0.5) == 100.5
    clock.sleep_until(99.0)  # in the past: no change
    assert clock() == 100.5
    clock.sleep_until(101.0)
    assert clock() == 101.0
    for bad in (-0.001, math.nan):
        with pytest.raises(ValueError, match="Expected dt_s >= 0"):
            clock.advance(bad)
    assert clock() == 101.0


def test_the_fake_is_a_loop_clock() -> None:
    clock: Clock = FakeClock()  # what the control loop takes (checked by mypy)
    assert clock.now() == 0.0


def test_the_loop_clock_reads_time_monotonic() -> None:
    clock = MonotonicClock()
    before = time.monotonic()
    read = (clock(), clock.now())
    after = time.monotonic()
    assert before <= read[0] <= read[1] <= after


def test_one_fake_drives_a_backend_and_a_driver() -> None:
    clock = FakeClock(5.0)
    backend = LoopbackBackend(session_timeout_s=1.0, clock=clock)
    assert backend.now_s() == 5.0
    clock.advance(2.0)
    assert backend.now_s() == 7.0
    driver = VirtualStimulator(clock=clock)
    assert driver.handshake().fw_major >= 1  # the device runs on the fake's time
