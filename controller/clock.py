"""Clocks for the control loop: the real monotonic clock and the fake one for tests.

The loop only ever asks a clock for ``now()`` (seconds, monotonic) and to ``sleep_until`` an
absolute instant, so a test can drive every deadline and watchdog path without waiting. Both
follow the project's one clock convention (:mod:`core.clock`): ``now()`` reads
``time.monotonic``, and calling the clock returns the same, so a loop clock can be handed to
anything that takes a :data:`core.clock.TimeSource`. The fake is :class:`core.clock.FakeClock`.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from core.errors import ConfigError


class Clock(Protocol):
    """A monotonic time source in seconds."""

    def now(self) -> float:
        """Current time in s."""
        ...

    def sleep_until(self, t_s: float) -> None:
        """Return at (or just after) ``t_s``; return at once if it has passed."""
        ...


class MonotonicClock:
    """``time.monotonic`` with a sleep that spins the last ``spin_s`` for accuracy.

    Args:
        spin_s: How long before the deadline to stop sleeping and poll instead (s).
    """

    def __init__(self, spin_s: float = 0.0003) -> None:
        self.spin_s = spin_s

    def now(self) -> float:
        """Current monotonic time in s."""
        return time.monotonic()

    def __call__(self) -> float:
        """Current monotonic time in s (a :data:`core.clock.TimeSource`)."""
        return time.monotonic()

    def sleep_until(self, t_s: float) -> None:
        """Sleep until ``t_s``."""
        remaining = t_s - time.monotonic()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.monotonic() < t_s:
            pass


def request_realtime_priority(priority: int) -> None:
    """Run this process under ``SCHED_FIFO`` at ``priority`` (Linux; hil-safety-protocol §4.4).

    Only the waiting side of the loop benefits: the controller sleeps or polls most of each
    period, so a real-time class makes it wake on time on a busy host. Child processes (a local
    simulator server) are reset to the normal class (``SCHED_RESET_ON_FORK``). Do not combine
    with ``--in-process`` (the simulation would then run at real-time priority).

    Args:
        priority: 1 (lowest) to 99.

    Raises:
        ConfigError: Out of range, unsupported platform, or not permitted (needs CAP_SYS_NICE).
    """
    if not 1 <= priority <= 99:
        raise ConfigError(f"Expected a SCHED_FIFO priority in [1, 99], actual {priority}")
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None:
        raise ConfigError("Expected a platform with SCHED_FIFO (Linux), actual none")
    # Children (a local simulator server) must not inherit the real-time class.
    policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        setter(0, policy, os.sched_param(priority))
    except PermissionError as err:
        raise ConfigError(
            f"Expected permission to use SCHED_FIFO priority {priority} (CAP_SYS_NICE or an "
            f"rtprio limit), actual: {err}"
        ) from err
