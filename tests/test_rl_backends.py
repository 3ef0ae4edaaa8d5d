"""The environment runs on every backend: a model is a backend connection.

The simulator in process and a replay of a recorded session (the recorded observations, in
order); over ZeroMQ in tests/test_rl_remote.py. The serial bridge to the device emulator
refuses the environment: it observes fields no implant measures (``protocol.observables``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.backends.base import BackendConnection
from controller.backends.inprocess import InProcessConnection
from controller.envs import DBSEnv, SimConfig
from controller.envs.models import LocalNetworkModel
from controller.envs.spaces import scale_observation
from controller.replay.backend import ReplayBackend, replay_steps
from controller.replay.session import load_session
from core.errors import ConfigError
from drivers.bridge import SerialBackend
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import running_emulator
from drivers.tissue import Tissue, make_network

GOLDEN = Path(__file__).parent / "data" / "replay" / "sim_ftsts_fast.nlrec"


def sim_config(**changes: Any) -> SimConfig:
    base: dict[str, Any] = {
        "control_period_ms": 20.0,
        "onset_ms": 100.0,
        "controlled_s": 0.2,
        "tail_s": 0.1,
    }
    base.update(changes)
    return SimConfig(**base)


def episode(env: DBSEnv, seed: int = 5) -> tuple[np.ndarray, list[float], dict[str, Any]]:
    """One whole episode of seeded random actions; observations, rewards, last info."""
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    seen, rewards = [obs], []
    terminal, info = False, {}
    while not terminal:
        action = rng.uniform(-1, 1, 3).astype(np.float32)
        obs, reward, terminal, _, info = env.step(action)
        seen.append(obs)
        rewards.append(float(reward))
    return np.array(seen), rewards, info


def test_the_default_model_is_the_simulator_in_process_behind_the_protocol() -> None:
    env = DBSEnv(sim_config(), model_params={"n_scale": 0.05})
    try:
        assert isinstance(env.model, LocalNetworkModel)
        assert isinstance(env.model, InProcessConnection)
        assert isinstance(env.model, BackendConnection)
        assert env.backend_info.kind == "sim"
        assert env.backend_info.supports_spikes
        _, rewards, info = episode(env)
        assert len(rewards) == env.sim_config.n_steps
        assert 0.0 <= info["r_tail"] <= 1.0
    finally:
        env.close()


def test_environment_over_a_replay_sees_the_recorded_observations() -> None:
    session = load_session(GOLDEN)
    recorded = replay_steps(session)
    cfg = sim_config(onset_ms=100.0, controlled_s=0.4, tail_s=0.2)
    env = DBSEnv(cfg, model_class=lambda: InProcessConnection(ReplayBackend(session)))
    try:
        assert env.backend_info.kind == "replay"
        assert not env.backend_info.supports_spikes
        assert env.backend_info.max_step_ms == 20.0  # the lead-in is served period by period
        obs, _ = env.reset(seed=0)
        lead_in = round(cfg.onset_ms / cfg.control_period_ms)  # windows served by reset
        np.testing.assert_array_equal(obs, scale_observation(recorded[lead_in - 1].fields))
        obs, _, _, _, info = env.step(np.ones(3, dtype=np.float32))
        np.testing.assert_array_equal(obs, scale_observation(recorded[lead_in].fields))
        # A replay delivers nothing: the charge counted is what the setpoint commands.
        sp = info["setpoint"]
        commanded = 2.0 * sp["amplitude"] * sp["pulse_width_us"] / 1000.0 * sp["frequency_hz"]
        assert info["charge_mv_ms"] == pytest.approx(commanded * 0.02)
        terminal = False
        while not terminal:
            _, _, terminal, _, info = env.step(np.zeros(3, dtype=np.float32))
        tail = recorded[lead_in + cfg.n_steps : lead_in + cfg.n_steps + 10]
        assert info["r_tail"] == pytest.approx(np.mean([s.fields["synchrony"] for s in tail]))
    finally:
        env.close()


@contextmanager
def device_model() -> Iterator[type[Any]]:
    """The device emulator (with an emulated patient) on a pty, behind the serial bridge."""
    tissue = Tissue(make_network(80, 20), window_ms=20.0, seed=3)
    with running_emulator(tissue=tissue) as emu:

        def build() -> InProcessConnection:
            driver = SerialStimulator(emu.port.url, ack_timeout_s=0.2, link_timeout_s=2.0)
            bridge = SerialBackend(driver, session_timeout_s=60.0, step_mode="window")
            return InProcessConnection(bridge, timeout_s=5.0)

        yield build  # type: ignore[misc]


def device_config(period_ms: float = 100.0, steps: int = 8) -> SimConfig:
    """The device envelope; one period of lead-in, ``steps`` controlled, two of tail."""
    return SimConfig(control_period_ms=period_ms, onset_ms=period_ms,
                     controlled_s=round(steps * period_ms / 1000.0, 6),
                     tail_s=round(2 * period_ms / 1000.0, 6), envelope="device")  # fmt: skip


def test_environment_over_the_serial_bridge_is_refused_for_its_unobservable_features() -> None:
    """The environment observes the weight and the all-cell R: no implant senses them.

    A device's STATUS (device protocol version 2) carries only measurable features, so the
    handshake refuses the environment on the serial bridge, naming what it reads that an
    implant cannot measure, before anything is armed.
    """
    with device_model() as build:
        with pytest.raises(ConfigError) as info:
            DBSEnv(device_config(), model_class=build)
        message = str(info.value)
        assert "Expected the environment to read only fields an implant can measure" in message
        assert "'weight_mv'" in message
        assert "'synchrony'" in message
        assert "measurable fields: ['charge_mv_ms'," in message


def test_environment_refuses_an_envelope_of_the_wrong_domain_for_the_backend() -> None:
    with pytest.raises(ConfigError, match="Expected a 'model' envelope for backend 'sim'"):
        DBSEnv(sim_config(envelope="device"), model_params={"n_scale": 0.05})
