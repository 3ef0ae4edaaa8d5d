"""Worker pool (timeouts), budget, checkpoint/resume, and every optimiser on a tiny budget.

All simulations are real NEURON runs of the bundled reference model in spawned workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from core.errors import ConfigError, FittingError
from fitting.engine import ARCHIVE_NAME, Engine
from fitting.measurements import load_measurements
from fitting.model import parse_model
from fitting.objective import rescore
from fitting.optimizers.cmaes import run_cmaes
from fitting.optimizers.random_search import run_random
from fitting.optimizers.rl import FitPolicy, run_rl, train_policy
from fitting.optimizers.rl_env import FitEnv, Task
from fitting.parameters import ParameterSpace, ParameterSpec
from fitting.pool import WorkerPool
from fitting.reference import TRUE_PARAMETERS
from fitting.synthetic import targets_from_evaluation

DATA = Path(__file__).parent / "data" / "fitting"
EXAMPLE = Path(__file__).parents[1] / "fitting" / "examples" / "paper_minus5na.yaml"
MEASUREMENTS = load_measurements(EXAMPLE)
SPACE = ParameterSpace(MEASUREMENTS.parameters)


@pytest.fixture(scope="module")
def pool() -> WorkerPool:
    with WorkerPool(parse_model("reference"), MEASUREMENTS, workers=2, timeout_s=60) as shared:
        yield shared


def make_engine(pool: WorkerPool, budget: int, out: Path | None = None, **kwargs: object) -> Engine:
    return Engine(SPACE, pool.evaluate, budget, out, {"test": "engine"}, **kwargs)  # type: ignore[arg-type]


# The ground truth the bundled example was measured at (its header; away from the defaults).
EXAMPLE_TRUTH = {
    "soma.gnabar_hh": 0.2738,
    "soma.gkbar_hh": 0.08726,
    "soma.gl_hh": 0.001153,
    "hillock.gnabar_hh": 0.6882,
    "dend.g_pas": 0.0003686,
}


def test_the_example_is_reproduced_by_its_truth_not_the_defaults(pool: WorkerPool) -> None:
    truth, defaults = pool.evaluate([EXAMPLE_TRUTH, TRUE_PARAMETERS])
    assert truth.status == "ok"
    assert truth.reproduces(1.0)  # the header rounds the truth to 4 significant digits
    assert not defaults.reproduces(2.0)  # the box centre does not fit it


def test_timeout_kills_and_replaces_the_worker() -> None:
    spec = parse_model(f"{DATA / 'sleepy_cell.py'}:build")
    with WorkerPool(spec, MEASUREMENTS, workers=1, timeout_s=3.0) as sleepy:
        hung, fine = sleepy.evaluate([{**TRUE_PARAMETERS, "soma.gl_hh": 0.002}, TRUE_PARAMETERS])
        assert sleepy.timeouts == 1
    assert hung.status == "timeout"
    assert set(hung.statuses.values()) == {"timeout"}
    assert hung.max_abs_z == 250.0
    assert fine.status == "ok"


def test_budget_is_never_exceeded(pool: WorkerPool) -> None:
    engine = make_engine(pool, 10)
    run_random(engine, np.random.default_rng(1), batch_size=4)
    assert engine.used == engine.simulated == len(engine.history) == 10
    run_cmaes(engine, np.random.default_rng(1))  # nothing left: returns at once
    assert engine.used == 10


def test_random_search_and_cmaes_improve_on_a_tiny_budget(pool: WorkerPool) -> None:
    rand = make_engine(pool, 16)
    run_random(rand, np.random.default_rng(2), batch_size=8)
    assert len(rand.history) == 16
    assert all(u.min() >= 0.0 and u.max() <= 1.0 for u, _ in rand.history)
    cma = make_engine(pool, 40)
    run_cmaes(cma, np.random.default_rng(2))
    scores = [e.score for _, e in cma.history]
    assert len(scores) == 40
    assert min(scores[-8:]) < scores[0] or min(scores) < 1.0  # CMA-ES started at the centre


def test_checkpoint_resume_retraces_and_continues(pool: WorkerPool, tmp_path: Path) -> None:
    full = make_engine(pool, 24, tmp_path / "full")
    run_cmaes(full, np.random.default_rng(3))
    full.close()

    first = make_engine(pool, 12, tmp_path / "split")
    run_cmaes(first, np.random.default_rng(3))
    first.close()
    archive = tmp_path / "split" / ARCHIVE_NAME
    with archive.open("a") as handle:
        handle.write('{"u": [0.5, 0.5')  # a torn record from an interrupted write
    resumed = make_engine(pool, 24, tmp_path / "split")
    run_cmaes(resumed, np.random.default_rng(3))
    resumed.close()

    assert resumed.simulated == 12  # the first 12 came from the checkpoint
    assert resumed.used == 24
    full_params = [e.params for _, e in full.history]
    assert [e.params for _, e in resumed.history] == full_params
    lines = archive.read_text().splitlines()
    assert json.loads(lines[0])["fingerprint"]
    assert sum(1 for line in lines[1:] if line.startswith('{"u": [') and line.endswith("}}")) == 24


def test_nonfinite_points_are_a_fault_not_clamped(pool: WorkerPool) -> None:
    engine = make_engine(pool, 4)
    with pytest.raises(FittingError, match=r"Expected finite parameters from the optimiser"):
        engine.evaluate([np.array([0.5, np.nan, 0.5, 0.5, 0.5])])
    assert engine.used == 0


def test_resume_with_another_configuration_is_refused(pool: WorkerPool, tmp_path: Path) -> None:
    make_engine(pool, 2, tmp_path).close()
    with pytest.raises(
        ConfigError,
        match=r"expected an archive of the same run .*fresh --out directory or --restart",
    ):
        Engine(SPACE, pool.evaluate, 2, tmp_path, {"test": "other"})


def test_fit_env_follows_the_gymnasium_api(pool: WorkerPool) -> None:
    truth = pool.evaluate([TRUE_PARAMETERS])[0]
    targets = targets_from_evaluation(truth, MEASUREMENTS.targets)
    assert targets is not None
    engine = make_engine(pool, 200)
    env = FitEnv(
        SPACE.dim,
        [t.key for t in targets],
        engine.evaluate,
        lambda rng: Task(targets, rng.uniform(0.2, 0.8, SPACE.dim)),
        k=2.0,
        max_steps=5,
    )
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, reward, _, _, info = env.step(np.zeros(SPACE.dim, dtype=np.float32))
    assert np.isfinite(reward)
    assert info["max_abs_z"] >= 0
    assert set(info["params"]) == set(SPACE.names)


def test_rl_trains_saves_loads_and_fits(pool: WorkerPool, tmp_path: Path) -> None:
    training = make_engine(pool, 8 + 1 + 40)
    policy = train_policy(
        training, MEASUREMENTS.targets, np.random.default_rng(4), total_steps=40, bank_size=8
    )
    assert policy.info.training_simulations == training.used == 49
    policy.save(tmp_path / "policy")
    keys = [t.key for t in MEASUREMENTS.targets]
    loaded = FitPolicy.load(tmp_path / "policy", SPACE, keys)
    assert loaded.info == policy.info
    assert loaded.info.version == 2
    assert loaded.info.bank_members == 8 + 40  # the random sets and SAC's steps
    assert loaded.bank is not None
    assert policy.bank is not None
    np.testing.assert_array_equal(loaded.bank.points, policy.bank.points)
    np.testing.assert_array_equal(loaded.bank.values, policy.bank.values)

    fitting = make_engine(pool, 12)
    run_rl(fitting, loaded, MEASUREMENTS.targets, np.random.default_rng(5), parallel=2)
    assert fitting.used == 12
    # The two rollouts start at the two training simulations nearest the targets in z.
    nearest = loaded.bank.ranked(MEASUREMENTS.targets)[:2]
    np.testing.assert_allclose(fitting.history[0][0], loaded.bank.points[nearest[0]])
    np.testing.assert_allclose(fitting.history[1][0], loaded.bank.points[nearest[1]])

    centred = make_engine(pool, 4)
    run_rl(centred, loaded, MEASUREMENTS.targets, np.random.default_rng(5), 2, start="centre")
    assert np.allclose(centred.history[0][0], 0.5)  # the first rollout starts at the centre

    other_space = ParameterSpace([ParameterSpec("soma", "gnabar_hh", 0.01, 1.0)])
    with pytest.raises(ConfigError, match=r"Expected a policy trained for parameters"):
        FitPolicy.load(tmp_path / "policy", other_space, keys)
    with pytest.raises(ConfigError, match=r"Expected a policy trained for targets"):
        FitPolicy.load(tmp_path / "policy", SPACE, keys[:2])


def test_rescored_history_is_consistent(pool: WorkerPool) -> None:
    engine = make_engine(pool, 4)
    run_random(engine, np.random.default_rng(6), batch_size=4)
    for _, evaluation in engine.history:
        assert rescore(evaluation, MEASUREMENTS.targets) == evaluation
