"""The replay backend: recorded observations in order, every protocol rule, real ZeroMQ."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from controller import cli as controller_cli
from controller import replay_cli
from controller.replay.backend import RECORDED_CHARGE_FIELDS, ReplayBackend
from controller.replay.edit import rewrite_recording
from controller.replay.rebuild import recorded_envelope
from controller.replay.session import load_session
from controller.replay.verify import verify_session
from core.errors import ConfigError
from protocol.messages import (
    Configure,
    Configured,
    ErrorReply,
    Hello,
    Observation,
    Reset,
    Step,
    Welcome,
)
from protocol.process import spawn_local_backend
from protocol.recording import Record

DATA = Path(__file__).parent / "data" / "replay"
FTSTS = DATA / "sim_ftsts_fast.nlrec"
DEVICE = DATA / "device_constant_realtime.nlrec"
PEER = b"controller-1"


@pytest.fixture(autouse=True)
def _structlog_defaults():
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def recorded_fields(fields: dict[str, float]) -> dict[str, float]:
    """A recorded observation's fields as a replay serves them (charge fields renamed)."""
    return {RECORDED_CHARGE_FIELDS.get(k, k): v for k, v in fields.items()}


def open_session(backend: ReplayBackend, period_ms: float | None = None) -> str:
    welcome = backend.handle_request(PEER, Hello("test"))
    assert isinstance(welcome, Welcome)
    env = recorded_envelope(backend.session).to_wire()
    period = backend.session.period_ms if period_ms is None else period_ms
    configured = backend.handle_request(PEER, Configure(welcome.session_id, period, env))
    assert isinstance(configured, Configured), configured
    backend.handle_request(PEER, Reset(welcome.session_id))
    return welcome.session_id


def test_steps_return_the_recorded_observations_in_order_then_refuse():
    session = load_session(FTSTS)
    backend = ReplayBackend(session)
    sid = open_session(backend)
    for t in session.ticks:
        stimulus = (
            None
            if t.command["setpoint"]["amplitude"] == 0.0
            else {
                "amplitude_mv": t.command["setpoint"]["amplitude"],
                "frequency_hz": t.command["setpoint"]["frequency_hz"],
                "pulse_width_us": t.command["setpoint"]["pulse_width_us"],
            }
        )
        obs = backend.handle_request(PEER, Step(sid, stimulus, session.period_ms))
        assert isinstance(obs, Observation)
        assert obs.seq == t.observation["seq"]
        assert obs.t_model_ms == t.observation["t_model_ms"]
        assert obs.fields == recorded_fields(t.observation["fields"])
        assert obs.applied == stimulus
    beyond = backend.handle_request(PEER, Step(sid, None, session.period_ms))
    assert isinstance(beyond, ErrorReply)
    assert beyond.code == "out_of_range"
    assert beyond.stopped
    assert f"Expected at most {len(session.ticks)} steps" in beyond.message
    assert backend.state == "stopped"
    assert not backend.stimulating


def test_capabilities_follow_the_recorded_domain():
    sim = ReplayBackend(load_session(FTSTS)).capabilities()
    assert next((p.name, p.unit) for p in sim.stim_params) == ("amplitude_mv", "mV")
    dev_backend = ReplayBackend(load_session(DEVICE))
    dev = dev_backend.capabilities()
    assert next((p.name, p.unit) for p in dev.stim_params) == ("amplitude_ma", "mA")
    assert "delivered_amplitude_ma" in dev.observation_fields
    assert dev.min_duration_ms == dev.max_duration_ms == 20.0
    open_session(dev_backend)
    assert dev_backend.state == "running"


def test_other_period_is_refused_at_configure():
    backend = ReplayBackend(load_session(FTSTS))
    welcome = backend.handle_request(PEER, Hello("test"))
    assert isinstance(welcome, Welcome)
    env = recorded_envelope(backend.session).to_wire()
    reply = backend.handle_request(PEER, Configure(welcome.session_id, 25.0, env))
    assert isinstance(reply, ErrorReply)
    assert reply.code == "bad_config"
    assert "control_period_ms in [20, 20]" in reply.message


