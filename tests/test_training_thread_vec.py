"""ThreadVecEnv: environments stepped at once on threads, with DummyVecEnv's results."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from controller.envs import FTSTSEnv, SimConfig
from controller.train_cli import main as train_main
from controller.training.thread_vec import ThreadVecEnv
from controller.training.vec import make_training_env
from core.errors import ConfigError

#: N = 200, 20 ms control: episodes of 8 steps, so 20 vector steps cross two episode ends
SHORT = SimConfig(control_period_ms=20.0, onset_ms=20.0, controlled_s=0.16, tail_s=0.1)


def small_env() -> FTSTSEnv:
    return FTSTSEnv(SHORT, model_params={"n_scale": 0.1})


def rollout(venv: Any, steps: int) -> list[tuple[Any, ...]]:
    venv.seed(11)
    out: list[tuple[Any, ...]] = [(venv.reset(),)]
    actions = np.random.default_rng(4).uniform(-1.0, 1.0, (steps, venv.num_envs, 3))
    for a in actions.astype(np.float32):
        obs, rewards, dones, infos = venv.step(a)
        terminal = [i.get("terminal_observation") for i in infos]
        out.append((obs, rewards, dones, terminal, [i["t_ms"] for i in infos]))
    return out


def test_the_same_observations_rewards_and_episode_ends_as_dummy_vec_env() -> None:
    dummy = DummyVecEnv([small_env] * 3)
    threaded = ThreadVecEnv([small_env] * 3, workers=2)
    try:
        a, b = rollout(dummy, 20), rollout(threaded, 20)
    finally:
        dummy.close()
        threaded.close()
    assert any(any(step[2]) for step in a[1:]), "expected the rollout to cross an episode end"
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        if len(x) > 1:
            np.testing.assert_array_equal(x[1], y[1])
            np.testing.assert_array_equal(x[2], y[2])
            for tx, ty in zip(x[3], y[3], strict=True):
                assert (tx is None) == (ty is None)
                if tx is not None:
                    np.testing.assert_array_equal(tx, ty)
            assert x[4] == y[4]


class _Meeting(gym.Env[np.ndarray, np.ndarray]):
    """Steps only when every environment of the vector is inside ``step`` at the same time."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, barrier: threading.Barrier) -> None:
        self.barrier = barrier
        self.k = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
        self.k = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.barrier.wait()  # times out (BrokenBarrierError) unless the others arrive too
        self.k += 1
        return np.full(1, self.k, np.float32), float(self.k), False, False, {}


def test_the_environments_step_at_the_same_time() -> None:
    barrier = threading.Barrier(2, timeout=10.0)
    venv = ThreadVecEnv([lambda: _Meeting(barrier), lambda: _Meeting(barrier)])
    try:
        venv.reset()
        venv.step(np.zeros((2, 1), np.float32))
        obs, rewards, _, _ = venv.step(np.zeros((2, 1), np.float32))
    finally:
        venv.close()
    np.testing.assert_array_equal(rewards, [2.0, 2.0])
    np.testing.assert_array_equal(obs, [[2.0], [2.0]])
    # one after the other, the first environment waits alone and the barrier breaks
    alone = threading.Barrier(2, timeout=0.2)
    serial = ThreadVecEnv([lambda: _Meeting(alone), lambda: _Meeting(alone)], workers=1)
    try:
        serial.reset()
        with pytest.raises(threading.BrokenBarrierError):
            serial.step(np.zeros((2, 1), np.float32))
    finally:
        serial.close()


