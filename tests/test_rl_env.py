"""The gymnasium environment: API conformance, seeding, envelope, observations, rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from structlog.testing import capture_logs

import controller.envs  # noqa: F401 - registers the id
from controller.envs import ENV_ID, DBSEnv, FTSTSEnv, SimConfig
from controller.envs.spaces import FEATURES, scale_observation, unscale_observation
from core.errors import ConfigError, SafetyFaultError

SMALL = {"n_scale": 0.05}  # 80 E / 20 I


def small_config(**changes: object) -> SimConfig:
    base = {"control_period_ms": 100.0, "onset_ms": 200.0, "controlled_s": 0.4, "tail_s": 0.2}
    base.update(changes)
    return SimConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def env() -> FTSTSEnv:
    e = FTSTSEnv(small_config(), model_params=SMALL)
    yield e
    e.close()


def test_registered_and_passes_gymnasium_checker() -> None:
    e = gym.make(ENV_ID, sim_config=small_config(), model_params=SMALL)
    try:
        assert isinstance(e.unwrapped, FTSTSEnv)
        gym_check_env(e.unwrapped, skip_render_check=True)
    finally:
        e.close()


def test_passes_sb3_checker(env: FTSTSEnv) -> None:
    sb3_check_env(env, warn=True)


def test_spaces_are_the_seed_documents() -> None:
    e = FTSTSEnv(small_config(), model_params=SMALL)
    assert e.action_space.shape == (3,)
    assert np.all(e.action_space.low == -1.0)
    assert np.all(e.action_space.high == 1.0)
    assert e.observation_space.shape == (6,)
    assert [f.field for f in FEATURES] == [
        "synchrony", "mean_v_e_mv", "sd_v_e_mv", "mean_v_i_mv", "sd_v_i_mv", "weight_mv",
    ]  # fmt: skip
    e.close()


def rollout(e: DBSEnv, seed: int, actions: np.ndarray) -> tuple[np.ndarray, list[float]]:
    obs, _ = e.reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, r, term, _, _ = e.step(a)
        seen.append(obs)
        rewards.append(float(r))
        if term:
            break
    return np.array(seen), rewards


def test_same_seed_same_episode_different_seed_differs() -> None:
    rng = np.random.default_rng(7)
    actions = rng.uniform(-1, 1, size=(4, 3)).astype(np.float32)
    a = FTSTSEnv(small_config(), model_params=SMALL)
    b = FTSTSEnv(small_config(), model_params=SMALL)
    try:
        obs_a, rew_a = rollout(a, 11, actions)
        obs_b, rew_b = rollout(b, 11, actions)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert rew_a == rew_b
        obs_c, _ = rollout(b, 12, actions)
        assert not np.array_equal(obs_a, obs_c)
    finally:
        a.close()
        b.close()


def test_unseeded_resets_follow_the_first_seed() -> None:
    a = FTSTSEnv(small_config(), model_params=SMALL)
    b = FTSTSEnv(small_config(), model_params=SMALL)
    try:
        a.reset(seed=3)
        b.reset(seed=3)
        _, info_a = a.reset()
        _, info_b = b.reset()
        assert info_a["network_seed"] == info_b["network_seed"] != 3
        _, info = a.reset(options={"network_seed": 99})
        assert info["network_seed"] == 99
    finally:
        a.close()
        b.close()


def test_weight_feature_is_the_real_mean_weight(env: FTSTSEnv) -> None:
    obs, info = env.reset(seed=1)
    net = env.model.network  # type: ignore[attr-defined]
    assert obs[5] * 290.0 == pytest.approx(net.weight_mv, rel=1e-6)
    obs, _, _, _, info = env.step(np.zeros(3, dtype=np.float32))
    assert obs[5] * 290.0 == pytest.approx(net.weight_mv, rel=1e-6)
    assert info["weight_mv"] == pytest.approx(net.weight_mv)


def test_episode_terminates_after_controlled_period_and_tail(env: FTSTSEnv) -> None:
    env.reset(seed=2)
    steps = 0
    term = False
    while not term:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        steps += 1
        assert trunc is False
    assert steps == env.sim_config.n_steps == 4
    assert info["t_ms"] == pytest.approx(200.0 + 400.0 + 200.0)
    assert 0.0 <= info["r_tail"] <= 1.0
    with pytest.raises(ConfigError, match="reset"):
        env.step(np.zeros(3, dtype=np.float32))


def test_actions_go_through_the_envelope(env: FTSTSEnv) -> None:
    env.reset(seed=4)
    # Full amplitude requested at once: the ramp (1000 mV/s) allows 100 mV per 100 ms period.
    _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0], dtype=np.float32))
    assert info["setpoint"]["amplitude"] == pytest.approx(100.0)
    assert "ramp_up" in info["findings"]
    # 1 < |a| <= 2 is clamped to the action range and logged, not silently repaired.
    with capture_logs() as logs:
        _, _, _, _, info = env.step(np.array([0.0, 1.5, 0.0], dtype=np.float32))
    assert "action_out_of_range" in info["findings"]
    assert any(e["event"] == "envelope_clamp" for e in logs)
    assert info["setpoint"]["frequency_hz"] <= 180.0


def test_non_finite_action_is_a_fault(env: FTSTSEnv) -> None:
    env.reset(seed=5)
    with capture_logs() as logs, pytest.raises(SafetyFaultError, match="finite action"):
        env.step(np.array([np.nan, 0.0, 0.0], dtype=np.float32))
    assert logs[-1]["event"] == "action_fault"


def test_observation_scaling_clamps_with_a_log_and_refuses_nan() -> None:
    fields = {f.field: (f.low + f.high) / 2 for f in FEATURES}
    np.testing.assert_allclose(scale_observation(fields), 0.5, atol=1e-6)
    assert unscale_observation(scale_observation(fields)) == pytest.approx(fields)
    fields["weight_mv"] = 300.0
    with capture_logs() as logs:
        obs = scale_observation(fields)
    assert obs[5] == 1.0
    assert logs[0]["event"] == "observation_clamped"
    assert "Expected weight_mv in [0.0, 290.0] mV, actual 300.0" in logs[0]["reason"]
    fields["synchrony"] = float("nan")
    with pytest.raises(SafetyFaultError, match="finite synchrony"):
        scale_observation(fields)


def test_render_rgb_array() -> None:
    e = FTSTSEnv(small_config(), model_params=SMALL, render_mode="rgb_array")
    try:
        e.reset(seed=1)
        e.step(np.zeros(3, dtype=np.float32))
        frame = e.render()
        assert frame is not None
        assert frame.dtype == np.uint8
        assert frame.ndim == 3
        assert frame.shape[2] == 3
        assert frame.std() > 0
    finally:
        e.close()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigError, match="render_mode"):
        FTSTSEnv(small_config(), model_params=SMALL, render_mode="video")
    with pytest.raises(ConfigError, match="control_period_ms to be a whole multiple of 20"):
        SimConfig(control_period_ms=30.0)
    with pytest.raises(ConfigError, match="polarity 'desync'"):
        FTSTSEnv(small_config(), model_params={**SMALL, "polarity": "sync"})
    e = FTSTSEnv(small_config(), model_params=SMALL)
    with pytest.raises(ConfigError, match="reset options"):
        e.reset(options={"bogus": 1})
    e.close()