def test_stimulus_outside_the_configured_envelope_is_refused_and_stops():
    backend = ReplayBackend(load_session(FTSTS))
    sid = open_session(backend)
    too_much = {"amplitude_mv": 250.0, "frequency_hz": 83.0, "pulse_width_us": 1000.0}
    reply = backend.handle_request(PEER, Step(sid, too_much, 20.0))
    assert isinstance(reply, ErrorReply)
    assert reply.code == "limit_exceeded"
    assert reply.stopped
    assert "configured envelope" in reply.message
    assert backend.position == 0  # nothing was served for a refused step


def test_recorded_pace_waits_for_each_recorded_round_trip():
    session = load_session(DEVICE)
    slept: list[float] = []
    backend = ReplayBackend(session, pace="recorded", clock=lambda: 100.0, sleep=slept.append)
    sid = open_session(backend)
    for _ in range(5):
        assert isinstance(backend.handle_request(PEER, Step(sid, None, 20.0)), Observation)
    expected = [t.timing["step_ms"] / 1000.0 for t in session.ticks[:5]]
    assert slept == pytest.approx(expected, rel=1e-12)
    assert all(s > 0.0 for s in slept)


def test_fast_pace_never_sleeps():
    slept: list[float] = []
    backend = ReplayBackend(load_session(DEVICE), pace="fast", sleep=slept.append)
    sid = open_session(backend)
    backend.handle_request(PEER, Step(sid, None, 20.0))
    assert slept == []


def test_unknown_pace_is_a_config_error():
    with pytest.raises(ConfigError, match="Expected pace in"):
        ReplayBackend(load_session(FTSTS), pace="slow")  # type: ignore[arg-type]


