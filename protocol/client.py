"""The controller's side of the protocol: a DEALER client with a deadline on every call.

Every call sends one request with a fresh request id and waits at most its timeout for the
reply with that id; replies to earlier, timed-out requests are dropped. Nothing blocks
forever: sending waits for a connected backend only until the deadline, and receiving polls
with the time left. Error replies become exceptions of :mod:`core.errors`:

============================================  =========================================
error code                                    exception
============================================  =========================================
``busy``                                      :class:`BackendBusyError`
``limit_exceeded``, ``envelope_rejected``,    :class:`SafetyLimitError`
``invalid_stimulus``
``backend_fault``                             :class:`SafetyFaultError`
``bad_config``                                :class:`ConfigError`
anything else                                 :class:`ProtocolError` (with ``.code``)
============================================  =========================================

The last error reply (code, message, whether stimulation stopped) is kept in
:attr:`BackendClient.last_error`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Self, TypeVar

import structlog
import zmq

from core.errors import (
    BackendBusyError,
    BackendUnavailableError,
    ConfigError,
    NeuroLoopError,
    ProtocolError,
    SafetyFaultError,
    SafetyLimitError,
    TransportTimeoutError,
)
from protocol.codec import pack, unpack_reply
from protocol.messages import (
    Bye,
    Configure,
    Configured,
    ErrorReply,
    GetStatus,
    Heartbeat,
    Hello,
    Observation,
    Reply,
    Request,
    Reset,
    Status,
    Step,
    Stop,
    Welcome,
)
from protocol.recording.writer import RecordingWriter
from protocol.schema import ConfigValue, WireEnvelope
from protocol.security import ClientKeys
from protocol.server import CONTROL_HWM

_R = TypeVar("_R", Welcome, Configured, Observation, Status)

_SAFETY_CODES = ("limit_exceeded", "envelope_rejected", "invalid_stimulus")


def error_to_exception(reply: ErrorReply) -> NeuroLoopError:
    """Map an ``error`` reply to the exception a caller should see."""
    text = f"[{reply.code}] {reply.message}"
    if reply.stopped:
        text += " (the backend stopped stimulation)"
    if reply.code == "busy":
        return BackendBusyError(text)
    if reply.code in _SAFETY_CODES:
        return SafetyLimitError(text)
    if reply.code == "backend_fault":
        return SafetyFaultError(text)
    if reply.code == "bad_config":
        return ConfigError(text)
    return ProtocolError(text, code=reply.code)


class SessionClient:
    """The session calls of the protocol over any transport (:meth:`request`).

    :class:`BackendClient` carries requests over ZeroMQ;
    :class:`protocol.inprocess.InProcessClient` hands them to a backend object in this
    process. Everything above the transport (the calls, error replies as exceptions, the
    session's welcome) is this class, written once.

    Args:
        timeout_s: Default deadline of every call (seconds).
        client_name: Sent in ``hello``, shown in the backend's logs.
    """

    #: Where requests go, for messages.
    address: str

    def __init__(self, *, timeout_s: float = 1.0, client_name: str = "neuroloop-client") -> None:
        if not 0.0 < timeout_s <= 3600.0:
            raise ConfigError(f"Expected timeout_s in (0, 3600], actual {timeout_s!r}")
        self.timeout_s = timeout_s
        self.client_name = client_name
        self.welcome: Welcome | None = None
        self.configured: Configured | None = None
        self.last_error: ErrorReply | None = None
        self._last_request_s = 0.0

    def request(self, message: Request, timeout_s: float | None = None) -> Reply:
        """Send ``message`` and return its reply (an ``error`` reply is returned, not raised)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the transport (no goodbye is sent; call :meth:`bye` first)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ session calls

    @property
    def session_id(self) -> str:
        """The session id from ``welcome``.

        Raises:
            ProtocolError: (``no_session``) before :meth:`hello`.
        """
        if self.welcome is None:
            raise ProtocolError(
                "Expected hello() before this call, actual no session", "no_session"
            )
        return self.welcome.session_id

    def hello(self, timeout_s: float | None = None) -> Welcome:
        """Open a session; afterwards :attr:`welcome` holds the capabilities."""
        self.welcome = self._call(Hello(self.client_name), Welcome, timeout_s)
        return self.welcome

    def configure(
        self,
        envelope: WireEnvelope,
        *,
        control_period_ms: float | None = None,
        options: Mapping[str, ConfigValue] | None = None,
        timeout_s: float | None = None,
    ) -> Configured:
        """Send the envelope, control period (default: the backend's) and backend options."""
        period = control_period_ms
        if period is None:
            period = self._welcome().capabilities.control_period_ms
        request = Configure(self.session_id, period, envelope, dict(options or {}))
        self.configured = self._call(request, Configured, timeout_s)
        return self.configured

    def reset(self, seed: int | None = None, timeout_s: float | None = None) -> Status:
        """Start a run from the initial state (stimulation off)."""
        return self._call(Reset(self.session_id, seed), Status, timeout_s)

    def step(
        self,
        stimulus: Mapping[str, float] | None,
        duration_ms: float | None = None,
        *,
        want_spikes: bool = False,
        timeout_s: float | None = None,
    ) -> Observation:
        """Apply ``stimulus`` (``None`` = off) for ``duration_ms`` (default: control period)."""
        duration = duration_ms
        if duration is None:
            duration = (
                self.configured.control_period_ms
                if self.configured is not None
                else self._welcome().capabilities.control_period_ms
            )
        # Step copies (and checks) a dict itself; only another Mapping needs converting.
        stim = stimulus if stimulus is None or type(stimulus) is dict else dict(stimulus)
        request = Step(self.session_id, stim, duration, want_spikes)
        return self._call(request, Observation, timeout_s)

    def status(self, timeout_s: float | None = None) -> Status:
        """Backend status; works without a session too (read-only monitor)."""
        session = self.welcome.session_id if self.welcome is not None else None
        return self._call(GetStatus(session), Status, timeout_s)

    def heartbeat(self, timeout_s: float | None = None) -> Status:
        """Keep the session alive."""
        return self._call(Heartbeat(self.session_id), Status, timeout_s)

    def heartbeat_if_due(self) -> Status | None:
        """Send a heartbeat if no request went out for a heartbeat interval."""
        welcome = self._welcome()
        idle_ms = (time.monotonic() - self._last_request_s) * 1000.0
        return self.heartbeat() if idle_ms >= welcome.heartbeat_interval_ms else None

    def stop(self, reason: str = "client request", timeout_s: float | None = None) -> Status:
        """Stop stimulation now; the session stays open."""
        return self._call(Stop(self.session_id, reason[:200]), Status, timeout_s)

    def bye(self, timeout_s: float | None = None) -> Status:
        """Stop stimulation and end the session."""
        status = self._call(Bye(self.session_id), Status, timeout_s)
        self.welcome = None
        self.configured = None
        return status

    def _call(self, message: Request, expected: type[_R], timeout_s: float | None) -> _R:
        reply = self.request(message, timeout_s)
        if isinstance(reply, ErrorReply):
            self.last_error = reply
            raise error_to_exception(reply)
        if not isinstance(reply, expected):
            raise ProtocolError(
                f"Expected a {expected.TYPE} reply to {message.TYPE}, actual {reply.TYPE}"
            )
        return reply

    def _welcome(self) -> Welcome:
        if self.welcome is None:
            raise ProtocolError(
                "Expected hello() before this call, actual no session", "no_session"
            )
        return self.welcome

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackendClient(SessionClient):
    """Talk to one backend.

    Args:
        address: Backend endpoint (``ipc://...`` or ``tcp://host:port``).
        timeout_s: Default deadline of every call (seconds).
        curve: CURVE client keys, required when the backend uses CURVE.
        recorder: If given, every request and reply is recorded (kind ``message``).
        client_name: Sent in ``hello``, shown in the backend's logs.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 1.0,
        curve: ClientKeys | None = None,
        recorder: RecordingWriter | None = None,
        client_name: str = "neuroloop-client",
    ) -> None:
        super().__init__(timeout_s=timeout_s, client_name=client_name)
        self.address = address
        self.recorder = recorder
        self._next_id = 1
        self._rcvtimeo_ms = -1
        self._log = structlog.get_logger().bind(component="client", address=address)
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._socket: zmq.Socket[bytes] | None = self._context.socket(zmq.DEALER)
        sock = self._socket
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, CONTROL_HWM)
        sock.setsockopt(zmq.RCVHWM, CONTROL_HWM)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if curve is not None:
            curve.apply(sock)
        try:
            sock.connect(address)
        except zmq.ZMQError as err:
            self.close()
            raise ConfigError(
                f"Expected a valid backend address, actual {address!r}: {err}"
            ) from err

    def request(self, message: Request, timeout_s: float | None = None) -> Reply:
        """Send ``message`` and return its reply (an ``error`` reply is returned, not raised).

        Raises:
            BackendUnavailableError: if no backend accepted the connection before the deadline
                (not running, wrong address, or CURVE refused this client's key).
            TransportTimeoutError: if the reply did not arrive before the deadline.
            ProtocolError: if the reply is malformed.
        """
        sock = self._socket
        if sock is None:
            raise BackendUnavailableError(
                f"Expected an open client, actual closed ({self.address})"
            )
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        request_id = self._next_id
        self._next_id += 1
        data = pack(request_id, message)
        try:
            sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            # Not connected yet (IMMEDIATE) or the queue is full: wait, within the deadline.
            if not sock.poll(int(timeout * 1000), zmq.POLLOUT):
                raise BackendUnavailableError(
                    f"Expected a backend connected at {self.address} within {timeout:.3f} s, "
                    "actual none (not running, wrong address, or CURVE refused this client's key)"
                ) from None
            sock.send(data, zmq.NOBLOCK)
        now = self._last_request_s = time.monotonic()
        if self.recorder is not None:
            self.recorder.record_message("tx", request_id, message)
            now = time.monotonic()
        while True:
            remaining_ms = int(max(0.0, deadline - now) * 1000.0)
            if remaining_ms != self._rcvtimeo_ms:
                sock.setsockopt(zmq.RCVTIMEO, remaining_ms)
                self._rcvtimeo_ms = remaining_ms
            try:
                raw = sock.recv()  # waits at most RCVTIMEO: the time left before the deadline
            except zmq.Again:
                raise TransportTimeoutError(
                    f"Expected a reply to {message.TYPE} #{request_id} from {self.address} "
                    f"within {timeout:.3f} s, actual none"
                ) from None
            reply_id, reply = unpack_reply(raw)
            if reply_id != request_id:
                self._log.debug("stale_reply_dropped", reply_id=reply_id, expected=request_id)
                now = time.monotonic()
                continue
            if self.recorder is not None:
                self.recorder.record_message("rx", reply_id, reply)
            return reply

    def close(self) -> None:
        """Close the socket (no goodbye is sent; call :meth:`bye` first to end the session)."""
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
            self._context.term()
