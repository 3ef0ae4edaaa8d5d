"""Reinforcement-learning fitting: train a policy across randomised targets, then fit quickly.

**Training** (amortised, done once per model + stimuli + feature list): simulate a bank of
random parameter sets; pre-train the SAC actor on hindsight-relabelled pairs of bank members
(:mod:`fitting.optimizers.hindsight`: from point ``i``, move toward the point ``j`` whose
features are the goal); then fine-tune with SAC by interaction, where each training episode takes
the features of one earlier simulation (bank or any training step — hindsight targets) as
synthetic targets and starts from another earlier point (or the centre of the box), so episodes
cost only their steps. ``total_steps = 0`` keeps the pre-trained actor as it is. A Soft
Actor-Critic agent (stable-baselines3) learns to map signed z-errors to parameter corrections.
Every simulation, bank included, is counted by the engine.

**Fitting** a new measurement set: rollouts of the deterministic policy run in lock step (one
batch of simulations per step, ``parallel`` rollouts). Where they start is ``start``:

* ``bank`` (the default): at the training simulations whose features are nearest the
  measurements in z (:mod:`fitting.optimizers.bank`), the nearest first; a rollout that fits,
  runs out of steps or stalls restarts from the next nearest member;
* ``centre``: the first rollout at the box centre, the others and every restart at random points;
* ``random``: every rollout and restart at a random point.

Every start point is simulated in the fit and counted. The run yields a *list* of solutions.

A trained policy is saved as ``policy.zip`` (the SB3 model), ``policy.json`` (format
``version``, parameter names and bounds, target keys, step scale, episode length, training
cost) and ``bank.npz`` (the training simulations), and is refused on load if the parameters or
target keys differ from the run's. A version-1 ``policy.json`` (written before the bank was
kept) still loads, without a bank: its rollouts start as ``centre`` does, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from core.errors import ConfigError, FittingError
from fitting.engine import BudgetExhaustedError, Engine
from fitting.measurements import Target
from fitting.objective import Evaluation, rescore
from fitting.optimizers.bank import BANK_NAME, Bank
from fitting.optimizers.hindsight import pretrain_actor
from fitting.optimizers.rl_env import FitEnv, Task, observe
from fitting.parameters import FloatArray, ParameterSpace
from fitting.synthetic import targets_from_evaluation

log = structlog.get_logger()

POLICY_VERSION = 2
START_MODES = ("bank", "centre", "random")


@dataclass
class PolicyInfo:
    """Metadata saved next to a policy.

    Attributes:
        parameters: Parameter descriptions (name, bounds, log).
        keys: Target keys in observation order.
        step_scale: Largest move per step in the unit cube.
        max_steps: Steps per rollout.
        k: Acceptance threshold used in training.
        training_simulations: Simulations spent on training (bank included).
        training_wall_s: Wall time of training.
        version: ``policy.json`` format: 1 without a bank (missing in old files), 2 with
            ``bank.npz``.
        bank_members: Simulations kept in ``bank.npz`` (0 without a bank).
    """

    parameters: list[dict[str, object]]
    keys: list[str]
    step_scale: float
    max_steps: int
    k: float
    training_simulations: int = 0
    training_wall_s: float = 0.0
    version: int = POLICY_VERSION
    bank_members: int = 0


@dataclass
class FitPolicy:
    """A trained SB3 model plus its :class:`PolicyInfo` and (version 2) its bank."""

    model: Any
    info: PolicyInfo
    bank: Bank | None = None

    def save(self, directory: Path) -> Path:
        """Write ``policy.zip``, ``policy.json`` and (if any) ``bank.npz`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / "policy.zip")
        if self.bank is not None:
            self.bank.save(directory / BANK_NAME)
        (directory / "policy.json").write_text(json.dumps(asdict(self.info), indent=2))
        return directory

    @staticmethod
    def load(path: Path, space: ParameterSpace, keys: Sequence[str]) -> FitPolicy:
        """Load a policy directory (or its ``policy.zip``) and check it fits this run."""
        from stable_baselines3 import SAC

        directory = path.parent if path.suffix == ".zip" else path
        meta_path = directory / "policy.json"
        if not meta_path.is_file() or not (directory / "policy.zip").is_file():
            raise ConfigError(f"Expected policy.zip and policy.json in {directory}, actual missing")
        info = read_policy_info(meta_path)
        if info.parameters != space.to_dict():
            raise ConfigError(
                f"Expected a policy trained for parameters {space.to_dict()}, "
                f"actual {info.parameters}; "
                "train a new policy (omit --policy) for this parameter set"
            )
        if info.keys != list(keys):
            raise ConfigError(
                f"Expected a policy trained for targets {list(keys)}, actual {info.keys}; "
                "use the same stimuli and features, or train a new policy"
            )
        bank = None
        if info.version >= 2:
            bank = Bank.load(directory / BANK_NAME, keys, space.dim)
        model = SAC.load(directory / "policy.zip", device="cpu")
        return FitPolicy(model, info, bank)


def read_policy_info(path: Path) -> PolicyInfo:
    """``policy.json``; a file without ``version`` is version 1 (no bank)."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: expected JSON policy metadata, actual {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, actual {type(data).__name__}")
    version = data.setdefault("version", 1)
    if version not in (1, POLICY_VERSION):
        raise ConfigError(
            f"{path}: expected policy format version 1 or {POLICY_VERSION}, actual {version!r}; "
            "this policy was written by a newer neuroloop-fit, or train a new one"
        )
    try:
        return PolicyInfo(**data)
    except TypeError as exc:
        raise ConfigError(
            f"{path}: expected the fields of PolicyInfo version {version}, actual {exc}"
        ) from exc


def _bank(
    engine: Engine,
    template: Sequence[Target],
    size: int,
    rng: np.random.Generator,
    std_fraction: float,
) -> list[tuple[FloatArray, Evaluation, tuple[Target, ...] | None]]:
    points = list(rng.uniform(0.05, 0.95, (size, engine.space.dim)))
    evaluations = engine.evaluate(points)
    return [
        (u, e, targets_from_evaluation(e, template, std_fraction))
        for u, e in zip(points, evaluations, strict=False)
    ]


def _steps(samples: Sequence[object]) -> int:
    """Gradient steps for hindsight pre-training: 4 per simulation, between 200 and 4000."""
    return min(4000, max(200, 4 * len(samples)))


def train_policy(
    engine: Engine,
    template: Sequence[Target],
    rng: np.random.Generator,
    total_steps: int,
    bank_size: int = 2000,
    k: float = 2.0,
    step_scale: float = 0.2,
    max_steps: int = 25,
    std_fraction: float = 0.05,
    refit: bool = True,
) -> FitPolicy:
    """Train a fitting policy with SAC across randomised synthetic targets.

    Args:
        engine: Budgeted engine (the budget bounds bank + training simulations).
        template: Targets defining the stimulus/feature list (means are replaced).
        rng: Seeded generator.
        total_steps: Environment steps (= simulations) of training.
        bank_size: Random parameter sets simulated up front (targets and start points); the
            centre of the box is simulated once more, so training costs
            ``bank_size + 1 + total_steps`` simulations.
        k: Acceptance threshold.
        step_scale: Largest move per step in the unit cube.
        max_steps: Episode length.
        std_fraction: Relative std of synthetic targets.
        refit: After SAC, refit the actor on hindsight pairs of every simulation so far.
    """
    import time

    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    started = time.perf_counter()
    used_before = engine.used
    bank = _bank(engine, template, bank_size, rng, std_fraction)
    usable = [b for b in bank if b[2] is not None]
    if len(usable) < 2:
        raise FittingError(
            "Expected at least 2 random parameter sets with every feature computable, "
            f"actual {len(usable)} "
            f"of {len(bank)}; widen bounds or choose features that exist across the box"
        )

    # Hindsight targets: every training simulation whose features all computed becomes a
    # possible future target, so target diversity grows for free as training proceeds.
    goals: list[tuple[Target, ...]] = [b[2] for b in usable if b[2] is not None]
    starts: list[tuple[FloatArray, Evaluation]] = [(b[0], b[1]) for b in bank]

    def evaluate_and_collect(points: Sequence[FloatArray]) -> list[Evaluation]:
        evaluations = engine.evaluate(points)
        for u, evaluation in zip(points, evaluations, strict=False):
            goal = targets_from_evaluation(evaluation, template, std_fraction)
            if goal is not None:
                goals.append(goal)
            starts.append((np.asarray(u, dtype=np.float64), evaluation))
        return evaluations

    centre = np.full(engine.space.dim, 0.5)
    centre_evaluation = engine.evaluate([centre])[0]

    def sample(generator: np.random.Generator) -> Task:
        targets = goals[int(generator.integers(len(goals)))]
        if generator.random() < 0.25:
            return Task(targets, centre, centre_evaluation)
        start_u, start_eval = starts[int(generator.integers(len(starts)))]
        return Task(targets, start_u, start_eval)

    keys = [t.key for t in template]
    env = FitEnv(engine.space.dim, keys, evaluate_and_collect, sample, k, step_scale, max_steps)
    env.reset(seed=int(rng.integers(2**31 - 1)))
    vec = DummyVecEnv([lambda: env])
    model = SAC(
        "MlpPolicy",
        vec,
        seed=int(rng.integers(2**31 - 1)),
        learning_starts=min(300, total_steps // 4),
        learning_rate=1e-4,
        policy_kwargs={"net_arch": [256, 256]},
        gamma=0.95,
        batch_size=128,
        device="cpu",
        verbose=0,
    )
    pretrain_actor(model, starts, template, rng, step_scale, std_fraction, _steps(starts))
    if total_steps > 0:
        try:
            model.learn(total_timesteps=total_steps)
        except BudgetExhaustedError:
            log.warning("rl_training_budget_exhausted", used=engine.used)
        if refit:
            # Relabel everything simulated so far (bank and SAC's trajectories, which are dense
            # near goals) and refit the actor: a second goal-conditioned supervised round.
            pretrain_actor(model, starts, template, rng, step_scale, std_fraction, _steps(starts))
    bank_kept = Bank.from_samples(starts, keys)
    info = PolicyInfo(
        engine.space.to_dict(),
        keys,
        step_scale,
        max_steps,
        k,
        engine.used - used_before,
        time.perf_counter() - started,
        bank_members=len(bank_kept),
    )
    log.info(
        "rl_training_done",
        simulations=info.training_simulations,
        wall_s=round(info.training_wall_s, 1),
    )
    return FitPolicy(model, info, bank_kept)


@dataclass
class _Rollout:
    u: FloatArray
    evaluation: Evaluation | None = None
    steps: int = 0
    best_score: float = float("inf")
    since_best: int = 0


class _Starts:
    """Start points in the order a start mode gives them (random ones from ``rng``)."""

    def __init__(
        self,
        start: str,
        dim: int,
        rng: np.random.Generator,
        bank: Bank | None,
        targets: Sequence[Target],
    ) -> None:
        self._dim = dim
        self._rng = rng
        self._queue: list[FloatArray] = []
        if start == "centre":
            self._queue = [np.full(dim, 0.5)]
        elif start == "bank" and bank is not None:
            self._queue = [bank.points[i].copy() for i in bank.ranked(targets)[::-1]]

    def next(self) -> FloatArray:
        """The next start point (random once the queue is empty)."""
        if self._queue:
            return self._queue.pop()
        point: FloatArray = self._rng.uniform(0.1, 0.9, self._dim)
        return point


def run_rl(
    engine: Engine,
    policy: FitPolicy,
    targets: Sequence[Target],
    rng: np.random.Generator,
    parallel: int = 1,
    start: str = "bank",
    patience: int | None = None,
    lone_search: bool = False,
) -> None:
    """Fit ``targets`` with the policy: lock-step rollouts and restarts until the budget ends.

    Args:
        engine: Budgeted engine evaluating against ``targets``.
        policy: The trained policy.
        targets: The measurement targets (keys must match the policy's).
        rng: Seeded generator for random start points.
        parallel: Rollouts advanced together (one simulation each per step).
        start: ``bank`` (nearest training simulations first), ``centre`` (the first rollout
            at the box centre, then random points) or ``random``. A policy without a bank
            starts as ``centre`` does (logged).
        patience: Restart a rollout whose best score has not improved for this many steps
            (``None``: only on success or after the policy's episode length).
        lone_search: Advance a single rollout until the first solution (the fewest
            simulations to a first fit: a batch of ``parallel`` costs ``parallel`` simulations
            per step), then ``parallel`` rollouts to collect more solutions sooner.
    """
    keys = [t.key for t in targets]
    if keys != policy.info.keys:
        raise ConfigError(f"Expected targets {policy.info.keys}, actual {keys}")
    if start not in START_MODES:
        raise ConfigError(f"Expected an RL start in {list(START_MODES)}, actual {start!r}")
    if parallel < 1:
        raise ConfigError(f"Expected at least 1 parallel rollout, actual {parallel}")
    if patience is not None and patience < 1:
        raise ConfigError(f"Expected a patience of at least 1 step or none, actual {patience}")
    if start == "bank" and policy.bank is None:
        log.warning(
            "rl_policy_without_bank",
            version=policy.info.version,
            reason="a version-1 policy has no bank; starting at the centre, then random points",
        )
        start = "centre"
    dim = engine.space.dim
    starts = _Starts(start, dim, rng, policy.bank, targets)
    rollouts = [_Rollout(starts.next()) for _ in range(1 if lone_search else parallel)]
    while engine.remaining > 0:
        if engine.solutions > 0:
            rollouts += [_Rollout(starts.next()) for _ in range(parallel - len(rollouts))]
        points = []
        for rollout in rollouts:
            if rollout.evaluation is None:
                points.append(rollout.u)
                continue
            obs = observe(
                rollout.u, rollout.evaluation, keys, rollout.steps / policy.info.max_steps
            )
            action, _ = policy.model.predict(obs, deterministic=True)
            points.append(
                np.clip(rollout.u + np.clip(action, -1, 1) * policy.info.step_scale, 0.0, 1.0)
            )
        try:
            evaluations = engine.evaluate(points)
        except BudgetExhaustedError:
            return
        for rollout, point, evaluation in zip(rollouts, points, evaluations, strict=False):
            scored = rescore(evaluation, targets)
            if scored.score < rollout.best_score:
                rollout.best_score, rollout.since_best = scored.score, 0
            else:
                rollout.since_best += 1
            stalled = patience is not None and rollout.since_best >= patience
            restart = rollout.evaluation is not None and (
                scored.reproduces(engine.k) or rollout.steps + 1 >= policy.info.max_steps or stalled
            )
            if restart:
                rollout.u, rollout.evaluation, rollout.steps = starts.next(), None, 0
                rollout.best_score, rollout.since_best = float("inf"), 0
            else:
                rollout.steps = 0 if rollout.evaluation is None else rollout.steps + 1
                rollout.u, rollout.evaluation = np.asarray(point), scored
