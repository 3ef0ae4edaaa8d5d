"""A connection to a protocol backend over ZeroMQ (:class:`protocol.client.BackendClient`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.backends.protocol import ProtocolConnection
from protocol.client import BackendClient


class ZmqConnection(ProtocolConnection):
    """A backend reached over ZeroMQ.

    Args:
        address: Endpoint (``ipc://…`` or ``tcp://127.0.0.1:…``).
        timeout_s: Deadline of the handshake calls (hello, configure, reset).
        options: Backend-specific ``configure`` options (e.g. network size for the simulator).
        client: An existing client (tests); otherwise one is made for ``address``.
        client_name: Name of a client made here (sent in ``hello``).
    """

    def __init__(
        self,
        address: str,
        timeout_s: float = 5.0,
        options: Mapping[str, Any] | None = None,
        client: BackendClient | None = None,
        client_name: str = "neuroloop-controller",
    ) -> None:
        if client is None:
            client = BackendClient(address, timeout_s=timeout_s, client_name=client_name)
        super().__init__(client, timeout_s=timeout_s, options=options)
        self.address = address
