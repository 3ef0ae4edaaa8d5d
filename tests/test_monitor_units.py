"""Monitor parts without a browser: decimation, fold, telemetry that never blocks, auth, CLI."""

from __future__ import annotations

import math
from array import array

import msgpack
import numpy as np
import pytest
import zmq

from controller.backends.base import BackendObservation
from controller.envelope.governor import Decision
from controller.estop import EStop
from controller.monitor.auth import Access, access_for, is_loopback, load_token, parse_bind
from controller.monitor.decimate import decimate, to_json_list
from controller.monitor.telemetry import ESTOP_REASON, Endpoints, TelemetryPublisher
from controller.monitor_cli import main as monitor_main
from core.errors import ConfigError
from protocol.envelope.setpoint import Finding, Setpoint
from protocol.recording import RecordingWriter

META = {
    "config": {"backend": "sim", "period_ms": 20.0, "pace": "realtime"},
    "envelope": {"name": "simulator", "domain": "model", "amplitude_unit": "mV",
                 "charge_per_phase_max": 200.0, "amplitude_max": 200.0},
    "envelope_hash": "ab" * 32,
    "policy": {"name": "ftsts"},
}  # fmt: skip


def test_decimation_keeps_every_extreme_and_bounds_the_points():
    n = 180_000  # an hour at 50 Hz
    x = array("d", (k * 0.02 for k in range(n)))
    y = array("d", (math.sin(k / 500.0) for k in range(n)))
    y[123_457] = 50.0  # one clamp-like spike
    y[99_999] = -50.0
    y[10] = math.nan
    out = decimate({"t_s": x, "y": y}, "t_s", n, max_buckets=1000)
    assert len(out["t_s"]) <= 2000
    assert len(out["y"]) == len(out["t_s"])
    assert np.nanmax(out["y"]) == 50.0
    assert np.nanmin(out["y"]) == -50.0
    assert not np.isnan(out["y"]).any()  # a NaN inside a bucket does not hide its values
    assert out["t_s"][0] == 0.0
    assert out["t_s"][-1] == x[-1]
    assert list(np.diff(out["t_s"]) >= 0).count(False) == 0


def test_decimation_is_exact_for_short_sessions_and_ranges():
    x = array("d", (k * 0.02 for k in range(500)))
    y = array("d", (float(k) for k in range(500)))
    out = decimate({"t_s": x, "y": y}, "t_s", 500, max_buckets=1000)
    assert out["y"].tolist() == list(y)
    part = decimate({"t_s": x, "y": y}, "t_s", 500, max_buckets=1000, t0=1.0, t1=2.0)
    assert part["y"][0] == 50.0
    assert part["y"][-1] == 100.0
    assert to_json_list(np.array([1.0, math.nan, math.inf])) == [1.0, None, None]


def _decision(amplitude: float, findings=(), held=False, fault=None) -> Decision:
    setpoint = Setpoint(amplitude=amplitude, frequency_hz=83.33, pulse_width_us=1000.0)
    return Decision(setpoint, tuple(findings), held, fault)


def _obs(seq: int, amplitude: float, r: float) -> BackendObservation:
    sp = Setpoint(amplitude=amplitude, frequency_hz=83.33, pulse_width_us=1000.0)
    fields = {"synchrony": r, "weight_mv": 250.0, "charge_mv_ms": 2 * amplitude}
    return BackendObservation(seq, 20.0 * seq, 20.0, fields, sp if sp.is_on else None)


def _run_records(recorder, estop_at: int | None = None) -> None:
    clamp = Finding("ramp_up", "clamp", "amplitude", 100.0, 20.0, "ramp")
    recorder.event("backend", {"kind": "sim", "name": "Fake", "lockstep": True})
    for k in range(6):
        if estop_at is not None and k == estop_at:
            recorder.event("fault", {"reason": "estop_monitor", "detail": "operator"})
            recorder.event("stop", {"reason": "estop_monitor"})
            return
        amp = 0.0 if k < 2 else 20.0
        recorder.command(k, k * 0.02, _decision(amp, [clamp] if k == 2 else [], held=k == 4))
        recorder.observation(k, _obs(k + 1, amp, 0.5 - 0.05 * k))
        recorder.action(k, [0.1])
        recorder.timing(k, step_ms=1.0, overhead_ms=0.1, latency_ms=1.1)
    recorder.event("stop", {"reason": "completed"})


