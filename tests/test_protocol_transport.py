"""Client and server in separate processes over real ZeroMQ sockets (tcp and ipc)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from core.errors import (
    BackendBusyError,
    BackendUnavailableError,
    ProtocolError,
    SafetyLimitError,
    TransportTimeoutError,
)
from protocol.client import BackendClient
from protocol.codec import pack, to_wire, unpack_reply
from protocol.loopback import LOOPBACK_WIRE_ENVELOPE
from protocol.messages import (
    Configure,
    Configured,
    ErrorReply,
    GetStatus,
    Hello,
    Observation,
    Reset,
    Status,
    Step,
    Welcome,
)
from protocol.process import BackendProcess, spawn_backend, spawn_local_backend

LOOPBACK = [sys.executable, "-m", "protocol.loopback", "--log-level", "warning"]
ON = {"amplitude_mv": 2.0, "frequency_hz": 130.0, "pulse_width_us": 60.0}
ENVELOPE = LOOPBACK_WIRE_ENVELOPE


@pytest.fixture(params=["tcp", "ipc"])
def backend(request: pytest.FixtureRequest) -> Iterator[BackendProcess]:
    proc = spawn_local_backend(LOOPBACK, request.param, ready_timeout_s=60.0)
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def short_timeout_backend() -> Iterator[BackendProcess]:
    proc = spawn_local_backend(
        LOOPBACK, "ipc", ready_timeout_s=60.0, extra_args=["--session-timeout-s", "0.3"]
    )
    yield proc
    proc.stop()


def _running_client(address: str) -> BackendClient:
    client = BackendClient(address, timeout_s=5.0, client_name="pytest")
    client.hello()
    client.configure(ENVELOPE, options={"spikes_per_step": 25, "seed": 4})
    client.reset()
    client.step(None, 100.0)  # off first: the envelope's soft start then allows ON
    return client


def test_full_session_across_processes(backend: BackendProcess) -> None:
    with _running_client(backend.address) as client:
        assert client.welcome is not None
        assert client.welcome.backend_kind == "loopback"
        for i in range(1, 51):
            obs = client.step(ON, want_spikes=(i % 10 == 0))
            assert obs.seq == i + 1
            assert obs.fields["step_index"] == float(i + 1)
        assert obs.spikes is not None
        assert len(obs.spikes) == 25
        assert obs.t_model_ms == pytest.approx(100.0 + 50 * 20.0)
        status = client.stop("test over")
        assert status.state == "stopped"
        assert not status.stimulating
        assert client.bye().state == "idle"


def test_spikes_are_reproducible_from_the_seed(backend: BackendProcess) -> None:
    runs = []
    for _ in range(2):
        with _running_client(backend.address) as client:
            obs = client.step(ON, want_spikes=True)
            assert obs.spikes is not None
            runs.append((obs.spikes.times().tolist(), obs.spikes.neuron_ids().tolist()))
            client.bye()
    assert runs[0] == runs[1]


def test_second_client_is_busy(backend: BackendProcess) -> None:
    with _running_client(backend.address) as first, BackendClient(backend.address) as second:
        with pytest.raises(BackendBusyError, match=r"\[busy\] Expected no controlling client"):
            second.hello()
        assert second.status().state == "running"  # read-only status is allowed
        first.step(ON)
        first.bye()
        assert second.hello().backend_kind == "loopback"
        second.bye()


def test_out_of_envelope_step_raises_safety_error(backend: BackendProcess) -> None:
    with _running_client(backend.address) as client:
        client.step(ON)
        with pytest.raises(SafetyLimitError, match="backend stopped stimulation"):
            client.step({**ON, "amplitude_mv": 12.0})
        assert client.last_error is not None
        assert client.last_error.code == "limit_exceeded"
        assert client.status().state == "stopped"


def _raw_dealer(address: str) -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    return ctx, sock


def _raw_exchange(sock: zmq.Socket[bytes], data: bytes) -> tuple[int, object]:
    sock.send(data)
    assert sock.poll(5000, zmq.POLLIN), "backend did not answer within 5 s"
    return unpack_reply(sock.recv())


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (math.nan, "non_finite"),
        (math.inf, "non_finite"),
        (-math.inf, "non_finite"),
        (1e9, "limit_exceeded"),
        (-1.0, "limit_exceeded"),
    ],
)
def test_server_refuses_bad_stimulus_bytes(value: float, code: str) -> None:
    """A raw DEALER bypasses the client's own validation: the server is the gate."""
    with spawn_local_backend(LOOPBACK, "ipc", ready_timeout_s=60.0) as proc:
        ctx, sock = _raw_dealer(proc.address)
        try:
            _, welcome = _raw_exchange(sock, pack(1, Hello("raw")))
            assert isinstance(welcome, Welcome)
            session = welcome.session_id
            _, configured = _raw_exchange(sock, pack(2, Configure(session, 20.0, ENVELOPE, {})))
            assert isinstance(configured, Configured)
            _, status = _raw_exchange(sock, pack(3, Reset(session, 1)))
            assert isinstance(status, Status)
            assert status.state == "running"
            _, warm = _raw_exchange(sock, pack(30, Step(session, None, 100.0)))
            assert isinstance(warm, Observation)
            _, obs = _raw_exchange(sock, pack(4, Step(session, ON, 20.0)))
            assert isinstance(obs, Observation)
            assert obs.applied == ON
            body = to_wire(1234, Step(session, ON, 20.0))
            body["stimulus"] = {**ON, "amplitude_mv": value}
            rid, error = _raw_exchange(sock, msgpack.packb(body))
            assert rid == 1234
            assert isinstance(error, ErrorReply)
            assert error.code == code
            assert error.stopped
            _, status = _raw_exchange(sock, pack(5, GetStatus(session)))
            assert isinstance(status, Status)
            assert status.state == "stopped"
            assert not status.stimulating
        finally:
            sock.close(0)
            ctx.term()


