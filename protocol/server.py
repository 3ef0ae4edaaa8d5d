"""The ROUTER socket loop that serves one :class:`~protocol.backend.Backend`.

One thread owns the socket: it polls with a short timeout, answers every request through
:meth:`Backend.handle`, and between requests checks the session timeout so a silent client's
stimulation stops within ``session_timeout_s + poll_interval_s`` (up to ``session_timeout_s``
more while other connections keep the server busy: their time is reported to
:meth:`Backend.served` and does not count as the session's silence). Incoming frames larger
than :data:`MAX_FRAME_BYTES` make libzmq drop the connection before they are buffered.
Sockets use small high-water marks and ``LINGER 0``; replies to a peer that has gone are
dropped and logged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from core.errors import ConfigError
from protocol.backend import Backend
from protocol.security import (
    AllowList,
    ServerKeys,
    apply_server_keys,
    is_loopback,
    start_authenticator,
)
from protocol.wire_limits import MAX_MESSAGE_BYTES

#: Send/receive high-water mark of control sockets (messages).
CONTROL_HWM = 4
#: Longest wait to hand a reply to a slow peer before it is dropped (ms).
REPLY_SEND_TIMEOUT_MS = 200
#: Largest incoming frame (bytes): a larger one closes the sender's connection (ZMQ_MAXMSGSIZE).
#: Above the 64 MiB body limit, so a body just over it still gets its ``bad_message`` reply.
MAX_FRAME_BYTES = 2 * MAX_MESSAGE_BYTES
#: While dropping a multipart message, the session timeout is checked every this many frames.
_DRAIN_CHECK_FRAMES = 1024


class BackendServer:
    """Serve ``backend`` on ``bind``.

    Args:
        backend: The backend answering requests.
        bind: ZeroMQ endpoint. ``tcp://127.0.0.1:*`` picks a free port (see :attr:`endpoint`).
        curve_keys_dir: CURVE key directory (see :mod:`protocol.security`); required for any
            non-loopback address.
        poll_interval_s: Longest wait between session-timeout checks.

    Raises:
        ConfigError: for a non-loopback address without CURVE keys, or unreadable keys.
    """

    def __init__(
        self,
        backend: Backend,
        bind: str,
        *,
        curve_keys_dir: Path | None = None,
        poll_interval_s: float = 0.02,
    ) -> None:
        loopback = is_loopback(bind)
        if not loopback and curve_keys_dir is None:
            raise ConfigError(
                f"Refusing to bind {bind} without CURVE keys: a non-loopback address exposes "
                "the stimulator beyond this host. Bind ipc:// or tcp://127.0.0.1, or pass "
                "--curve-keys DIR (made with neuroloop-keys)."
            )
        self._keys = ServerKeys.load(curve_keys_dir) if curve_keys_dir is not None else None
        self.backend = backend
        self.bind_address = bind
        self.poll_interval_s = poll_interval_s
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._allow = AllowList(self._keys) if self._keys is not None else None
        self._socket: zmq.Socket[bytes] | None = None
        self._endpoint = ""
        self._rcvtimeo_ms = -1
        self._closed = False
        self._log = structlog.get_logger().bind(component="server", kind=backend.kind)

    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port when bound to ``:*``), after :meth:`start`."""
        return self._endpoint

    @property
    def curve(self) -> bool:
        """Whether the server requires CURVE."""
        return self._keys is not None

    def start(self) -> str:
        """Bind the socket and return the bound endpoint."""
        if self._socket is not None:
            return self._endpoint
        if self._allow is not None:
            self._auth = start_authenticator(self._context, self._allow)
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, CONTROL_HWM)
        sock.setsockopt(zmq.RCVHWM, CONTROL_HWM)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDTIMEO, REPLY_SEND_TIMEOUT_MS)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        if self._keys is not None:
            apply_server_keys(sock, self._keys)
        try:
            sock.bind(self.bind_address)
        except zmq.ZMQError as err:
            sock.close(0)
            self._stop_auth()
            raise ConfigError(f"Expected to bind {self.bind_address}, actual: {err}") from err
        self._socket = sock
        last = sock.getsockopt(zmq.LAST_ENDPOINT)
        self._endpoint = last.decode() if isinstance(last, bytes) else str(last)
        self._log.info("server_listening", endpoint=self._endpoint, curve=self.curve)
        return self._endpoint

    def serve_once(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for one request, answer it, check the session timeout.

        Returns:
            Whether a request was answered.
        """
        sock = self._socket
        if sock is None:
            raise RuntimeError("BackendServer.start() must be called before serving")
        answered = False
        timeout_ms = max(0, int(timeout_s * 1000))
        if timeout_ms != self._rcvtimeo_ms:
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._rcvtimeo_ms = timeout_ms
        try:  # waits at most RCVTIMEO
            peer = sock.recv() if self._allow is None else self._recv_allowed_peer(sock)
        except zmq.Again:
            peer = None
        if peer is not None:
            backend = self.backend
            started_s = backend.now_s()
            # A ROUTER always puts the routing id in front of at least one frame, and a
            # multipart message arrives whole: the body is already here (NOBLOCK never
            # waits). Reading it as a zmq.Frame tells whether more frames follow without a
            # getsockopt(RCVMORE) call, which costs more than the receive itself.
            body: bytes | None = None
            count = 1
            try:
                frame = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                frame = None
            if frame is not None:
                count = 2
                if frame.more:
                    more = True
                    while more:
                        sock.recv()
                        count += 1
                        more = bool(sock.get(zmq.RCVMORE))
                        if count % _DRAIN_CHECK_FRAMES == 0:
                            # A message may hold millions of frames (libzmq bounds the size
                            # of each, not their number): the session timeout is still
                            # checked while they are drained.
                            backend.served(peer, started_s)
                            started_s = backend.now_s()
                            backend.check_timeout()
                else:
                    body = frame.bytes
            if body is None:
                self._log.warning(
                    "frame_dropped", reason=f"Expected 2 frames (peer, body), actual {count}"
                )
            else:
                reply = backend.handle(peer, body)
                try:
                    # Blocking, but never longer than SNDTIMEO: with tiny HWMs the pipe's
                    # flow-control credit can lag a message behind, so NOBLOCK would drop
                    # replies that a few microseconds later fit.
                    sock.send(peer, zmq.SNDMORE)
                    sock.send(reply)
                except zmq.ZMQError as err:  # peer gone (EHOSTUNREACH) or stalled past SNDTIMEO
                    self._log.warning("reply_dropped", reason=str(err))
                answered = True
            # Time spent on another connection's message is not the controlling session's
            # silence (up to a cap; see Backend.served).
            backend.served(peer, started_s)
        if not answered:
            # handle() checked the session timeout just before answering; between requests
            # the check runs here, at least every poll interval.
            self.backend.check_timeout()
        return answered

    def _recv_allowed_peer(self, sock: zmq.Socket[bytes]) -> bytes | None:
        """With CURVE: the routing id of a request whose sender's key is still allowed.

        A request from a key revoked since its handshake (removed from ``clients/``) is read
        whole, dropped unanswered and logged; ``None`` is returned then.
        """
        assert self._allow is not None
        frame = sock.recv(copy=False)
        user = frame.get("User-Id")  # the z85 client key (set by the ZAP handler)
        if isinstance(user, str) and self._allow.permits(user):
            return frame.bytes
        while frame.more:
            frame = sock.recv(copy=False)
        self._log.warning(
            "curve_client_refused", client_key=user, reason="public key revoked (allow-list)"
        )
        return None

    def serve_forever(self, stop: threading.Event) -> None:
        """Answer requests until ``stop`` is set."""
        self.start()
        while not stop.is_set():
            self.serve_once(self.poll_interval_s)

    def close(self) -> None:
        """Stop stimulation, close the socket and the context (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.backend.close()
        finally:
            if self._socket is not None:
                self._socket.close(0)
                self._socket = None
            self._stop_auth()
            self._context.term()
            self._log.info("server_closed", endpoint=self._endpoint)

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def __enter__(self) -> BackendServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def serving(
    backend: Backend, bind: str = "tcp://127.0.0.1:*", poll_interval_s: float = 0.01
) -> Iterator[str]:
    """Serve ``backend`` in a thread for the ``with`` block; yield the bound endpoint.

    For tests and embedding: on exit the server stops, its thread is joined (within 5 s) and
    the server closes (the backend's final safe stop included).
    """
    server = BackendServer(backend, bind, poll_interval_s=poll_interval_s)
    endpoint = server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        stop.set()
        thread.join(5.0)
        server.close()
