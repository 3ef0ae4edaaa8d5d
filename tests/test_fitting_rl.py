"""Hindsight relabelling and policy pre-training on a small analytic stand-in for the simulator.

The stand-in maps parameters linearly to two features, so these tests run in a second and check
the learning machinery itself; the real-NEURON RL tests are in test_fitting_engine.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from fitting.features import STATUS_NO_SPIKE, STATUS_OK, FeatureResult
from fitting.measurements import Target
from fitting.objective import Evaluation, score_features
from fitting.optimizers.hindsight import pretrain_actor, relabelled_pairs
from fitting.optimizers.rl_env import FitEnv, Task, observe
from fitting.synthetic import targets_from_evaluation

TEMPLATE = (Target("p", "input_resistance", 10.0, 1.0), Target("p", "ap_amplitude", 70.0, 3.0))
MIXING = np.array([[20.0, 5.0], [-10.0, 40.0]])


def linear_evaluation(u: np.ndarray, fail_spikes: bool = False) -> Evaluation:
    values = MIXING @ np.asarray(u) + np.array([5.0, 50.0])
    results = {
        "p/input_resistance": FeatureResult("input_resistance", float(values[0]), STATUS_OK),
        "p/ap_amplitude": FeatureResult("ap_amplitude", None, STATUS_NO_SPIKE)
        if fail_spikes
        else FeatureResult("ap_amplitude", float(values[1]), STATUS_OK),
    }
    return score_features({"a.x": float(u[0]), "a.y": float(u[1])}, TEMPLATE, results)


def samples(count: int, seed: int = 0) -> list[tuple[np.ndarray, Evaluation]]:
    rng = np.random.default_rng(seed)
    return [(u, linear_evaluation(u)) for u in rng.random((count, 2))]


def test_relabelled_pairs_match_what_the_agent_observes() -> None:
    data = samples(2)
    obs, actions = relabelled_pairs(data, TEMPLATE, np.random.default_rng(1), 50, 0.2, 0.05)
    assert obs.shape == (50, 2 + 3 * 2 + 1)
    assert actions.shape == (50, 2)
    (u0, e0), (u1, e1) = data
    goal_1 = targets_from_evaluation(e1, TEMPLATE, 0.05)
    assert goal_1 is not None
    from fitting.objective import rescore

    expected = observe(u0, rescore(e0, goal_1), [t.key for t in TEMPLATE], 0.0)
    rows = [i for i in range(50) if np.allclose(obs[i, :2], 2 * u0 - 1) and np.any(actions[i] != 0)]
    assert rows, "at least one pair from sample 0 toward sample 1"
    np.testing.assert_allclose(obs[rows[0], :-1], expected[:-1], atol=1e-6)
    np.testing.assert_allclose(actions[rows[0]], np.clip((u1 - u0) / 0.2, -1, 1), atol=1e-6)


def test_failed_starts_are_flagged_and_never_goals() -> None:
    data = [*samples(3), (np.array([0.5, 0.5]), linear_evaluation(np.array([0.5, 0.5]), True))]
    obs, actions = relabelled_pairs(data, TEMPLATE, np.random.default_rng(2), 400, 0.2, 0.05)
    failed_rows = obs[:, 2 + 2 * 2 + 1] > 0  # failure flag of ap_amplitude
    assert failed_rows.any()
    assert np.all(obs[failed_rows, 2 + 1] == 1.0)  # z clipped at +5 → 1
    starts = (obs[:, :2] + 1.0) / 2.0
    unclipped = np.all(np.abs(actions) < 1.0, axis=1)
    goals = starts[unclipped] + actions[unclipped] * 0.2
    failed_point = np.array([0.5, 0.5])
    assert unclipped.any()
    assert not np.any(np.all(np.isclose(goals, failed_point, atol=1e-5), axis=1))


def make_env(data: Sequence[tuple[np.ndarray, Evaluation]]) -> FitEnv:
    goal = targets_from_evaluation(data[0][1], TEMPLATE, 0.05)
    assert goal is not None

    def evaluate(points: Sequence[np.ndarray]) -> list[Evaluation]:
        return [linear_evaluation(np.asarray(p)) for p in points]

    return FitEnv(2, [t.key for t in TEMPLATE], evaluate, lambda rng: Task(goal, rng.random(2)))


def test_pretraining_learns_the_inverse_map() -> None:
    import torch
    from stable_baselines3 import SAC

    torch.manual_seed(0)
    data = samples(300)
    model = SAC(
        "MlpPolicy", make_env(data), seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]}
    )
    obs, actions = relabelled_pairs(data, TEMPLATE, np.random.default_rng(9), 2000, 0.2, 0.05)
    with torch.no_grad():
        before = float(
            (
                (model.policy.actor(torch.as_tensor(obs), deterministic=True).numpy() - actions)
                ** 2
            ).mean()
        )
    after = pretrain_actor(
        model,
        data,
        TEMPLATE,
        np.random.default_rng(3),
        0.2,
        0.05,
        gradient_steps=400,
        batch_size=128,
    )
    assert after < 0.3 * before

    # The pre-trained deterministic policy walks to a new target within a few steps.
    truth = np.array([0.3, 0.7])
    goal = targets_from_evaluation(linear_evaluation(truth), TEMPLATE, 0.05)
    assert goal is not None
    from fitting.objective import rescore

    u = np.array([0.5, 0.5])
    for step in range(10):
        evaluation = rescore(linear_evaluation(u), goal)
        if evaluation.reproduces(2.0):
            break
        action, _ = model.predict(
            observe(u, evaluation, [t.key for t in TEMPLATE], step / 25), deterministic=True
        )
        u = np.clip(u + 0.2 * action, 0, 1)
    assert rescore(linear_evaluation(u), goal).reproduces(2.0)
    assert step < 10


@pytest.mark.parametrize("step_scale", [0.1, 0.2])
def test_actions_are_bounded_moves(step_scale: float) -> None:
    _, actions = relabelled_pairs(
        samples(20), TEMPLATE, np.random.default_rng(4), 200, step_scale, 0.05
    )
    assert np.all(np.abs(actions) <= 1.0)
