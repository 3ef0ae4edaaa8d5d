"""Another local peer must not be able to end the controlling session (issue 18 item 5).

Real ZeroMQ sockets: a controller session runs while a second connection sends what it likes.
The second connection's requests must cost a bounded time and a bounded reply and log line, and
the time the server spends on them must not count as the controller's silence; but a silent
controller's session must still end, whatever the other connection does.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from protocol.client import BackendClient
from protocol.codec import pack, unpack_reply
from protocol.loopback import LOOPBACK_WIRE_ENVELOPE, LoopbackBackend
from protocol.messages import ErrorReply, GetStatus, Reply, Request, Status
from protocol.process import spawn_local_backend
from protocol.server import BackendServer

LOOPBACK = [sys.executable, "-m", "protocol.loopback"]
ON = {"amplitude_mv": 2.0, "frequency_hz": 130.0, "pulse_width_us": 60.0}
ENVELOPE = LOOPBACK_WIRE_ENVELOPE
SESSION = "0123456789abcdef0123456789abcdef"


def _many_keys_body(n_keys: int) -> bytes:
    """A heartbeat-shaped message map with ``n_keys`` distinct unknown keys ``k0000000: nil``.

    Built with numpy (10 bytes per entry: fixstr of 8, then nil) so a 50 MB body takes a
    fraction of a second to make.
    """
    head = b"".join(
        [
            b"\xdf" + struct.pack(">I", n_keys + 4),
            b"\xa1v\x01",
            b"\xa4type\xa9heartbeat",
            b"\xa2id\x07",
            b"\xaasession_id\xd9\x20" + SESSION.encode(),
        ]
    )
    entries = np.empty((n_keys, 10), dtype=np.uint8)
    entries[:, 0] = 0xA8  # fixstr of 8 bytes
    entries[:, 1] = ord("k")
    index = np.arange(n_keys)
    for col in range(8, 1, -1):  # seven decimal digits, least significant last
        entries[:, col] = ord("0") + index % 10
        index //= 10
    entries[:, 9] = 0xC0  # nil
    return head + entries.tobytes()


def _dealer(address: str) -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 30_000)
    sock.connect(address)
    return ctx, sock


def _running_client(address: str, timeout_s: float) -> BackendClient:
    client = BackendClient(address, timeout_s=timeout_s, client_name="pytest-controller")
    client.hello()
    client.configure(ENVELOPE)
    client.reset()
    client.step(None, 100.0)  # off first: the envelope's soft start
    assert client.step(ON).applied == ON
    return client


def test_flood_of_keys_from_another_peer_neither_stalls_nor_ends_the_session(
    tmp_path: Path,
) -> None:
    """The issue's case: ~5 million unknown keys in one valid-size request.

    Before the fix the server decoded the map twice, sorted and listed every key in the
    error (35 MB) and logged it (a 71 MB line); the seconds this took counted as the
    controller's silence, so its queued heartbeat got ``no_session`` and stimulation stopped.
    """
    body = _many_keys_body(5_000_000)
    assert 40_000_000 < len(body) < 64 * 1024 * 1024  # a valid size
    log_path = tmp_path / "backend.log"
    with log_path.open("wb") as log:
        argv = [*LOOPBACK, "--log-format", "json", "--session-timeout-s", "2"]
        with spawn_local_backend(argv, "ipc", ready_timeout_s=60.0, stderr=log) as proc:
            client = _running_client(proc.address, timeout_s=120.0)
            ctx, attacker = _dealer(proc.address)
            try:
                attacker.send(body)
                # The controller keeps talking while the attacker's request is served; at
                # least one heartbeat waits behind it (the last one is sent after its reply).
                beats: list[Status] = []
                deadline = time.monotonic() + 120.0
                while not attacker.poll(0, zmq.POLLIN):
                    assert time.monotonic() < deadline, "no reply to the flood within 120 s"
                    beats.append(client.heartbeat())
                rid, error = unpack_reply(attacker.recv())
                beats.append(client.heartbeat())
                observation = client.step(ON)
                status = client.status()
                client.bye()
            finally:
                attacker.close(0)
                ctx.term()
                client.close()
    assert isinstance(error, ErrorReply)
    assert error.code == "bad_message"
    assert not error.stopped
    assert rid == 0  # refused before decoding: no id could be read
    assert len(error.message) <= 1000
    assert "a map of 5000004 entries (limit 64)" in error.message
    assert all(beat.state == "running" and beat.stimulating for beat in beats)
    assert observation.applied == ON
    assert status.state == "running"
    assert status.stimulating
    lines = log_path.read_bytes().splitlines()
    assert max(len(line) for line in lines) < 4000
    rejected = [json.loads(line) for line in lines if b"request_rejected" in line]
    assert len(rejected) == 1
    assert rejected[0]["code"] == "bad_message"
    assert not any(b"session_timeout" in line for line in lines)


class SlowForOthers(LoopbackBackend):
    """Answers every request of a connection other than the controller's after ``delay_s``.

    Stands in for any work the server does for another peer (a long decode, a reply that
    waits for a slow reader): the time is spent in the server thread, between the
    controller's requests.
    """

    def __init__(self, delay_s: float, session_timeout_s: float) -> None:
        super().__init__(session_timeout_s=session_timeout_s)
        self.delay_s = delay_s

    def handle_request(self, peer: bytes, request: Request) -> Reply:
        if self._peer is not None and peer != self._peer:
            time.sleep(self.delay_s)
        return super().handle_request(peer, request)


@pytest.fixture
def slow_server() -> Iterator[BackendServer]:
    server = BackendServer(SlowForOthers(delay_s=2.5, session_timeout_s=2.0), "tcp://127.0.0.1:*")
    stop = threading.Event()
    server.start()
    thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(30.0)
        server.close()


def test_time_spent_on_another_peer_is_not_the_controllers_silence(
    slow_server: BackendServer,
) -> None:
    """A monitor's request that keeps the server busy longer than the session timeout.

    The controller's heartbeat sent meanwhile waits in the queue; before the fix the
    server then counted the whole wait as silence and ended the session.
    """
    client = _running_client(slow_server.endpoint, timeout_s=60.0)
    ctx, monitor = _dealer(slow_server.endpoint)
    try:
        client.heartbeat()
        monitor.send(pack(1, GetStatus(None)))
        time.sleep(0.2)  # let the server take the monitor's request first
        beat = client.heartbeat()
        assert monitor.poll(60_000, zmq.POLLIN)
        rid, monitor_status = unpack_reply(monitor.recv())
        assert beat.state == "running"
        assert beat.stimulating
        assert rid == 1
        assert isinstance(monitor_status, Status)
        assert client.step(ON).applied == ON
        client.bye()
    finally:
        monitor.close(0)
        ctx.term()
        client.close()


def test_a_silent_controller_still_times_out_while_another_peer_keeps_the_server_busy(
    slow_server: BackendServer,
) -> None:
    """What is not counted is capped: the lease still protects when the controller is gone."""
    client = _running_client(slow_server.endpoint, timeout_s=60.0)
    client.close()  # the controller vanishes without bye
    ctx, monitor = _dealer(slow_server.endpoint)
    try:
        deadline = time.monotonic() + 60.0
        status: Reply | None = None
        request_id = 0
        while not (isinstance(status, Status) and status.state == "idle"):
            assert time.monotonic() < deadline, f"session never ended: {status}"
            request_id += 1
            monitor.send(pack(request_id, GetStatus(None)))
            assert monitor.poll(60_000, zmq.POLLIN)
            _, status = unpack_reply(monitor.recv())
        assert not status.stimulating
        assert status.stop_reason.startswith("session timed out")
        assert "spent serving other connections not counted" in status.stop_reason
    finally:
        monitor.close(0)
        ctx.term()


class TickingClock:
    """A monotonic clock that moves ``tick_s`` forward at every reading."""

    def __init__(self) -> None:
        self.now_s = 100.0
        self.tick_s = 0.0

    def __call__(self) -> float:
        self.now_s += self.tick_s
        return self.now_s


def _serve_until_reply(server: BackendServer, sock: zmq.Socket[bytes], data: bytes) -> Reply:
    sock.send(data)
    deadline = time.monotonic() + 30.0
    while not sock.poll(0, zmq.POLLIN):
        assert time.monotonic() < deadline, "no reply within 30 s"
        server.serve_once(0.05)
    return unpack_reply(sock.recv())[1]


def test_a_message_of_many_frames_cannot_hold_off_the_timeout_of_a_silent_controller() -> None:
    """libzmq bounds each frame's size, not the number of frames of one message.

    While the server drops a 10 000-frame message of another peer, the controller is silent
    and the clock runs (0.1 s per reading): the session must end during the drain, not after.
    """
    from structlog.testing import capture_logs

    from protocol.messages import Configure, Hello, Reset, Welcome

    clock = TickingClock()
    backend = LoopbackBackend(session_timeout_s=1.0, clock=clock)
    with BackendServer(backend, "tcp://127.0.0.1:*") as server:
        ctx, controller = _dealer(server.endpoint)
        attacker = ctx.socket(zmq.DEALER)
        attacker.setsockopt(zmq.LINGER, 0)
        attacker.connect(server.endpoint)
        try:
            welcome = _serve_until_reply(server, controller, pack(1, Hello("pytest")))
            assert isinstance(welcome, Welcome)
            session = welcome.session_id
            _serve_until_reply(server, controller, pack(2, Configure(session, 20.0, ENVELOPE)))
            _serve_until_reply(server, controller, pack(3, Reset(session, 1)))
            assert backend.state == "running"
            attacker.send_multipart([b""] * 10_000)
            assert attacker.poll(0, zmq.POLLOUT)
            clock.tick_s = 0.1
            with capture_logs() as logs:
                deadline = time.monotonic() + 30.0
                while not any(e["event"] == "frame_dropped" for e in logs):
                    assert time.monotonic() < deadline
                    server.serve_once(0.05)
            events = [e["event"] for e in logs]
            assert "session_timeout" in events
            assert events.index("session_timeout") < events.index("frame_dropped")
            assert backend.state == "idle"
            assert not backend.stimulating
        finally:
            attacker.close(0)
            controller.close(0)
            ctx.term()