def test_fold_of_a_recording_matches_its_records(tmp_path):
    from controller.monitor.source import open_recording
    from controller.recorder import SessionRecorder

    path = tmp_path / "s.nlrec"
    rec = SessionRecorder(path, META)
    _run_records(rec, estop_at=5)
    rec.close()
    view = open_recording(path)
    fold = view.fold
    assert fold.rows == 5
    assert list(fold.columns["f:synchrony"]) == [0.5 - 0.05 * k for k in range(5)]
    assert list(fold.columns["cmd_amplitude"]) == [0, 0, 20, 20, 20]
    assert list(fold.columns["del_amplitude"]) == [0, 0, 20, 20, 20]
    assert list(fold.columns["charge_cum"]) == [0, 0, 40, 80, 120]
    states = [int(s) for s in fold.columns["state"]]
    assert states == [1, 1, 2, 2, 3]  # armed, armed, stimulating, stimulating, held
    kinds = [e["kind"] for e in fold.events]
    assert kinds == ["clamp", "e-stop", "stop"]
    assert fold.status()["state"] == "e-stop"
    assert fold.meta["policy"] == "ftsts"


def test_publisher_never_blocks_without_or_with_a_stalled_viewer(tmp_path):
    """No subscriber, then a subscriber that never reads: every tick returns, drops counted."""
    endpoints = Endpoints(tmp_path)
    estop = EStop()
    pub = TelemetryPublisher(endpoints, META, estop, sndhwm=8, batch_s=0.0)
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 8)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.setsockopt(zmq.LINGER, 0)
    try:
        for k in range(3000):
            _run_tick(pub, k)
        assert pub.dropped == 0  # PUB without subscribers discards without queueing
        stalled.connect(endpoints.telemetry)
        assert pub.wait_for_viewer(0.3) is False  # nobody said ready
        for k in range(3000, 23_000):
            _run_tick(pub, k)
        assert pub.dropped > 10_000  # the stalled reader holds a few; the rest were dropped
        # control socket: hello gives the meta, estop only requests a stop
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 3000)
        req.connect(endpoints.control)
        req.send(b"hello")
        assert msgpack.unpackb(req.recv())["meta"]["policy"]["name"] == "ftsts"
        req.send(b"set amplitude 400")
        assert req.recv().startswith(b"error: expected hello, ready, ended or estop")
        assert not estop.requested
        req.send(b"estop")
        assert req.recv() == b"ok"
        assert estop.reason == ESTOP_REASON
        req.close()
    finally:
        stalled.close()
        pub.close()
        ctx.term()


def _run_tick(pub: TelemetryPublisher, k: int) -> None:
    pub.command(k, k * 0.02, _decision(20.0))
    pub.observation(k, _obs(k + 1, 20.0, 0.3))
    pub.timing(k, step_ms=1.0, overhead_ms=0.1, latency_ms=1.1)


