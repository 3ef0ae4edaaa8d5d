"""Where RL rollouts start: the policy's bank, its file format, and the rollout schedule.

Runs on the linear two-feature stand-in of test_fitting_rl.py (no NEURON), through the real
:class:`fitting.engine.Engine`, so the order and count of simulations are the ones a fit spends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_fitting_rl import TEMPLATE, linear_evaluation, make_env, samples

from core.errors import ConfigError
from fitting.engine import Engine
from fitting.measurements import Target
from fitting.objective import Evaluation, rescore
from fitting.optimizers.bank import Bank
from fitting.optimizers.rl import FitPolicy, PolicyInfo, run_rl
from fitting.parameters import ParameterSpace, ParameterSpec

SPACE = ParameterSpace(
    [ParameterSpec("a", "x", 0.0, 1.0, False), ParameterSpec("a", "y", 0.0, 1.0, False)]
)
KEYS = [t.key for t in TEMPLATE]


def engine(budget: int, targets: Sequence[Target] = TEMPLATE) -> Engine:
    """An engine scoring the stand-in against ``targets`` (as a fit's engine does)."""

    def evaluate(params: Sequence[dict[str, float]]) -> list[Evaluation]:
        points = [np.array([p["a.x"], p["a.y"]]) for p in params]
        return [rescore(linear_evaluation(u), targets) for u in points]

    return Engine(SPACE, evaluate, budget)


def goal_at(u: Sequence[float]) -> tuple[Target, ...]:
    """Targets measured at ``u`` with wide stds (1 unit per feature)."""
    e = linear_evaluation(np.asarray(u))
    return tuple(Target("p", t.feature, float(e.values[t.key] or 0.0), 1.0) for t in TEMPLATE)


class StandStill:
    """A policy stand-in that never moves (its rollouts stall at their start)."""

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.zeros(2, dtype=np.float32), None


def still_policy(bank: Bank | None) -> FitPolicy:
    info = PolicyInfo(
        SPACE.to_dict(), KEYS, 0.2, 25, 2.0, bank_members=0 if bank is None else len(bank)
    )
    return FitPolicy(StandStill(), info, bank)


def test_bank_ranks_members_by_largest_then_mean_z_and_failures_last() -> None:
    points = [
        np.array([0.9, 0.9]),
        np.array([0.52, 0.5]),
        np.array([0.5, 0.5]),
        np.array([0.2, 0.2]),
    ]
    data = [(u, linear_evaluation(u)) for u in points]
    data.append((np.array([0.5, 0.51]), linear_evaluation(np.array([0.5, 0.51]), fail_spikes=True)))
    data.append((np.array([0.5, 0.5]), linear_evaluation(np.array([0.5, 0.5]))))  # a revisit
    bank = Bank.from_samples(data, KEYS)
    assert np.isnan(bank.values[4, 1])
    order = bank.ranked(goal_at([0.5, 0.5]))
    # The truth's own point first, then the nearer neighbour; the failed member (z = 250 on
    # a feature) after every complete one; the revisited point only once.
    assert order.tolist() == [2, 1, 3, 0, 4]
    assert bank.z_scores(goal_at([0.5, 0.5]))[4, 1] == 250.0


def test_bank_round_trips_and_refuses_another_run(tmp_path: Path) -> None:
    bank = Bank.from_samples(samples(20), KEYS)
    bank.save(tmp_path / "bank.npz")
    loaded = Bank.load(tmp_path / "bank.npz", KEYS, 2)
    np.testing.assert_array_equal(loaded.points, bank.points)
    np.testing.assert_array_equal(loaded.values, bank.values)
    with pytest.raises(ConfigError, match=r"expected 3 parameters and targets"):
        Bank.load(tmp_path / "bank.npz", KEYS, 3)
    with pytest.raises(ConfigError, match=r"expected 2 parameters and targets \['p/x'\]"):
        Bank.load(tmp_path / "bank.npz", ["p/x"], 2)
    (tmp_path / "torn.npz").write_bytes(b"not a bank")
    with pytest.raises(ConfigError, match=r"expected a policy bank"):
        Bank.load(tmp_path / "torn.npz", KEYS, 2)


def test_rollouts_start_at_the_nearest_members_one_simulation_each() -> None:
    rng = np.random.default_rng(0)
    bank = Bank.from_samples([(u, linear_evaluation(u)) for u in rng.random((30, 2))], KEYS)
    targets = goal_at([0.31, 0.72])
    nearest = bank.ranked(targets)

    # One rollout that never improves, restarted after one stalled step: each bank member is
    # simulated at the start and once more (the stalled step), in order of nearness.
    one = engine(6)
    run_rl(one, still_policy(bank), targets, np.random.default_rng(1), parallel=1, patience=1)
    started = [u for u, _ in one.history]
    for i in range(3):
        np.testing.assert_allclose(started[2 * i], bank.points[nearest[i]])
        np.testing.assert_allclose(started[2 * i + 1], bank.points[nearest[i]])

    # Two rollouts: the first batch is the two nearest members.
    two = engine(2)
    run_rl(two, still_policy(bank), targets, np.random.default_rng(1), parallel=2)
    np.testing.assert_allclose(two.history[0][0], bank.points[nearest[0]])
    np.testing.assert_allclose(two.history[1][0], bank.points[nearest[1]])


def test_centre_and_random_starts_ignore_the_bank() -> None:
    bank = Bank.from_samples(samples(10), KEYS)
    targets = goal_at([0.2, 0.2])
    centre = engine(2)
    run_rl(centre, still_policy(bank), targets, np.random.default_rng(3), 2, start="centre")
    np.testing.assert_allclose(centre.history[0][0], [0.5, 0.5])
    expected = np.random.default_rng(3).uniform(0.1, 0.9, 2)
    np.testing.assert_allclose(centre.history[1][0], expected)
    uniform = engine(1)
    run_rl(uniform, still_policy(bank), targets, np.random.default_rng(3), 1, start="random")
    np.testing.assert_allclose(uniform.history[0][0], expected)
    with pytest.raises(ConfigError, match=r"Expected an RL start in"):
        run_rl(engine(1), still_policy(bank), targets, np.random.default_rng(3), start="truth")


def test_a_policy_without_a_bank_starts_at_the_centre() -> None:
    run = engine(1)
    run_rl(run, still_policy(None), goal_at([0.2, 0.2]), np.random.default_rng(3))
    np.testing.assert_allclose(run.history[0][0], [0.5, 0.5])


def test_version_1_policy_loads_without_a_bank_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", make_env(samples(2)), seed=0, device="cpu")
    info = PolicyInfo(SPACE.to_dict(), KEYS, 0.2, 25, 2.0)
    FitPolicy(model, info, Bank.from_samples(samples(5), KEYS)).save(tmp_path)
    assert FitPolicy.load(tmp_path, SPACE, KEYS).bank is not None

    # A policy.json written before the bank was kept: no version field, no bank.npz.
    old = {k: v for k, v in json.loads((tmp_path / "policy.json").read_text()).items()}
    del old["version"], old["bank_members"]
    (tmp_path / "policy.json").write_text(json.dumps(old))
    (tmp_path / "bank.npz").unlink()
    loaded = FitPolicy.load(tmp_path, SPACE, KEYS)
    assert loaded.bank is None
    assert loaded.info.version == 1

    (tmp_path / "policy.json").write_text(json.dumps({**old, "version": 3}))
    with pytest.raises(ConfigError, match=r"expected policy format version 1 or 2, actual 3"):
        FitPolicy.load(tmp_path, SPACE, KEYS)
    (tmp_path / "policy.json").write_text(json.dumps({**old, "colour": "red"}))
    with pytest.raises(ConfigError, match=r"expected the fields of PolicyInfo version 1"):
        FitPolicy.load(tmp_path, SPACE, KEYS)


def test_lone_search_advances_one_rollout_until_the_first_solution() -> None:
    rng = np.random.default_rng(4)
    bank = Bank.from_samples([(u, linear_evaluation(u)) for u in rng.random((12, 2))], KEYS)
    targets = goal_at(bank.points[5])  # member 5 reproduces the targets exactly
    nearest = bank.ranked(targets)
    assert nearest[0] == 5

    lone = engine(3, targets)
    run_rl(lone, still_policy(bank), targets, np.random.default_rng(1), 2, lone_search=True)
    assert lone.first_fit_at == 1
    # After the first solution the second rollout joins: its start and the first one's step.
    visited = [u for u, _ in lone.history]
    for point, member in zip(visited, [5, 5, nearest[1]], strict=True):
        np.testing.assert_allclose(point, bank.points[member])

    together = engine(3, targets)
    run_rl(together, still_policy(bank), targets, np.random.default_rng(1), 2)
    visited = [u for u, _ in together.history]
    for point, member in zip(visited, [5, nearest[1], 5], strict=True):
        np.testing.assert_allclose(point, bank.points[member])
