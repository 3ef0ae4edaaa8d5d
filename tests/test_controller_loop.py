"""The control loop's deadline, watchdog, fault and e-stop paths with a manual clock."""

from __future__ import annotations

import math

import pytest
import structlog

from controller.backends.inprocess import InProcessConnection
from controller.backends.scripted import ScriptedConnection
from controller.envelope.governor import SafetyGovernor
from controller.estop import EStop
from controller.loop import ControlLoop, LoopSettings
from controller.policies.builtin import ConstantPolicy, FtstsPolicy, OffPolicy
from core.clock import FakeClock
from core.errors import ConfigError, ProtocolError
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from simulator.config import NetworkConfig

SIM = load_envelope("simulator")
T = 0.02
ON = Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def logs():
    with structlog.testing.capture_logs() as logs:
        yield logs


def make_loop(backend, policy=None, ticks=20, pace="realtime", clock=None, estop=None):
    gov = SafetyGovernor(SIM, T)
    settings = LoopSettings(period_ms=20.0, duration_s=ticks * T, pace=pace)
    loop = ControlLoop(
        backend, policy or ConstantPolicy(ON), gov, settings, clock=clock, estop=estop
    )
    return loop, gov


def test_on_time_observations_run_the_policy_every_tick():
    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=lambda k: 0.005)
    loop, _gov = make_loop(backend, clock=clock, ticks=30)
    result = loop.run()
    assert result.end_reason == "completed"
    assert result.ticks == 30
    assert result.stats.deadline_misses == 0
    assert backend.sent[-1].amplitude == pytest.approx(100.0)
    assert backend.stop_reasons == ["completed"]
    # Ticks are paced on the grid: the manual clock ends at 30 periods.
    assert clock.now() == pytest.approx(29 * T + 0.005)
    assert all(abs(e) < 1e-9 for e in result.stats.period_error_s)


def test_late_observation_holds_the_last_command():
    clock = FakeClock()
    late = {12}
    backend = ScriptedConnection(clock, latency_s=lambda k: 0.03 if k in late else 0.002)
    loop, gov = make_loop(backend, clock=clock, ticks=20)
    result = loop.run()
    assert result.end_reason == "completed"
    assert result.stats.deadline_misses == 1
    assert gov.counts["late_observation"] == 1
    # Step 13 carries the command decided after the late step 12: the held step-12 setpoint.
    assert backend.sent[12] == backend.sent[11]
    assert result.stats.overruns == 1


def test_observation_later_than_two_periods_stops():
    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=lambda k: 0.045 if k == 8 else 0.002)
    loop, gov = make_loop(backend, clock=clock, ticks=20)
    result = loop.run()
    assert (result.end_reason, result.fault) == ("fault", "deadline_2t")
    assert result.ticks == 8
    assert gov.latched == "deadline_2t"
    assert backend.stop_reasons == ["deadline_2t"]
    assert len(backend.sent) == 8


def test_watchdog_timeout_stops_and_raises_the_alarm(logs):
    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=lambda k: 10.0 if k == 5 else 0.002)
    loop, _gov = make_loop(backend, clock=clock, ticks=20)
    result = loop.run()
    assert result.fault == "backend_unreachable"
    assert backend.stop_reasons == ["backend_unreachable"]
    assert clock.now() == pytest.approx(4 * T + SIM.watchdog_periods * T)
    assert any(e["event"] == "alarm_backend_unreachable" for e in logs)


def test_unreachable_backend_stops_without_restart():
    clock = FakeClock()
    backend = ScriptedConnection(clock, unreachable_from=7)
    loop, gov = make_loop(backend, clock=clock, ticks=20)
    result = loop.run()
    assert result.fault == "backend_unreachable"
    assert result.ticks == 6
    assert len(backend.sent) == 6
    assert loop.stopped
    # A latched governor refuses to arm again: no automatic restart.
    with pytest.raises(Exception, match="latched"):
        gov.arm(10.0)


def test_three_nan_observations_in_a_row_stop():
    clock = FakeClock()

    def observe(k, sp):
        return {"synchrony": math.nan if k >= 10 else 0.5, "weight_mv": 200.0, "charge_mv_ms": 0.0}

    # Lockstep (kind loopback): the weight latch reads an unobservable field, refused on a device.
    backend = ScriptedConnection(clock, observe=observe, lockstep=True)
    policy = FtstsPolicy(onset_ms=0.0)
    policy.required_fields = ("weight_mv", "synchrony")
    loop, gov = make_loop(backend, policy=policy, clock=clock, ticks=30)
    result = loop.run()
    assert result.fault == "invalid_streak"
    assert gov.counts["invalid_observation"] == 3
    assert backend.sent[-1] == backend.sent[-2]  # held while invalid
    assert backend.stop_reasons == ["invalid_streak"]


def test_policy_nan_outputs_are_held_then_latched():
    clock = FakeClock()

    class Flaky:
        name = "flaky"
        required_fields = ()
        action_map = None

        def reset(self):
            self.k = 0

        def act(self, fields, t_model_ms):
            self.k += 1
            return Setpoint(
                amplitude=math.nan if self.k > 5 else 50.0, frequency_hz=83.0, pulse_width_us=1000.0
            )

    backend = ScriptedConnection(clock)
    loop, gov = make_loop(backend, policy=Flaky(), clock=clock, ticks=30)
    result = loop.run()
    assert result.fault == "invalid_streak"
    assert all(math.isfinite(sp.amplitude) for sp in backend.sent)
    assert gov.counts["non_finite_request"] == 3


