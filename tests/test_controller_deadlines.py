"""Late steps: counted against a lockstep backend (its tissue waits), enforced against a device.

docs/controller.md, "Deadlines". Every timing here is scripted on a manual clock, so nothing
depends on how busy the machine running the tests is.
"""

from __future__ import annotations

import threading

import pytest
import structlog

from controller.backends.scripted import ScriptedConnection
from controller.backends.zmq import ZmqConnection
from controller.cli import _recorder, make_summary
from controller.config import RunConfig
from controller.envelope.governor import SafetyGovernor
from controller.loop import ControlLoop, LoopSettings, RunResult
from controller.policies.builtin import ConstantPolicy
from controller.policies.factory import build_policy
from controller.replay.session import load_session
from controller.replay.timing import timing_report
from controller.replay.verify import verify_session
from controller.summary import advice_for, format_table
from core.clock import FakeClock
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from protocol.loopback import LoopbackBackend
from protocol.schema import Capabilities, ParamSpec
from protocol.server import BackendServer

SIM = load_envelope("simulator")
T = 0.02
ON = Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)


@pytest.fixture(autouse=True)
def logs():
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        yield logs
    structlog.reset_defaults()


def run(
    latency, lockstep: bool, ticks: int = 30
) -> tuple[RunResult, ScriptedConnection, SafetyGovernor]:
    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=latency, lockstep=lockstep)
    gov = SafetyGovernor(SIM, T)
    settings = LoopSettings(period_ms=20.0, duration_s=ticks * T, pace="realtime")
    loop = ControlLoop(backend, ConstantPolicy(ON), gov, settings, clock=clock)
    return loop.run(), backend, gov


def test_lockstep_late_steps_are_counted_and_the_run_completes(logs):
    # Two steps later than 2·T and one of 0.3 s: a device run would stop at the first.
    slow = {3: 0.045, 8: 0.3, 20: 0.05}
    result, backend, gov = run(lambda k: slow.get(k, 0.002), lockstep=True)
    assert (result.end_reason, result.fault) == ("completed", None)
    assert result.ticks == 30
    assert result.stats.late_steps == 3
    assert result.stats.deadline_misses == 0
    assert gov.latched is None
    assert gov.counts["late_observation"] == 0  # the policy ran on every observation
    assert backend.stop_reasons == ["completed"]
    late_lines = [e for e in logs if e["event"] == "late_step"]
    assert len(late_lines) == 1
    assert late_lines[0]["log_level"] == "info"


def test_lockstep_commands_do_not_depend_on_host_load():
    # The ramp (20 mV per tick) runs while the host stalls: the same commands either way.
    quiet, quiet_backend, _ = run(lambda k: 0.002, lockstep=True)
    busy, busy_backend, busy_gov = run(
        lambda k: 0.12 if k in (2, 3, 5, 11) else 0.002, lockstep=True
    )
    assert busy.end_reason == quiet.end_reason == "completed"
    assert busy_backend.sent == quiet_backend.sent
    assert busy_gov.counts["lease_expired"] == 0
    assert busy.stats.overruns == 4  # the schedule re-anchors; never two commands per period


def test_lockstep_stall_longer_than_the_limit_stops_with_an_alarm(logs):
    clock = FakeClock()
    backend = ScriptedConnection(
        clock, latency_s=lambda k: 60.0 if k == 5 else 0.002, lockstep=True
    )
    gov = SafetyGovernor(SIM, T)
    settings = LoopSettings(period_ms=20.0, duration_s=20 * T, lockstep_stall_s=5.0)
    result = ControlLoop(backend, ConstantPolicy(ON), gov, settings, clock=clock).run()
    assert result.fault == "backend_unreachable"
    assert backend.stop_reasons == ["backend_unreachable"]
    assert clock.now() == pytest.approx(4 * T + 5.0)
    assert any(e["event"] == "alarm_backend_unreachable" for e in logs)


def test_device_deadlines_still_stop_the_run():
    result, backend, gov = run(lambda k: 0.045 if k == 8 else 0.002, lockstep=False)
    assert (result.end_reason, result.fault) == ("fault", "deadline_2t")
    assert gov.latched == "deadline_2t"
    assert backend.stop_reasons == ["deadline_2t"]
    assert "2·T = 40 ms" in (result.fault_detail or "")


def summary_text(result: RunResult, gov: SafetyGovernor) -> str:
    cfg = RunConfig(backend="serial", policy="constant", no_record=True)
    return format_table(make_summary(cfg, SIM, gov, ConstantPolicy(ON), result, None))