def test_garbage_never_kills_the_server(backend: BackendProcess) -> None:
    ctx, sock = _raw_dealer(backend.address)
    try:
        for junk in [b"", b"\x00", b"\xc1" * 10, msgpack.packb([1, 2, 3]), bytes(range(256))]:
            _, reply = _raw_exchange(sock, junk)
            assert isinstance(reply, ErrorReply)
            assert reply.code == "bad_message"
        sock.send_multipart([b"two", b"frames"])  # a DEALER multipart: the server drops it
        _, status = _raw_exchange(sock, pack(5, GetStatus(None)))
        assert isinstance(status, Status)
        assert status.state == "idle"
    finally:
        sock.close(0)
        ctx.term()
    assert backend.alive()


def test_vanished_client_session_times_out(short_timeout_backend: BackendProcess) -> None:
    address = short_timeout_backend.address
    client = _running_client(address)
    client.step(ON)
    client.close()  # vanish without bye
    with BackendClient(address, timeout_s=5.0) as monitor:
        deadline = time.monotonic() + 30.0
        status = monitor.status()
        while status.state != "idle" and time.monotonic() < deadline:
            time.sleep(0.05)
            status = monitor.status()
        assert status.state == "idle"
        assert status.stop_reason.startswith("session timed out")
        assert not status.stimulating
        assert monitor.hello().backend_kind == "loopback"  # free for the next controller
        monitor.bye()


def test_deadline_expiry_and_stale_reply_dropped() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with BackendClient(f"tcp://127.0.0.1:{port}", timeout_s=0.2) as client:
            with pytest.raises(TransportTimeoutError, match=r"Expected a reply to get_status #1"):
                client.status()
            assert router.poll(5000)
            peer, _first = router.recv_multipart()
            stale = Status("idle", None, 111, 0.0, False)
            router.send_multipart([peer, pack(1, stale)])  # late answer to request #1
            fresh = Status("idle", None, 222, 0.0, False)

            # answer request #2 once it arrives; the client must skip the stale #1 reply
            def answer() -> None:
                if router.poll(5000):
                    peer2, _ = router.recv_multipart()
                    router.send_multipart([peer2, pack(2, fresh)])

            thread = threading.Thread(target=answer)
            thread.start()
            try:
                assert client.status(timeout_s=5.0).seq == 222
            finally:
                thread.join(10.0)
    finally:
        router.close(0)
        ctx.term()


def test_no_backend_is_unavailable_not_a_hang(tmp_path: Path) -> None:
    client = BackendClient(f"ipc://{tmp_path / 'nobody.sock'}", timeout_s=0.2)
    with client, pytest.raises(BackendUnavailableError, match="Expected a backend connected"):
        client.hello()


def test_malformed_reply_is_a_protocol_error() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with BackendClient(f"tcp://127.0.0.1:{port}", timeout_s=5.0) as client:

            def answer() -> None:
                if router.poll(5000):
                    peer, _ = router.recv_multipart()
                    router.send_multipart([peer, b"\x92\x01\x02"])

            thread = threading.Thread(target=answer)
            thread.start()
            try:
                with pytest.raises(ProtocolError, match="Expected a message map"):
                    client.status()
            finally:
                thread.join(10.0)
    finally:
        router.close(0)
        ctx.term()


def test_spawn_reports_a_backend_that_dies() -> None:
    argv = [sys.executable, "-c", "print('starting'); raise SystemExit(3)"]
    with pytest.raises(BackendUnavailableError, match=r"exited with code 3.*last output: starting"):
        spawn_backend(argv, ready_timeout_s=30.0)


def test_spawn_kills_a_backend_that_never_gets_ready() -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(
        BackendUnavailableError, match=re.escape("no 'NEUROLOOP_READY' line within 0.5 s")
    ):
        spawn_backend(argv, ready_timeout_s=0.5)


def test_non_loopback_bind_without_keys_is_refused() -> None:
    result = subprocess.run(
        [*LOOPBACK, "--bind", "tcp://0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Refusing to bind tcp://0.0.0.0:0 without CURVE keys" in result.stderr
    assert "NEUROLOOP_READY" not in result.stdout


def test_server_drops_multipart_requests_and_stays_in_step() -> None:
    from structlog.testing import capture_logs

    from protocol.loopback import LoopbackBackend
    from protocol.server import BackendServer

    with BackendServer(LoopbackBackend(), "tcp://127.0.0.1:*") as server:
        ctx, sock = _raw_dealer(server.endpoint)
        try:
            with capture_logs() as logs:
                for parts in ([b"a", b"b"], [b"a", b"b", b"c", b"d"]):
                    sock.send_multipart(parts)
                    deadline = time.monotonic() + 5.0
                    while not any(e["event"] == "frame_dropped" for e in logs):
                        assert time.monotonic() < deadline
                        assert not server.serve_once(0.05)
                    dropped = [e for e in logs if e["event"] == "frame_dropped"]
                    assert f"actual {len(parts) + 1}" in dropped[-1]["reason"]
                    logs.clear()
            sock.send(pack(7, GetStatus(None)))
            deadline = time.monotonic() + 5.0
            while not server.serve_once(0.05):
                assert time.monotonic() < deadline
            assert sock.poll(5000)
            rid, status = unpack_reply(sock.recv())
            assert rid == 7
            assert isinstance(status, Status)
        finally:
            sock.close(0)
            ctx.term()