def test_serve_refuses_a_damaged_recording(tmp_path, capsys):
    data = FTSTS.read_bytes()
    torn = tmp_path / "torn.nlrec"
    torn.write_bytes(data[: len(data) // 2])
    code = replay_cli.main(["serve", str(torn), "--bind", f"ipc://{tmp_path}/r.sock"])
    assert code == 2
    assert "torn tail" in capsys.readouterr().err


def test_controller_runs_against_the_served_recording_over_zeromq(tmp_path):
    """neuroloop-replay serve (a real subprocess and socket) + neuroloop-controller --connect."""
    record = tmp_path / "again.nlrec"
    with spawn_local_backend(
        [sys.executable, "-m", "controller.replay_cli", "serve", str(FTSTS)],
        "ipc",
        ready_timeout_s=60.0,
        extra_args=["--log-level", "warning"],
    ) as served:
        code = controller_cli.main(
            [
                "--backend",
                "replay",
                "--connect",
                served.address,
                "--policy",
                "ftsts",
                "--onset-ms",
                "200",
                "--latch-below-mv",
                "255",
                "--duration",
                "0.8",
                "--record",
                str(record),
                "--log-level",
                "warning",
            ]
        )
    golden, again = load_session(FTSTS), load_session(record)
    assert again.meta["config"]["backend"] == "replay"
    observed = [t for t in again.ticks if t.observation is not None]
    for old, new in zip(golden.ticks, observed, strict=False):
        assert new.observation["fields"] == recorded_fields(old.observation["fields"])
        assert new.observation["t_model_ms"] == old.observation["t_model_ms"]
    # Whatever the machine's load did to this real-time run, its recording verifies.
    report = verify_session(again)
    assert report.passed, report.text()
    if code == 0:
        assert len(again.ticks) == 40
        # The latch (recorded at 0.64 s) happened again on the replayed observations.
        assert again.summary()["latch_time_ms"] == golden.summary()["latch_time_ms"]
    else:
        # Only a timing fault of a loaded machine may end this run early (exit 4).
        assert code == controller_cli.EXIT_FAULT
        assert report.rerun.end_reason in ("deadline_2t", "backend_unreachable")


def _controller_takes_a_session() -> bool:
    from controller.backends import BackendRequest

    return "session" in {f.name for f in dataclasses.fields(BackendRequest)}


@pytest.mark.skipif(
    not _controller_takes_a_session(),
    reason="neuroloop-controller --backend replay SESSION is not wired yet "
    "(controller/backends/local.py open_replay)",
)
def test_controller_backend_replay_session_reproduces_the_golden_commands(tmp_path):
    """``neuroloop-controller --backend replay SESSION --pace fast`` spawns the replay server;
    the same policy on the same observations commands exactly what was recorded."""
    record = tmp_path / "again.nlrec"
    code = controller_cli.main(
        [
            "--backend", "replay", str(FTSTS), "--pace", "fast",
            "--policy", "ftsts", "--onset-ms", "200", "--latch-below-mv", "255",
            "--duration", "1.2", "--record", str(record), "--log-level", "warning",
        ]
    )  # fmt: skip
    assert code == 0
    golden, again = load_session(FTSTS), load_session(record)
    assert [t.command["setpoint"] for t in again.ticks] == [
        t.command["setpoint"] for t in golden.ticks
    ]
    assert [t.command["reasons"] for t in again.ticks] == [
        t.command["reasons"] for t in golden.ticks
    ]
    assert verify_session(again).passed


@pytest.mark.skipif(
    not _controller_takes_a_session(),
    reason="neuroloop-controller --backend replay SESSION is not wired yet",
)
def test_a_replay_run_reports_the_charge_it_commanded_not_the_recorded_one(tmp_path, capsys):
    """Issue 19.6: a 50 mV constant policy replayed on the 100 mV FTSTS session must not report
    the recorded session's charge as its own; a replay stimulates nothing, so its summary gives
    the charge its own setpoints commanded, labelled so."""
    record = tmp_path / "constant50.nlrec"
    code = controller_cli.main(
        [
            "--backend", "replay", str(FTSTS), "--pace", "fast", "--policy", "constant",
            "--amplitude", "50", "--duration", "1.2", "--record", str(record),
            "--log-level", "warning",
        ]
    )  # fmt: skip
    assert code == 0
    golden, again = load_session(FTSTS), load_session(record)
    commanded = 0.0
    for t in again.ticks:
        sp = t.observation["applied"]
        assert "charge_mv_ms" not in t.observation["fields"]
        assert "recorded_charge_mv_ms" in t.observation["fields"]
        if sp is not None and sp["amplitude"] > 0.0:
            per_phase = sp["amplitude"] * sp["pulse_width_us"] / 1000.0
            commanded += 2.0 * per_phase * sp["frequency_hz"] * t.observation["duration_ms"] / 1e3
    assert commanded > 0.0
    assert again.summary()["charge_delivered"] == pytest.approx(commanded, rel=1e-9)
    assert golden.summary()["charge_delivered"] != pytest.approx(commanded, rel=1e-3)
    table = capsys.readouterr().out
    assert "charge commanded" in table
    assert "charge delivered" not in table
    assert verify_session(again).passed


def test_a_spliced_gap_longer_than_the_watchdog_stops_the_controller(tmp_path):
    """hil-safety-protocol §5.2 item 4: splice a 500 ms silence into a served session (recorded
    pace); the real-time controller's watchdog must stop it with a latched fault, and the
    resulting recording must still verify. A replay is a lockstep backend, whose watchdog is
    the stall limit (docs/controller.md, Deadlines): set below the gap here."""

    def transform(record: Record) -> dict[str, Any]:
        p = record.payload
        if record.kind == "timing" and p["tick"] == 10:
            return {**p, "step_ms": 500.0}
        return p

    spliced = rewrite_recording(DEVICE, tmp_path / "gap.nlrec", transform=transform)
    record = tmp_path / "stopped.nlrec"
    with spawn_local_backend(
        [
            sys.executable,
            "-m",
            "controller.replay_cli",
            "serve",
            str(spliced),
            "--pace",
            "recorded",
        ],
        "ipc",
        ready_timeout_s=60.0,
        extra_args=["--log-level", "error"],
    ) as served:
        code = controller_cli.main(
            [
                "--backend", "replay", "--connect", served.address, "--envelope", "device",
                "--policy", "constant", "--amplitude", "1.0", "--frequency-hz", "130",
                "--pulse-width-us", "90", "--duration", "1.0", "--record", str(record),
                "--log-level", "error", "--stall-limit-s", "0.3",
            ]
        )  # fmt: skip
    assert code == controller_cli.EXIT_FAULT
    session = load_session(record)
    faults = session.records_of("fault")
    assert [f.payload["reason"] for f in faults] == ["backend_unreachable"]
    assert session.records_of("stop")[0].payload["reason"] == "backend_unreachable"
    assert len(session.ticks) <= 11  # nothing after the silent step
    report = verify_session(session)
    assert report.passed, report.text()
