"""The one clock convention, and the fake clock the tests drive.

Time is **monotonic seconds as a float, read by calling a zero-argument callable**
(:data:`TimeSource`). Every class that needs the time takes a ``clock`` argument of that type
whose default is :func:`time.monotonic`, and calls it; nothing of ours reads the wall clock for
deadlines, leases, timeouts or watchdogs. (On Linux ``time.monotonic`` and
``time.perf_counter`` read the same ``CLOCK_MONOTONIC``, at nanosecond resolution.)

* The control loop's clock (:mod:`controller.clock`) is the same callable with a
  ``sleep_until`` added, so it can be handed to anything that takes a :data:`TimeSource`.
* Session recordings stamp records with the same clock in integer nanoseconds
  (``time.monotonic_ns``), the recording format's unit.
* Tests pass a :class:`FakeClock`, which moves only when told to.
"""

from __future__ import annotations

from collections.abc import Callable

#: Monotonic time in seconds (``time.monotonic`` or a :class:`FakeClock`).
TimeSource = Callable[[], float]


class FakeClock:
    """A monotonic clock that moves only when told to: a fake shipped with the code.

    Call it (or :meth:`now`) for the time in seconds; :meth:`advance` and
    :meth:`sleep_until` move it forward, never back. It serves both conventions: a
    :data:`TimeSource` for backends and drivers, and the control loop's clock.

    Args:
        start_s: Initial time in s (any value: only differences mean anything).
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self.t_s = start_s

    def __call__(self) -> float:
        """Current time in s."""
        return self.t_s

    def now(self) -> float:
        """Current time in s."""
        return self.t_s

    def advance(self, dt_s: float) -> float:
        """Move time forward by ``dt_s`` (>= 0) and return the new time.

        Raises:
            ValueError: ``dt_s`` is negative or not a number (a monotonic clock never goes back).
        """
        if not dt_s >= 0.0:
            raise ValueError(f"Expected dt_s >= 0, actual {dt_s}")
        self.t_s += dt_s
        return self.t_s

    def sleep_until(self, t_s: float) -> None:
        """Jump to ``t_s`` if it lies ahead (the loop's sleep, without waiting)."""
        self.t_s = max(self.t_s, t_s)
