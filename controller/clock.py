"""Clocks for the control loop: the real monotonic clock and a manual one for tests.

The loop only ever asks a clock for ``now()`` (seconds, monotonic) and to ``sleep_until`` an
absolute instant, so a test can drive every deadline and watchdog path without waiting.
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
    """``time.perf_counter`` with a sleep that spins the last ``spin_s`` for accuracy.

    Args:
        spin_s: How long before the deadline to stop sleeping and poll instead (s).
    """

    def __init__(self, spin_s: float = 0.0003) -> None:
        self.spin_s = spin_s

    def now(self) -> float:
        """Current monotonic time in s."""
        return time.perf_counter()

    def sleep_until(self, t_s: float) -> None:
        """Sleep until ``t_s``."""
        remaining = t_s - time.perf_counter()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.perf_counter() < t_s:
            pass


class ManualClock:
    """A clock that only moves when told to (tests and scripted backends).

    Args:
        start_s: Initial time.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self.t_s = start_s

    def now(self) -> float:
        """Current time in s."""
        return self.t_s

    def advance(self, dt_s: float) -> None:
        """Move time forward by ``dt_s`` (must be >= 0)."""
        if dt_s < 0.0:
            raise ValueError(f"Expected dt_s >= 0, actual {dt_s}")
        self.t_s += dt_s

    def sleep_until(self, t_s: float) -> None:
        """Jump to ``t_s`` if it lies ahead."""
        self.t_s = max(self.t_s, t_s)


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
