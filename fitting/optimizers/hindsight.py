"""Hindsight relabelling: turn every simulation pair into a supervised example for the policy.

Any simulated parameter set ``j`` whose features all computed defines a goal (its features as
targets); from any other simulated point ``i`` the ideal move is toward ``u_j``. So ``N``
simulations give ``N × (N − 1)`` (observation, action) pairs for free, where the observation is
exactly what :func:`fitting.optimizers.rl_env.observe` shows the agent at ``i`` facing goal
``j`` and the action is ``clip((u_j − u_i) / step_scale, −1, 1)``. Fitting the SAC actor to
these pairs (goal-conditioned supervised learning, as in GCSL) gives the agent a good start
before SAC fine-tunes it by interaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from fitting.features import resolve_feature
from fitting.measurements import Target
from fitting.objective import FAILURE_PENALTY, Evaluation
from fitting.optimizers.rl_env import Z_CLIP
from fitting.parameters import FloatArray

log = structlog.get_logger()


def _matrices(
    samples: Sequence[tuple[FloatArray, Evaluation]], template: Sequence[Target]
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    points = np.array([np.asarray(u, dtype=np.float64) for u, _ in samples])
    values = np.full((len(samples), len(template)), np.nan)
    for row, (_, evaluation) in enumerate(samples):
        for col, target in enumerate(template):
            value = evaluation.values.get(target.key)
            if value is not None and evaluation.statuses.get(target.key) == "ok":
                values[row, col] = value
    return points, values, np.all(np.isfinite(values), axis=1)


def _stds(values: FloatArray, template: Sequence[Target], std_fraction: float) -> FloatArray:
    stds = np.empty_like(values)
    for col, target in enumerate(template):
        alias = resolve_feature(target.feature)
        if alias.absolute_std is not None:
            stds[:, col] = alias.absolute_std
        else:
            stds[:, col] = np.maximum(np.abs(values[:, col]) * std_fraction, alias.min_std)
    return stds


def relabelled_pairs(
    samples: Sequence[tuple[FloatArray, Evaluation]],
    template: Sequence[Target],
    rng: np.random.Generator,
    count: int,
    step_scale: float,
    std_fraction: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``count`` random (observation, action) pairs from the simulated ``samples``."""
    points, values, complete = _matrices(samples, template)
    goals = np.flatnonzero(complete)
    if goals.size < 2:
        return np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)
    stds = _stds(values, template, std_fraction)
    start = rng.integers(len(samples), size=count)
    goal = goals[rng.integers(goals.size, size=count)]
    failed = ~np.isfinite(values[start])
    z = (np.nan_to_num(values[start]) - values[goal]) / stds[goal]
    z = np.where(failed, FAILURE_PENALTY, np.clip(z, -FAILURE_PENALTY, FAILURE_PENALTY))
    near = np.clip(z, -Z_CLIP, Z_CLIP) / Z_CLIP
    far = np.sign(z) * np.log1p(np.abs(z)) / np.log1p(FAILURE_PENALTY)
    progress = 2.0 * rng.random((count, 1)) - 1.0
    obs = np.concatenate(
        [2.0 * points[start] - 1.0, near, far, 2.0 * failed - 1.0, progress], axis=1
    )
    actions = np.clip((points[goal] - points[start]) / step_scale, -1.0, 1.0)
    return np.clip(obs, -1, 1).astype(np.float32), actions.astype(np.float32)


def pretrain_actor(
    model: Any,
    samples: Sequence[tuple[FloatArray, Evaluation]],
    template: Sequence[Target],
    rng: np.random.Generator,
    step_scale: float,
    std_fraction: float,
    gradient_steps: int = 4000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
) -> float:
    """Fit the SAC actor's deterministic action to hindsight-relabelled pairs.

    Adam at ``learning_rate`` for the first three quarters of the steps, then a tenth of it.

    Returns:
        The final mean squared error on the last batches (for logging).
    """
    import torch

    # One thread: small networks gain nothing from more, and the CPU is shared with the
    # simulation workers.
    torch.set_num_threads(1)
    actor = model.policy.actor
    optimizer = torch.optim.Adam(actor.parameters(), lr=learning_rate)
    obs, actions = relabelled_pairs(
        samples, template, rng, gradient_steps * batch_size, step_scale, std_fraction
    )
    if obs.size == 0:
        log.warning("hindsight_pretraining_skipped", reason="fewer than 2 complete simulations")
        return float("nan")
    obs_t = torch.as_tensor(obs)
    act_t = torch.as_tensor(actions)
    losses = []
    actor.train()
    for step in range(gradient_steps):
        if step == (3 * gradient_steps) // 4:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate / 10
        batch = slice(step * batch_size, (step + 1) * batch_size)
        predicted = actor(obs_t[batch], deterministic=True)
        loss = torch.nn.functional.mse_loss(predicted, act_t[batch])
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(float(loss.detach()))
    actor.eval()
    final = float(np.mean(losses[-50:]))
    log.info("hindsight_pretraining_done", pairs=len(obs), final_mse=round(final, 4))
    return final