def test_estop_flag_stops_before_the_next_tick():
    clock = FakeClock()
    estop = EStop()
    backend = ScriptedConnection(
        clock, latency_s=lambda k: estop.request("estop_sigterm") or 0.001 if k == 4 else 0.001
    )
    loop, gov = make_loop(backend, clock=clock, estop=estop, ticks=20)
    result = loop.run()
    assert result.end_reason == "estop_sigterm"
    assert result.ticks == 4
    assert backend.stop_reasons == ["estop_sigterm"]
    assert gov.latched == "estop_sigterm"


def test_fast_pace_does_not_sleep_or_check_deadlines():
    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=lambda k: 0.05)  # 2.5 periods, every step
    loop, _gov = make_loop(backend, clock=clock, ticks=10, pace="fast")
    result = loop.run()
    assert result.end_reason == "completed"
    assert result.stats.deadline_misses == 0
    assert clock.now() == pytest.approx(10 * 0.05)


def test_handshake_refuses_a_policy_needing_missing_fields():
    clock = FakeClock()
    backend = ScriptedConnection(clock, fields=("synchrony",), lockstep=True)
    loop, _ = make_loop(backend, policy=FtstsPolicy(), clock=clock)
    with pytest.raises(ConfigError, match=r"include \['weight_mv'\]"):
        loop.run()


def test_handshake_refuses_a_policy_needing_an_unobservable_field_on_a_device():
    clock = FakeClock()
    backend = ScriptedConnection(clock)  # kind serial: a device, real-time tissue
    loop, _ = make_loop(backend, policy=FtstsPolicy(), clock=clock)
    with pytest.raises(ConfigError) as info:
        loop.run()
    message = str(info.value)
    assert "Expected policy 'ftsts' to read only fields an implant can measure" in message
    assert "actual unobservable ['weight_mv']" in message
    assert "'lfp_beta_uv2'" in message  # what is measurable
    assert "'units_synchrony'" in message
    assert backend.sent == []  # refused at the handshake: nothing was ever stepped


def test_handshake_refuses_an_envelope_of_the_wrong_domain():
    clock = FakeClock()
    gov = SafetyGovernor(load_envelope("device"), T)
    loop = ControlLoop(ScriptedConnection(clock), OffPolicy(), gov, LoopSettings(), clock=clock)
    with pytest.raises(ConfigError, match="Expected a 'model' envelope"):
        loop.run()


def test_ftsts_against_the_in_process_simulator_latches_and_stops_stimulating():
    backend = InProcessConnection.simulator(NetworkConfig(n_e=160, n_i=40), seed=3)
    policy = FtstsPolicy(onset_ms=200.0, latch_below_mv=250.0)
    loop, _gov = make_loop(backend, policy=policy, ticks=100, pace="fast")
    result = loop.run()
    assert result.end_reason == "completed"
    assert policy.latched_at_ms is not None
    assert policy.latched_at_ms >= 200.0
    applied = backend.applied
    first_on = next(i for i, a in enumerate(applied) if a is not None)
    assert first_on * 20.0 >= 200.0
    # After the latch every window is off for good.
    latch_tick = int(policy.latched_at_ms / 20.0)
    assert all(a is None for a in applied[latch_tick + 1 :])
    assert result.stats.charge > 0.0
    trend = result.stats.synchrony_trend()
    assert trend["before"]["windows"] == first_on


def test_a_policy_that_raises_is_treated_as_invalid_output():
    clock = FakeClock()

    class Broken:
        name = "broken"
        required_fields = ()
        action_map = None

        def reset(self):
            pass

        def act(self, fields, t_model_ms):
            raise RuntimeError("policy bug")

    backend = ScriptedConnection(clock)
    loop, gov = make_loop(backend, policy=Broken(), clock=clock, ticks=10)
    result = loop.run()
    assert result.fault == "invalid_streak"
    assert gov.counts["invalid_action"] == 3
    assert all(sp.amplitude == 0.0 for sp in backend.sent)


def test_a_backend_refusal_mid_run_stops_without_retry():
    clock = FakeClock()

    class Refusing(ScriptedConnection):
        def step(self, setpoint, duration_ms, timeout_s):
            if len(self.sent) == 5:
                raise ProtocolError("[backend_fault] diverged", "backend_fault")
            return super().step(setpoint, duration_ms, timeout_s)

    backend = Refusing(clock)
    loop, gov = make_loop(backend, clock=clock, ticks=20)
    result = loop.run()
    assert (result.fault, result.ticks) == ("backend_error", 5)
    assert backend.stop_reasons == ["backend_error"]
    assert gov.latched == "backend_error"


def test_a_stop_after_the_recording_closed_is_logged_not_raised(tmp_path, logs):
    """The at-exit e-stop may run after the recording was closed (e.g. the backend never
    answered): it must still stop the backend and must not raise."""
    from controller.recorder import SessionRecorder

    clock = FakeClock()
    backend = ScriptedConnection(clock, latency_s=lambda k: 0.005)
    loop, _gov = make_loop(backend, clock=clock, ticks=3)
    recorder = SessionRecorder(tmp_path / "s.nlrec", {"tool": "test"})
    recorder.close()
    loop.recorder = recorder
    loop.stop_backend("exit")
    assert backend.stop_reasons == ["exit"]
    assert any(e["event"] == "stop_not_recorded" for e in logs)
