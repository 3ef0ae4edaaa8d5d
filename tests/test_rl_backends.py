"""The environment runs on every backend: a model is a backend connection.

The simulator in process, the serial bridge to the device emulator (physical envelope, real
pty, the emulated patient in real time) and a replay of a recorded session (the recorded
observations, in order); over ZeroMQ in tests/test_rl_remote.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from controller.backends.base import BackendConnection
from controller.backends.inprocess import InProcessConnection
from controller.envs import DBSEnv, SimConfig
from controller.envs.dbs import action_map_for
from controller.envs.models import LocalNetworkModel
from controller.envs.spaces import scale_observation
from controller.replay.backend import ReplayBackend, replay_steps
from controller.replay.session import load_session
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


def test_environment_over_the_serial_bridge_and_the_device_emulator() -> None:
    with device_model() as build:
        env = DBSEnv(device_config(), model_class=build)
        try:
            assert env.backend_info.kind == "serial"
            assert env.backend_info.domain == "physical"
            assert not env.backend_info.lockstep
            # The agent's actions span the device envelope's own ranges (mA, Hz, µs).
            amap = action_map_for(env.envelope)
            assert amap.high[0] == env.envelope.amplitude_max
            obs, info = env.reset(seed=1)
            assert obs.shape == (6,)
            assert 0.0 <= info["synchrony"] <= 1.0
            terminal, amplitudes = False, []
            while not terminal:
                _, reward, terminal, _, info = env.step(np.ones(3, dtype=np.float32))
                amplitudes.append(info["setpoint"]["amplitude"])
                assert np.isfinite(reward)
            # The governor's soft start and ramp rate reach the device: the amplitude climbs.
            assert 0.0 < amplitudes[0] < amplitudes[-1] <= env.envelope.amplitude_max
            assert 0.0 <= info["r_tail"] <= 1.0
            assert info["total_charge_mv_ms"] > 0.0  # the tissue's delivered model charge
        finally:
            env.close()


def test_environment_refuses_an_envelope_of_the_wrong_domain_for_the_backend() -> None:
    with device_model() as build, pytest.raises(Exception, match="'physical' envelope"):
        DBSEnv(sim_config(), model_class=build)  # a model envelope for a device


class AmplitudeOnly(gym.ActionWrapper):  # type: ignore[type-arg]
    """The agent sets the amplitude; rate and width stay at the middle of their ranges.

    A policy that switches the output off and on again with a new width or rate meets a
    device that still ramps the old output down and judges the new setting against the old
    one (SLEW_LIMIT), which the governor, whose output was off, does not; that mismatch is
    not what this training test is about.
    """

    def __init__(self, env: DBSEnv) -> None:
        super().__init__(env)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.array([float(action[0]), 0.0, 0.0], dtype=np.float32)


def test_a_short_ppo_training_run_against_the_device_emulator() -> None:
    pytest.importorskip("stable_baselines3")
    import torch
    from stable_baselines3 import PPO

    torch.manual_seed(0)
    torch.set_num_threads(1)  # leave the other core to the emulator's real-time thread
    with device_model() as build:
        env = DBSEnv(device_config(100.0, 16), model_class=build)
        try:
            # 16 steps of 100 ms per episode (about 1.9 s of real time with lead-in and tail;
            # the device's lease is 2.5 periods, kept alive on a busy host); each rollout
            # ends on an episode end, so the policy update runs while the device's output is
            # off (no lease to keep alive meanwhile).
            agent = PPO("MlpPolicy", AmplitudeOnly(env), n_steps=32, batch_size=32, n_epochs=2,
                        seed=0, policy_kwargs={"net_arch": [16]}, device="cpu",
                        verbose=0)  # fmt: skip
            agent.learn(total_timesteps=256)
            assert agent.num_timesteps >= 256
            obs, _ = env.reset(seed=2)
            action, _ = agent.predict(obs, deterministic=True)
            _, reward, _, _, _ = env.step(AmplitudeOnly(env).action(action))
            assert np.isfinite(reward)
        finally:
            env.close()
