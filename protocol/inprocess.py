"""A protocol client whose backend lives in this process: the same session, no socket.

:class:`InProcessClient` hands each request object to
:meth:`protocol.backend.Backend.handle_request` and returns the reply object, so every rule of
the protocol (handshake order, one controlling client, ranges, the configured envelope, a safe
stop on every refusal) applies exactly as over ZeroMQ, without encoding, a socket or a server
thread. Any backend works: the simulator, the serial bridge, a replay, the loopback.

A call runs the backend in the caller's thread, so it cannot be abandoned at a deadline: the
``timeout_s`` arguments are accepted for the same call surface as
:class:`~protocol.client.BackendClient` and are not enforced. Use the ZeroMQ client when a
backend may hang.
"""

from __future__ import annotations

import time

from core.errors import BackendUnavailableError
from protocol.backend import Backend
from protocol.client import SessionClient
from protocol.messages import Reply, Request

#: Transport identity of the in-process client (one client per backend object).
IN_PROCESS_PEER = b"in-process"


class InProcessClient(SessionClient):
    """Talk to a backend object in this process.

    Args:
        backend: The backend (not served elsewhere at the same time).
        timeout_s: Default deadline of every call (kept for the shared call surface).
        client_name: Sent in ``hello``, shown in the backend's logs.
    """

    def __init__(
        self, backend: Backend, *, timeout_s: float = 1.0, client_name: str = "neuroloop-client"
    ) -> None:
        super().__init__(timeout_s=timeout_s, client_name=client_name)
        self.backend = backend
        self.address = f"in-process {type(backend).__name__}"
        self._closed = False

    def request(self, message: Request, timeout_s: float | None = None) -> Reply:
        """Answer ``message`` with the backend's reply object (an ``error`` reply is returned)."""
        if self._closed:
            raise BackendUnavailableError(
                f"Expected an open client, actual closed ({self.address})"
            )
        self._last_request_s = time.monotonic()
        self.backend.check_timeout()  # as the server does before each message
        return self.backend.handle_request(IN_PROCESS_PEER, message)

    def close(self) -> None:
        """Close the backend (a final safe stop) once; idempotent."""
        if not self._closed:
            self._closed = True
            self.backend.close()
