"""Emergency stop: SIGINT/SIGTERM and interpreter exit request a stop the loop acts on.

The handlers only set a flag (signal-safe); the loop checks it before every tick and stops
stimulation through the normal path. :meth:`EStop.at_exit` registers a last-resort callback
that stops the backend if the process exits without the loop having done so.
"""

from __future__ import annotations

import atexit
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog


class EStop:
    """A stop request flag wired to signals and ``atexit``."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}
        self._exit_callback: Callable[[], None] | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Request a stop (first reason wins)."""
        if self.reason is None:
            self.reason = reason

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.request(f"estop_{name.lower()}")
        structlog.get_logger("controller.estop").warning("estop_signal", signal=name)

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)

    def uninstall(self) -> None:
        """Restore the previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def at_exit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at interpreter exit unless :meth:`disarm_exit` ran first."""
        self._exit_callback = callback
        atexit.register(self._run_exit)

    def disarm_exit(self) -> None:
        """The loop stopped the backend itself; nothing left to do at exit."""
        self._exit_callback = None
        atexit.unregister(self._run_exit)

    def _run_exit(self) -> None:
        callback, self._exit_callback = self._exit_callback, None
        if callback is not None:
            structlog.get_logger("controller.estop").warning("estop_at_exit")
            callback()
