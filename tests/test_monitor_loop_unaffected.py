"""Viewers change nothing for the loop: a killed browser, a hundred reconnects, a stalled
viewer and unauthorised requests on a non-loopback address leave the loop's recording
identical, record for record, to a run without a monitor (ticks and values, not timings)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest
from monitor_support import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    behaviour,
    controller,
    free_port,
    get,
    records,
    wait_exit,
    wait_http,
    wait_rows,
)

websockets_sync = pytest.importorskip("websockets.sync.client")

DURATION = ["--policy", "ftsts", "--onset-ms", "1000", "--duration", "8"]
TOKEN = "monitor-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The same run without a monitor (lockstep simulator: same commands at any pace)."""
    tmp = tmp_path_factory.mktemp("baseline")
    proc = controller(tmp, "base.nlrec", *DURATION, "--pace", "fast")
    assert wait_exit(proc, tmp / "base.nlrec.log") == 0
    return behaviour(tmp / "base.nlrec")


def _stalled_viewer(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        b"GET /ws/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return sock


def test_killed_browser_reconnects_and_a_stalled_viewer_change_nothing(baseline, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = controller(tmp_path, "mon.nlrec", *DURATION, "--monitor", f"127.0.0.1:{port}")
    stalled = None
    browser = None
    try:
        wait_http(base + "/", proc)
        wait_rows(base, 5, proc)  # the run has started
        stalled = _stalled_viewer(port)
        # a real browser loads the page, then is killed without closing anything
        profile = tempfile.mkdtemp(dir=tmp_path)
        browser = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", base + "/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while json.loads(get(base + "/api/sessions")[1])["viewers"] < 2:
            assert time.monotonic() < deadline, "the browser never connected"
            time.sleep(0.1)
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(10)
        # a hundred reconnects, each taking its snapshot
        for _ in range(100):
            with websockets_sync.connect(f"ws://127.0.0.1:{port}/ws/0", open_timeout=5) as ws:
                first = json.loads(ws.recv(timeout=5))
                assert first["type"] == "snapshot"
        still_running = proc.poll() is None
        code = wait_exit(proc, tmp_path / "mon.nlrec.log")
    finally:
        if stalled is not None:
            stalled.close()
        if browser is not None and browser.poll() is None:
            os.killpg(browser.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert still_running, "the viewers were not exercised during the run; lengthen it"
    assert code == 0, (tmp_path / "mon.nlrec.log").read_text()[-3000:]
    assert behaviour(tmp_path / "mon.nlrec") == baseline
    assert len(records(tmp_path / "mon.nlrec", "command")) == 400


def test_non_loopback_monitor_needs_a_token_and_refuses_viewers_without_it(baseline, tmp_path):
    port = free_port()
    # without a token the controller refuses to start the run at all
    proc = controller(
        tmp_path, "refused.nlrec", *DURATION, "--monitor", f"0.0.0.0:{port}",
        env={"NEUROLOOP_MONITOR_TOKEN": ""},
    )  # fmt: skip
    assert wait_exit(proc, tmp_path / "refused.nlrec.log", 60) == 2
    log = (tmp_path / "refused.nlrec.log").read_text()
    assert "Expected a token" in log
    assert "ssh -N -L" in log
    assert records(tmp_path / "refused.nlrec", "command") == []
    # with a token: every request without it is refused, and the run is the baseline
    proc = controller(
        tmp_path, "token.nlrec", *DURATION, "--monitor", f"0.0.0.0:{port}",
        env={"NEUROLOOP_MONITOR_TOKEN": TOKEN},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _ = get(base + "/")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        wait_rows(base, 5, proc, auth)
        assert status == 401
        assert get(base + "/?token=wrong-token-000000000000")[0] == 401
        assert get(base + "/static/monitor.js")[0] == 401
        assert get(base + "/api/estop/0", {"X-NeuroLoop-EStop": "1"}, "POST")[0] == 401
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus, match=r"HTTP 403"):
            websockets_sync.connect(f"ws://127.0.0.1:{port}/ws/0", open_timeout=5)
        assert get(base + f"/?token={TOKEN}")[0] == 200
        assert get(base + "/api/sessions", auth)[0] == 200
        code = wait_exit(proc, tmp_path / "token.nlrec.log")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0, (tmp_path / "token.nlrec.log").read_text()[-3000:]
    assert behaviour(tmp_path / "token.nlrec") == baseline


def test_a_run_without_a_recording_reaches_the_page_through_telemetry(tmp_path):
    """``--no-record``: nothing to follow, so the loop publishes; every tick still arrives."""
    port = free_port()
    proc = controller(
        tmp_path, "norec", *DURATION, "--monitor", f"127.0.0.1:{port}", record=False
    )
    ticks: list[float] = []
    status: dict = {}
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        with websockets_sync.connect(f"ws://127.0.0.1:{port}/ws/0", open_timeout=5) as ws:
            deadline = time.monotonic() + 240
            while not status.get("finished"):
                assert time.monotonic() < deadline, "the run's end never reached the page"
                message = json.loads(ws.recv(timeout=60))
                if message["type"] == "snapshot":
                    ticks = list(message["cols"]["tick"])
                else:
                    ticks += message["cols"]["tick"]
                status = message["status"]
        code = wait_exit(proc, tmp_path / "norec.log")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0, (tmp_path / "norec.log").read_text()[-3000:]
    assert ticks == list(range(400))
    assert status["dropped"] == 0
    assert status["end_reason"] == "completed"
    assert not list(tmp_path.glob("*.nlrec"))

