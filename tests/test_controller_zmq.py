"""The ZeroMQ backend adapter against the real simulator server process."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import structlog

from controller.backends.zmq import ZmqConnection
from controller.envelope.governor import SafetyGovernor
from controller.loop import ControlLoop, LoopSettings
from controller.policies.builtin import ConstantPolicy
from core.errors import ConfigError, SafetyLimitError
from protocol.backend import Backend, StepResult
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from protocol.process import spawn_local_backend
from protocol.schema import Capabilities, ParamSpec
from protocol.server import BackendServer

SIM = load_envelope("simulator")
T = 0.02


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def server():
    proc = spawn_local_backend(
        [sys.executable, "-m", "simulator.server"], "ipc", ready_timeout_s=120
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def logs():
    with structlog.testing.capture_logs() as logs:
        yield logs


def test_handshake_maps_roles_units_and_pins_extra_parameters(server):
    backend = ZmqConnection(server.address, timeout_s=10.0, options={"n_scale": 0.05})
    try:
        info = backend.hello("test")
        assert (info.kind, info.domain, info.supports_fast_pace) == ("sim", "model", True)
        assert "weight_mv" in info.observation_fields
        assert backend.configure(SIM, 20.0) == SIM.sha256()
        backend.reset(4)
        backend.step(
            Setpoint(amplitude=0.0, frequency_hz=1000 / 12, pulse_width_us=1000.0), 100.0, 5.0
        )  # the soft start: off first
        obs = backend.step(
            Setpoint(amplitude=100.0, frequency_hz=1000 / 12, pulse_width_us=1000.0), 20.0, 5.0
        )
        assert obs.seq == 2
        assert obs.t_model_ms == pytest.approx(120.0)
        assert obs.applied == Setpoint(
            amplitude=100.0, frequency_hz=1000 / 12, pulse_width_us=1000.0
        )
        assert obs.fields["charge_mv_ms"] > 0
        off = backend.step(
            Setpoint(amplitude=0.0, frequency_hz=1000 / 12, pulse_width_us=1000.0), 20.0, 5.0
        )
        assert off.applied is None
    finally:
        backend.close()
        backend.close()  # idempotent


def test_backend_refuses_a_setpoint_outside_the_configured_envelope(server):
    backend = ZmqConnection(server.address, timeout_s=10.0, options={"n_scale": 0.05})
    try:
        backend.hello("test")
        backend.configure(SIM, 20.0)
        backend.reset(1)
        with pytest.raises(SafetyLimitError, match=r"limit_exceeded|outside"):
            backend.step(
                Setpoint(amplitude=300.0, frequency_hz=83.0, pulse_width_us=1000.0), 20.0, 5.0
            )
    finally:
        backend.close()


def test_server_killed_mid_run_stops_the_loop_with_an_alarm(server, logs):
    backend = ZmqConnection(server.address, timeout_s=10.0, options={"n_scale": 0.05})

    class KillAt(ConstantPolicy):
        def act(self, fields, t_model_ms):
            if t_model_ms >= 400.0 and server.alive():
                server.stop()
            return super().act(fields, t_model_ms)

    gov = SafetyGovernor(SIM, T)
    loop = ControlLoop(
        backend,
        KillAt(Setpoint(amplitude=60.0, frequency_hz=83.0, pulse_width_us=1000.0)),
        gov,
        LoopSettings(duration_s=2.0),
    )
    try:
        result = loop.run()
    finally:
        backend.close()
    assert (result.end_reason, result.fault) == ("fault", "backend_unreachable")
    assert 20 <= result.ticks <= 22
    assert gov.latched == "backend_unreachable"
    assert any(e["event"] == "alarm_backend_unreachable" for e in logs)


class MicroampBackend(Backend):
    """A device-like backend speaking µA, served over real ZeroMQ sockets in a thread."""

    kind = "serial"

    def __init__(self) -> None:
        super().__init__(session_timeout_s=2.0)
        self.stimuli: list[dict[str, float] | None] = []
        self._t_ms = 0.0

    def capabilities(self) -> Capabilities:
        return Capabilities(
            stim_params=(
                ParamSpec("amplitude_ua", "uA", "amplitude", 0.0, 10_000.0),
                ParamSpec("frequency_hz", "Hz", "frequency", 2.0, 250.0),
                ParamSpec("pulse_width_us", "us", "pulse_width", 20.0, 450.0),
            ),
            # a device may forward its tissue model's own charge_mv_ms: it must never be
            # summed as the device's charge (µC)
            observation_fields=("impedance_ohm", "synchrony", "charge_mv_ms"),
            control_period_ms=20.0,
            min_duration_ms=1.0,
            max_duration_ms=1000.0,
            supports_spikes=False,
        )

    def _on_configure(self, options, control_period_ms):
        pass

    def _on_reset(self, seed):
        self._t_ms = 0.0
        return 0.0

    def _on_step(self, stimulus, duration_ms, want_spikes):
        self.stimuli.append(None if stimulus is None else dict(stimulus))
        self._t_ms += duration_ms
        fields = {"impedance_ohm": 1000.0, "synchrony": 0.3, "charge_mv_ms": 999.0}
        return StepResult(fields, self._t_ms)

    def _on_stop(self, reason):
        pass


@pytest.fixture
def microamp_server(tmp_path):
    backend = MicroampBackend()
    server = BackendServer(backend, f"ipc://{tmp_path / 'dev.sock'}")
    endpoint = server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield backend, endpoint
    finally:
        stop.set()
        thread.join(timeout=10)
        server.close()


def test_device_units_are_converted_and_fast_pace_is_refused(microamp_server):
    device, endpoint = microamp_server
    env = load_envelope("device")
    backend = ZmqConnection(endpoint, timeout_s=5.0)
    policy = ConstantPolicy(Setpoint(amplitude=1.0, frequency_hz=130.0, pulse_width_us=90.0))
    try:
        gov = SafetyGovernor(env, T)
        fast = ControlLoop(backend, policy, gov, LoopSettings(duration_s=0.1, pace="fast"))
        with pytest.raises(ConfigError, match="pace realtime for backend 'serial'"):
            fast.run()
    finally:
        backend.close()
    backend = ZmqConnection(endpoint, timeout_s=5.0)
    try:
        gov = SafetyGovernor(env, T)
        loop = ControlLoop(backend, policy, gov, LoopSettings(duration_s=0.5))
        result = loop.run()
    finally:
        backend.close()
    assert result.end_reason == "completed"
    assert result.info.domain == "physical"
    sent = [s for s in device.stimuli if s is not None]
    assert sent, "stimulation never started"
    # 0.5 mA/s ramp: 10 µA per 20 ms tick, sent in µA.
    assert sent[0]["amplitude_ua"] == pytest.approx(10.0)
    steps = np.diff([s["amplitude_ua"] for s in sent])
    assert np.all(steps <= 10.0 + 1e-6)
    assert all(s["frequency_hz"] == 130.0 and s["pulse_width_us"] == 90.0 for s in sent)
    # Charge accounting in µC: 2 phases × q × f × window, with q = mA × ms.
    expected = sum(2 * s["amplitude_ua"] / 1000 * 0.09 * 130 * 0.02 for s in sent)
    assert result.stats.charge == pytest.approx(expected, rel=1e-6)


def test_period_longer_than_half_the_session_timeout_is_refused(microamp_server):
    _, endpoint = microamp_server
    backend = ZmqConnection(endpoint, timeout_s=5.0)
    try:
        backend.hello("test")
        with pytest.raises(ConfigError, match=r"Expected --period-ms <= 1000 \(half"):
            backend.configure(load_envelope("device"), 1500.0)
    finally:
        backend.close()
