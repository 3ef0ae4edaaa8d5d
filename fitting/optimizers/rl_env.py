"""A gymnasium environment in which an agent fits parameters by adjusting them step by step.

* **Observation** (all in [-1, 1]): the current parameters (unit cube mapped to [-1, 1]), the
  signed z-score of every target twice — clipped to ±5 and divided by 5 (fine resolution near a
  fit) and as ``sign(z)·log(1+|z|)/log(251)`` (resolution far away) — a failure flag per target,
  and the fraction of the episode's steps used.
* **Action**: ``Box(-1, 1)^n``; the parameters move by ``step_scale × action`` in the unit cube
  (that is, multiplicatively for log-scaled parameters), clipped to the bounds.
* **Reward**: the drop in ``log(1 + score)`` (score = weighted mean ``|z|``), minus a small cost
  per simulation, plus a bonus when every ``|z| <= k`` (which also ends the episode).
* **Episode**: a task (targets plus a start point) is drawn by ``task_sampler``; episodes are
  truncated after ``max_steps`` simulations.

Each step costs one simulation through the ``evaluate`` callable (usually the budgeted engine).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from fitting.measurements import Target
from fitting.objective import FAILURE_PENALTY, Evaluation, rescore
from fitting.parameters import FloatArray

ObsArray = npt.NDArray[np.float32]

Z_CLIP = 5.0
STEP_COST = 0.02
SUCCESS_BONUS = 2.0


@dataclass(frozen=True)
class Task:
    """One episode's problem.

    Attributes:
        targets: Targets to fit (keys in the environment's order).
        start_u: Start point in the unit cube.
        start_evaluation: The start point's evaluation if already known (saves a simulation).
    """

    targets: tuple[Target, ...]
    start_u: FloatArray
    start_evaluation: Evaluation | None = None


def observe(
    u: FloatArray, evaluation: Evaluation, keys: Sequence[str], step_fraction: float
) -> ObsArray:
    """The observation vector for parameters ``u`` and their (scored) evaluation."""
    z = np.array([evaluation.z[k] for k in keys], dtype=np.float64)
    failed = np.array([0.0 if evaluation.statuses[k] == "ok" else 1.0 for k in keys])
    z = np.where(failed > 0, FAILURE_PENALTY, z)
    near = np.clip(z, -Z_CLIP, Z_CLIP) / Z_CLIP
    far = np.sign(z) * np.log1p(np.abs(z)) / np.log1p(FAILURE_PENALTY)
    parts = [2.0 * u - 1.0, near, far, 2.0 * failed - 1.0, [2.0 * step_fraction - 1.0]]
    obs: ObsArray = np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)
    return obs


def reward_for(previous: Evaluation, current: Evaluation, k: float) -> float:
    """Drop in ``log(1 + score)`` minus the step cost, plus the success bonus."""
    reward = float(np.log1p(previous.score) - np.log1p(current.score)) - STEP_COST
    if current.reproduces(k):
        reward += SUCCESS_BONUS
    return reward


def _info(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "score": evaluation.score,
        "max_abs_z": evaluation.max_abs_z,
        "status": evaluation.status,
        "params": dict(evaluation.params),
    }


class FitEnv(gym.Env[ObsArray, ObsArray]):
    """Parameter fitting as a sequential decision problem.

    Args:
        dim: Number of parameters.
        keys: Target keys (``stimulus/feature``) in observation order.
        evaluate: Evaluates unit-cube points (one simulation each).
        task_sampler: Draws a :class:`Task` from a seeded generator.
        k: Acceptance threshold on every ``|z|``.
        step_scale: Largest move per step in the unit cube.
        max_steps: Simulations per episode before truncation.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium class attribute)

    def __init__(
        self,
        dim: int,
        keys: Sequence[str],
        evaluate: Callable[[Sequence[FloatArray]], list[Evaluation]],
        task_sampler: Callable[[np.random.Generator], Task],
        k: float = 2.0,
        step_scale: float = 0.2,
        max_steps: int = 25,
    ) -> None:
        self.dim = dim
        self.keys = list(keys)
        self._evaluate = evaluate
        self._sample = task_sampler
        self.k = k
        self.step_scale = step_scale
        self.max_steps = max_steps
        obs_dim = dim + 3 * len(self.keys) + 1
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (dim,), np.float32)
        self._targets: tuple[Target, ...] = ()
        self._u = np.full(dim, 0.5)
        self._evaluation: Evaluation | None = None
        self._steps = 0

    def _score(self, evaluation: Evaluation) -> Evaluation:
        return rescore(evaluation, self._targets)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsArray, dict[str, Any]]:
        """Draw a task and observe its start point."""
        super().reset(seed=seed)
        task = self._sample(self.np_random)
        self._targets = task.targets
        self._u = np.clip(np.asarray(task.start_u, dtype=np.float64), 0.0, 1.0)
        start = task.start_evaluation or self._evaluate([self._u])[0]
        self._evaluation = self._score(start)
        self._steps = 0
        return observe(self._u, self._evaluation, self.keys, 0.0), _info(self._evaluation)

    def step(self, action: ObsArray) -> tuple[ObsArray, float, bool, bool, dict[str, Any]]:
        """Move the parameters, simulate, and reward the drop in error."""
        if self._evaluation is None:
            raise gym.error.ResetNeeded("Expected reset() before step(), actual step() first")
        move = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) * self.step_scale
        self._u = np.clip(self._u + move, 0.0, 1.0)
        current = self._score(self._evaluate([self._u])[0])
        reward = reward_for(self._evaluation, current, self.k)
        self._evaluation = current
        self._steps += 1
        terminated = current.reproduces(self.k)
        truncated = self._steps >= self.max_steps and not terminated
        obs = observe(self._u, current, self.keys, self._steps / self.max_steps)
        return obs, reward, terminated, truncated, _info(current)