def test_a_fault_summary_says_what_happened_and_what_to_try():
    result, _backend, gov = run(lambda k: 0.045 if k == 8 else 0.002, lockstep=False)
    text = summary_text(result, gov)
    assert "what happened" in text
    assert "actual 45.000 ms" in text
    assert "what to try" in text
    assert "--rt-priority" in text
    assert "deadline misses / overruns | 1 /" in text


def test_a_lockstep_summary_reports_late_steps_as_harmless():
    result, _backend, gov = run(lambda k: 0.05 if k in (4, 9) else 0.002, lockstep=True)
    text = summary_text(result, gov)
    assert "late steps / overruns" in text
    assert "2 / 2" in text
    assert "what to try" not in text


@pytest.mark.parametrize(
    ("fault", "lockstep", "needle"),
    [
        ("deadline_2t", False, "--rt-priority"),
        ("backend_unreachable", False, "--connect"),
        ("backend_unreachable", True, "--pace fast"),
        ("backend_error", False, "--envelope"),
        ("invalid_streak", False, "policy"),
        ("estop_sigint", False, "operator"),
        ("charge_per_phase", False, "envelope_fault"),
    ],
)
def test_every_fault_has_advice(fault, lockstep, needle):
    advice = advice_for(fault, lockstep)
    assert advice is not None
    assert needle in advice
    assert advice_for(None, lockstep) is None


MV_CAPABILITIES = Capabilities(
    stim_params=(
        ParamSpec("amplitude_mv", "mV", "amplitude", 0.0, 400.0),
        ParamSpec("frequency_hz", "Hz", "frequency", 1.0, 250.0),
        ParamSpec("pulse_width_us", "us", "pulse_width", 10.0, 5000.0),
    ),
    observation_fields=("synchrony",),
    control_period_ms=20.0,
    min_duration_ms=1.0,
    max_duration_ms=1000.0,
    supports_spikes=False,
)


class ModelLoopback(LoopbackBackend):
    """The loopback echo (kind ``loopback``) in the simulator's units."""

    def capabilities(self) -> Capabilities:
        return MV_CAPABILITIES


class DeviceLikeLoopback(ModelLoopback):
    """The same, presenting itself as a device (kind ``serial``)."""

    kind = "serial"


@pytest.mark.parametrize(
    ("backend_cls", "lockstep"), [(ModelLoopback, True), (DeviceLikeLoopback, False)]
)
def test_backend_kind_tells_the_controller_whether_the_tissue_waits(
    tmp_path, backend_cls, lockstep
):
    server = BackendServer(backend_cls(), f"ipc://{tmp_path / 'b.sock'}")
    endpoint = server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
    thread.start()
    client = ZmqConnection(endpoint, timeout_s=5.0)
    try:
        info = client.hello("test")
    finally:
        client.close()
        stop.set()
        thread.join(timeout=10)
        server.close()
    assert info.lockstep is lockstep


def record_scripted_run(tmp_path, latency, lockstep: bool):
    """A real-time run against the scripted backend, recorded as the CLI records it."""
    cfg = RunConfig(
        backend="sim",
        policy="constant",
        amplitude=100.0,
        frequency_hz=1000.0 / 12.0,
        pulse_width_us=1000.0,
        record=str(tmp_path / "run.nlrec"),
        duration_s=30 * T,
    )
    policy = build_policy("constant", SIM, amplitude=100.0, frequency_hz=1000.0 / 12.0,
                          pulse_width_us=1000.0)  # fmt: skip
    recorder = _recorder(cfg, SIM, policy)
    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=latency, lockstep=lockstep)
    gov = SafetyGovernor(SIM, T)
    settings = LoopSettings(period_ms=20.0, duration_s=30 * T)
    result = ControlLoop(backend, policy, gov, settings, clock=clock, recorder=recorder).run()
    recorder.event("summary", make_summary(cfg, SIM, gov, policy, result, None).as_dict())
    recorder.close()
    return load_session(tmp_path / "run.nlrec"), result


def test_a_recorded_lockstep_run_with_late_steps_verifies(tmp_path):
    slow = {2: 0.12, 3: 0.05, 9: 0.3}
    session, result = record_scripted_run(tmp_path, lambda k: slow.get(k, 0.002), lockstep=True)
    assert result.stats.late_steps == 3
    assert session.lockstep
    report = verify_session(session)
    assert report.passed, report.text()[-2000:]
    assert timing_report(session).deadline_misses == 0


def test_a_recorded_device_run_with_a_late_step_still_verifies_with_its_hold(tmp_path):
    session, result = record_scripted_run(
        tmp_path, lambda k: 0.03 if k == 9 else 0.002, lockstep=False
    )
    assert result.stats.deadline_misses == 1
    assert not session.lockstep
    assert verify_session(session).passed
