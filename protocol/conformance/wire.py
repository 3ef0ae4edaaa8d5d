"""A third-party client written from docs/protocol.md: raw msgpack maps on a DEALER socket.

The conformance check must not trust the reference codec to find what the reference codec
gets wrong, so requests are plain maps packed with ``msgpack`` (or raw bytes, where the point
is a malformed body) and replies are decoded with ``msgpack`` and inspected field by field.
Every receive has a timeout; a missing reply is a result, never a hang.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from core.errors import ConfigError
from protocol.security import ClientKeys

#: Map type of a decoded reply.
Wire = dict[str, Any]


def pack_map(message: Wire) -> bytes:
    """Encode ``message`` as the protocol does (§2.1): bin for bytes, float64 for floats."""
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


@dataclass
class Reply:
    """What came back for one request.

    Args:
        raw: The reply bytes, or ``None`` when nothing arrived before the deadline.
        body: The decoded map (``None`` if the bytes were not one msgpack map).
        problem: Why the reply is not a well-formed version-1 reply ("" when it is).
    """

    raw: bytes | None
    body: Wire | None = None
    problem: str = ""

    @property
    def type(self) -> str:
        """The reply's ``type`` ("" when unknown)."""
        value = self.body.get("type") if self.body is not None else None
        return value if isinstance(value, str) else ""

    @property
    def id(self) -> int | None:
        """The reply's ``id`` (``None`` when missing or not an integer)."""
        value = self.body.get("id") if self.body is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def code(self) -> str:
        """The error ``code`` of an ``error`` reply ("" otherwise)."""
        if self.type != "error" or self.body is None:
            return ""
        value = self.body.get("code")
        return value if isinstance(value, str) else ""

    def get(self, key: str, default: Any = None) -> Any:
        """A field of the reply (``default`` when absent or undecoded)."""
        return default if self.body is None else self.body.get(key, default)

    def describe(self) -> str:
        """A short human description: ``error bad_state (stopped=False): ...`` or the type."""
        if self.raw is None:
            return "no reply before the deadline"
        if self.body is None:
            return f"an undecodable reply ({self.problem})"
        if self.type == "error":
            message = str(self.body.get("message", ""))
            if len(message) > 160:
                message = message[:157] + "..."
            return f"error {self.code} (stopped={self.body.get('stopped')!r}): {message}"
        return f"{self.type or 'a reply without type'} (id {self.id})"


def decode_reply(raw: bytes) -> Reply:
    """Decode one reply body; a body that is not one version-1 map is described, not raised."""
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as err:  # any malformation of the backend's bytes is a finding
        return Reply(raw, None, f"not one msgpack object: {err}")
    if not isinstance(body, dict):
        return Reply(raw, None, f"a msgpack {type(body).__name__}, not a map")
    problems = []
    if body.get("v") != 1 or isinstance(body.get("v"), bool | float):
        problems.append(f"v is {body.get('v')!r}, not the integer 1")
    if not isinstance(body.get("type"), str):
        problems.append(f"type is {body.get('type')!r}, not a str")
    if not isinstance(body.get("id"), int) or isinstance(body.get("id"), bool):
        problems.append(f"id is {body.get('id')!r}, not an integer")
    return Reply(raw, body, "; ".join(problems))


@dataclass
class Peer:
    """One DEALER connection to the backend (one ROUTER identity, so one protocol peer).

    Args:
        address: ZeroMQ endpoint of the backend.
        timeout_s: Deadline of every receive (and send).
        curve: CURVE client keys, when the backend requires them.
    """

    address: str
    timeout_s: float
    curve: ClientKeys | None = None
    _context: zmq.Context[zmq.Socket[bytes]] = field(default_factory=zmq.Context, repr=False)
    _socket: zmq.Socket[bytes] | None = field(default=None, repr=False)
    session_id: str | None = None
    _next_id: int = 1

    def __post_init__(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.RCVHWM, 4)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout_s * 1000)))
        if self.curve is not None:
            self.curve.apply(sock)
        try:
            sock.connect(self.address)
        except zmq.ZMQError as err:
            sock.close(0)
            self._context.term()
            raise ConfigError(
                f"Expected a ZeroMQ address such as tcp://127.0.0.1:5555 or ipc:///tmp/x.sock, "
                f"actual {self.address!r}: {err}"
            ) from err
        self._socket = sock

    def fresh_id(self) -> int:
        """A request id not used before on this connection."""
        self._next_id += 1
        return self._next_id

    def send_frames(self, frames: list[bytes]) -> bool:
        """Send one ZeroMQ message of ``frames``; whether it could be sent before the deadline."""
        assert self._socket is not None
        try:
            self._socket.send_multipart(frames)
        except zmq.Again:
            return False
        return True

    def receive(self, timeout_s: float | None = None, accept: tuple[int, ...] = ()) -> Reply:
        """The next reply (with an id in ``accept``, if given) before the deadline."""
        assert self._socket is not None
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self._socket.poll(left_ms, zmq.POLLIN):
                return Reply(None, None, "no reply")
            frames = self._socket.recv_multipart()
            if len(frames) != 1:
                return Reply(b"".join(frames), None, f"{len(frames)} frames, not one")
            reply = decode_reply(frames[0])
            if not accept or reply.id in accept or reply.body is None:
                return reply
            # A reply to an earlier request that timed out (§7.1): dropped.

    def send_raw(self, body: bytes, request_id: int = 0, timeout_s: float | None = None) -> Reply:
        """Send one body and wait for the reply carrying ``request_id`` or 0."""
        if not self.send_frames([body]):
            return Reply(None, None, "could not send (no backend connected)")
        return self.receive(timeout_s, accept=(request_id, 0))

    def request(self, type_: str, timeout_s: float | None = None, **fields: Any) -> Reply:
        """Send a well-formed request ``{v: 1, type, id, **fields}`` and wait for its reply."""
        request_id = self.fresh_id()
        body = pack_map({"v": 1, "type": type_, "id": request_id, **fields})
        if not self.send_frames([body]):
            return Reply(None, None, "could not send (no backend connected)")
        return self.receive(timeout_s, accept=(request_id,))

    def close(self) -> None:
        """Close the socket and its context (idempotent)."""
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
            self._context.term()