def test_access_rules():
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.4")
    assert parse_bind("0.0.0.0:9000", 8765) == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:9000", 8765) == ("::1", 9000)
    assert parse_bind(":0", 8765) == ("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="Expected a port number"):
        parse_bind("host:http", 8765)
    with pytest.raises(ConfigError, match="ssh -N -L"):
        access_for("0.0.0.0", None)
    rule = Access("0.0.0.0", "s3cret-token-0123456789")
    assert rule.token_ok("s3cret-token-0123456789")
    assert not rule.token_ok("wrong")
    assert not rule.token_ok(None)
    open_rule = Access("127.0.0.1", None)
    assert open_rule.host_ok("127.0.0.1:8765")
    assert open_rule.host_ok("localhost:1")
    assert not open_rule.host_ok("evil.example:8765")  # DNS rebinding


def test_token_file_too_short(tmp_path):
    short = tmp_path / "t"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_token(short)


def test_monitor_cli_refuses_bad_arguments(tmp_path, capsys):
    assert monitor_main([]) == 2
    assert "Expected one or two recordings" in capsys.readouterr().err
    assert monitor_main([str(tmp_path / "missing.nlrec")]) == 2
    assert "Expected a recording file" in capsys.readouterr().err
    rec = tmp_path / "r.nlrec"
    RecordingWriter(rec, META).close()
    assert monitor_main([str(rec), "--bind", "0.0.0.0:0"]) == 2
    err = capsys.readouterr().err
    assert "Expected a token" in err
    assert "ssh -N -L" in err


def test_monitor_help_teaches(capsys):
    with pytest.raises(SystemExit):
        monitor_main(["--help"])
    out = capsys.readouterr().out
    assert "--monitor" in out
    assert "ssh -N -L" in out
    assert "side by side" in out


def test_a_recording_is_served_read_only_and_same_origin(tmp_path):
    """A real server on a recording: the page, the data, no e-stop, no cross-site reads."""
    import json
    import subprocess
    import sys

    from monitor_support import ROOT, free_port, get, wait_http
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from controller.recorder import SessionRecorder

    path = tmp_path / "s.nlrec"
    rec = SessionRecorder(path, META)
    _run_records(rec)
    rec.close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "controller.monitor_cli", str(path), "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/", server, timeout_s=60)
        assert "uPlot.iife.min.js" in get(base + "/")[1]
        assert get(base + "/static/uPlot.iife.min.js")[0] == 200
        assert get(base + "/", {"Host": "evil.example:80"})[0] == 421
        estop = get(base + "/api/estop/0", {"X-NeuroLoop-EStop": "1"}, "POST")
        assert estop[0] == 409
        assert get(base + "/api/estop/0", method="POST")[0] == 400
        with connect(f"ws://127.0.0.1:{port}/ws/0", open_timeout=5) as ws:
            snap = json.loads(ws.recv(timeout=5))
        assert snap["type"] == "snapshot"
        assert snap["cols"]["cmd_amplitude"] == [0, 0, 20, 20, 20, 20]
        assert snap["status"]["end_reason"] == "completed"
        with pytest.raises(InvalidStatus, match=r"HTTP 403"):
            connect(f"ws://127.0.0.1:{port}/ws/0", origin="http://evil.example", open_timeout=5)
    finally:
        server.terminate()
        server.wait(10)


def test_controller_help_names_the_monitor(capsys):
    from controller.cli import main as controller_main

    with pytest.raises(SystemExit):
        controller_main(["--help"])
    out = capsys.readouterr().out
    assert "--monitor [HOST[:PORT]]" in out
    assert "NEUROLOOP_MONITOR_TOKEN" in out


def test_ticks_are_batched_and_run_events_go_at_once(tmp_path):
    endpoints = Endpoints(tmp_path)
    pub = TelemetryPublisher(endpoints, META, EStop(), batch_s=60.0)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(endpoints.telemetry)
    try:
        while True:  # wait until the subscription is through (probes reach us)
            pub.wait_for_viewer(0.05)
            if sub.poll(50):
                sub.recv()
                break
        while sub.poll(100):
            sub.recv()  # drain the probes
        for k in range(10):
            _run_tick(pub, k)
        assert not sub.poll(200)  # the ticks wait in the batch (60 s here)
        pub.event("stop", {"reason": "completed"})
        message = msgpack.unpackb(sub.recv())
        kinds = [r[0] for r in message["records"]]
        assert kinds.count("timing") == 10
        assert kinds[-1] == "stop"
        assert message["dropped"] == 0
    finally:
        sub.close()
        pub.close()
        ctx.term()