class _Failing(gym.Env[np.ndarray, np.ndarray]):
    """Counts its steps and raises ``ValueError`` at step ``fail_at``."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, name: str, fail_at: int | None = None) -> None:
        self.name = name
        self.fail_at = fail_at
        self.k = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
        self.k = 0
        return np.zeros(1, np.float32), {"seed": seed, "options": options}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.k += 1
        if self.k == self.fail_at:
            raise ValueError(f"{self.name} fails at step {self.k}")
        return np.full(1, self.k, np.float32), float(self.k), False, False, {}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failure_is_raised_after_every_environment_has_stepped(workers: int) -> None:
    envs = [_Failing("env0", fail_at=2), _Failing("env1"), _Failing("env2", fail_at=2)]
    venv = ThreadVecEnv([lambda e=e: e for e in envs], workers=workers)  # type: ignore[misc]
    try:
        venv.reset()
        venv.step(np.zeros((3, 1), np.float32))
        with pytest.raises(ValueError, match="env0 fails at step 2"):  # the lowest index's
            venv.step(np.zeros((3, 1), np.float32))
        assert [e.k for e in envs] == [2, 2, 2]  # the others still took their step
    finally:
        venv.close()


def test_reset_passes_each_environment_its_seed_and_options() -> None:
    envs = [_Failing("a"), _Failing("b")]
    venv = ThreadVecEnv([lambda e=e: e for e in envs])  # type: ignore[misc]
    try:
        venv.seed(7)
        venv.set_options([{"x": 1}, {"x": 2}])
        venv.reset()
        assert venv.reset_infos == [{"seed": 7, "options": {"x": 1}},
                                    {"seed": 8, "options": {"x": 2}}]  # fmt: skip
        venv.reset()  # seeds and options are used once
        assert venv.reset_infos == [{"seed": None, "options": None}] * 2
    finally:
        venv.close()


def test_workers_can_change_between_steps_within_the_pool() -> None:
    venv = ThreadVecEnv([lambda: _Failing("a"), lambda: _Failing("b")], workers=2)
    try:
        venv.reset()
        venv.workers = 1
        _, rewards, _, _ = venv.step(np.zeros((2, 1), np.float32))
        np.testing.assert_array_equal(rewards, [1.0, 1.0])
        with pytest.raises(ConfigError, match=r"Expected workers in \[1, 2\].*actual 3"):
            venv.workers = 3
        assert venv.workers == 1
    finally:
        venv.close()


def test_environments_that_plot_to_a_window_are_refused() -> None:
    def windowed() -> FTSTSEnv:
        return FTSTSEnv(SHORT, render_mode="human", model_params={"n_scale": 0.1})

    with pytest.raises(ConfigError, match=r"without render_mode='human'.*index \[0, 1\]"):
        ThreadVecEnv([windowed, windowed])


@pytest.mark.parametrize("workers", [0, -1, True, 1.5])
def test_workers_must_be_a_positive_integer(workers: Any) -> None:
    with pytest.raises(ConfigError, match="Expected workers to be an integer >= 1"):
        ThreadVecEnv([small_env], workers=workers)


def test_close_is_idempotent_and_a_closed_vector_refuses_to_step() -> None:
    barrier = threading.Barrier(1, timeout=1.0)
    venv = ThreadVecEnv([lambda: _Meeting(barrier)])
    venv.reset()
    venv.close()
    venv.close()
    with pytest.raises(ConfigError, match="Expected an open ThreadVecEnv, actual closed"):
        venv.step(np.zeros((1, 1), np.float32))


def test_make_training_env_builds_threads_and_refuses_an_unknown_kind() -> None:
    venv = make_training_env(2, 0, SHORT, {"n_scale": 0.1}, None, "threads", 0.99)
    try:
        assert isinstance(venv, VecNormalize)
        assert isinstance(venv.venv.venv, ThreadVecEnv)  # VecNormalize(VecMonitor(...))
        assert venv.reset().shape == (2, venv.observation_space.shape[0])
    finally:
        venv.close()
    with pytest.raises(ConfigError, match=r"Expected vec in .*actual 'forks'"):
        make_training_env(1, 0, SHORT, {"n_scale": 0.1}, None, "forks", 0.99)
    with pytest.raises(ConfigError, match=r"Expected --threads 1 with --vec threads.*actual 2"):
        make_training_env(2, 0, SHORT, {"n_scale": 0.1, "threads": 2}, None, "threads", 0.99)


def test_train_refuses_threaded_environments_on_several_threads_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--vec", "threads", "--threads", "2", "--out", "unused"])
    assert exit_info.value.code == 2
    assert "Expected --threads 1 with --vec threads" in capsys.readouterr().err


def test_train_runs_with_threaded_environments(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--n-scale", "0.05", "--control-period-ms", "100", "--onset-ms", "100",
            "--controlled-s", "0.5", "--tail-s", "0.1", "--n-envs", "2", "--vec", "threads",
            "--n-steps", "32", "--batch-size", "32", "--total-timesteps", "64", "--seed", "2",
            "--out", str(out)]  # fmt: skip
    assert train_main(args) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["vec"] == "threads"
    assert summary["n_envs"] == 2
    assert summary["timesteps"] >= 64
