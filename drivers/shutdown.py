"""Prompt STOP on SIGINT/SIGTERM while a lockstep step is waiting out its duration.

A ``window``-mode step (``drivers.bridge.SerialBackend``) keeps the lease alive for the whole
step, up to 2 s, sleeping between renewals. A Python signal handler runs in the main thread but
cannot end that sleep, so without help the service would send STOP only when the step ends.
:class:`SignalWakeup` registers a socket with :func:`signal.set_wakeup_fd`: the interpreter's C
handler writes one byte per signal into it the moment the signal arrives, whatever Python
handler is installed. :class:`PreemptingSleep` is the bridge's sleep: it waits on that socket
instead of sleeping blindly, and on SIGINT or SIGTERM it sends STOP to the device at once and
raises, which cuts the step short (``docs/device-protocol.md`` §12).
"""

from __future__ import annotations

import select
import signal
import socket
from types import TracebackType

import structlog

from core.errors import DeviceError
from drivers.base import StimulatorABC
from drivers.messages import StopReason

log = structlog.get_logger()

#: Signals that mean "shut down" for a service.
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalWakeup:
    """Learn of SIGINT/SIGTERM through :func:`signal.set_wakeup_fd` (main thread only).

    The wakeup descriptor only receives signals that have a Python handler installed (the
    service's own handler for SIGINT/SIGTERM); the default action of an unhandled one still
    ends the process.
    """

    def __init__(self) -> None:
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._tx.setblocking(False)
        self._previous_fd: int | None = None
        self.received: signal.Signals | None = None

    def install(self) -> SignalWakeup:
        """Route signal bytes to this object (call from the main thread)."""
        if self._previous_fd is None:
            self._previous_fd = signal.set_wakeup_fd(self._tx.fileno(), warn_on_full_buffer=False)
        return self

    def close(self) -> None:
        """Restore the previous wakeup descriptor and release the sockets; idempotent."""
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        self._rx.close()
        self._tx.close()

    def __enter__(self) -> SignalWakeup:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def wait(self, timeout_s: float) -> signal.Signals | None:
        """Wait up to ``timeout_s`` for a shutdown signal.

        Returns:
            The shutdown signal received (now or earlier), or ``None`` if none came in time.
        """
        if self.received is None and self._rx.fileno() != -1:
            ready, _, _ = select.select([self._rx], [], [], max(0.0, timeout_s))
            if ready:
                self._drain()
        return self.received

    def _drain(self) -> None:
        try:
            data = self._rx.recv(512)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum in SHUTDOWN_SIGNALS and self.received is None:
                self.received = signal.Signals(signum)


class PreemptingSleep:
    """A sleep for :class:`~drivers.bridge.SerialBackend` that a shutdown signal cuts short.

    Args:
        wakeup: The installed signal wakeup.
        driver: The stimulator to stop when a shutdown signal arrives.
    """

    def __init__(self, wakeup: SignalWakeup, driver: StimulatorABC) -> None:
        self._wakeup = wakeup
        self._driver = driver
        self._stopped = False

    def __call__(self, seconds: float) -> None:
        """Sleep ``seconds`` unless SIGINT/SIGTERM arrives first.

        Raises:
            DeviceError: A shutdown signal arrived (before or during the sleep); STOP has been
                sent to the device, so the caller's step ends here.
        """
        sig = self._wakeup.wait(seconds)
        if sig is None:
            return
        if not self._stopped:
            self._stopped = True
            log.warning("driver_shutdown_stop", signal=sig.name, note="step cut short")
            try:
                self._driver.stop(StopReason.HOST_SHUTDOWN)
            except DeviceError as err:
                log.error("driver_shutdown_stop_failed", error=str(err))
        raise DeviceError(
            f"{sig.name} received: the service is shutting down; STOP was sent to the device "
            "and the step was cut short"
        )
