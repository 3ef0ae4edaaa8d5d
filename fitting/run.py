"""One fitting run end to end: workers, parameter space, optimiser, checkpoint, outputs.

Used by ``neuroloop-fit`` (:mod:`fitting.cli`) and the benchmark. The parent process never
builds a NEURON model: discovery and simulation happen in spawned workers.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from core.errors import ConfigError
from fitting.cluster import ExecutorPool
from fitting.engine import Engine
from fitting.measurements import MeasurementSet
from fitting.model import REFERENCE_BUILDER, ModelSpec
from fitting.objective import Evaluation, rescore
from fitting.parameters import ParameterSpace, ParameterSpec
from fitting.pool import WorkerPool
from fitting.reference import TRUE_PARAMETERS
from fitting.report import (
    best_candidates,
    best_max_abs_z,
    count_solutions,
    plot_traces,
    rank_solutions,
    write_results,
)

log = structlog.get_logger()
METHODS = ("rl", "cmaes", "bluepyopt", "random")
DEFAULT_BOUND_FACTOR = 5.0


def discover_in_worker(evaluator: Any) -> list[dict[str, Any]]:
    """Worker-side parameter discovery (runs where the model was built)."""
    from fitting.model import discover_parameters

    return [
        {
            "name": d.name,
            "mechanism": d.mechanism,
            "value": d.value,
            "conductance": d.is_conductance,
        }
        for d in discover_parameters(evaluator.model)
    ]


def default_space(model: ModelSpec, discovered: list[dict[str, Any]]) -> ParameterSpace:
    """Reference model: its five channel conductances; otherwise every discovered conductance.

    Bounds are ×1/5 to ×5 around the model's own value, log-scaled.
    """
    if model.target == REFERENCE_BUILDER:
        values = TRUE_PARAMETERS
    else:
        values = {
            d["name"]: float(d["value"])
            for d in discovered
            if d["conductance"] and d["name"].split(".")[0] != "all"
        }
    if not values:
        raise ConfigError(
            "Expected the model to have positive conductances to fit, actual none; pass --param"
        )
    specs = []
    for name, value in values.items():
        location, _, variable = name.partition(".")
        specs.append(
            ParameterSpec(
                location, variable, value / DEFAULT_BOUND_FACTOR, value * DEFAULT_BOUND_FACTOR
            )
        )
    return ParameterSpace(specs)


def check_space(space: ParameterSpace, discovered: list[dict[str, Any]]) -> None:
    """Refuse parameters the model does not have, listing what it does have."""
    known = {d["name"] for d in discovered}
    unknown = [n for n in space.names if n not in known]
    if unknown:
        raise ConfigError(
            f"Expected parameters the model has (see --list-params), actual unknown {unknown}; "
            f"known: {sorted(known)}"
        )


@dataclass
class FitConfig:
    """Everything a fitting run needs (see ``neuroloop-fit --help`` for meanings)."""

    model: ModelSpec
    measurements: MeasurementSet
    out_dir: Path
    method: str = "cmaes"
    budget: int = 1000
    workers: int = 1
    k: float = 2.0
    seed: int = 0
    parameters: tuple[ParameterSpec, ...] = ()
    timeout_s: float = 60.0
    policy_path: Path | None = None
    train_steps: int = 2000
    bank_size: int = 2000
    restart: bool = False
    progress: bool = True
    stop_after_solutions: int | None = None
    start_method: str = "spawn"
    max_solutions: int = 50
    plot: bool = True
    rl_start: str = "bank"
    rl_parallel: int | None = None
    rl_patience: int | None = None
    bluepyopt_selector: str = "IBEA"
    bluepyopt_offspring: int = 20
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    """What a run produced."""

    solutions: list[Evaluation]
    history: list[Evaluation]
    simulations: int
    first_fit_at: int | None
    training_simulations: int
    training_wall_s: float
    wall_s: float
    document: dict[str, Any]


def _round(value: float | None) -> float | None:
    """``value`` to 3 significant digits, as the progress bar shows it."""
    return None if value is None else float(f"{value:.3g}")


def _versions() -> dict[str, str]:
    import efel
    import neuron

    return {
        "python": platform.python_version(),
        "neuron": str(neuron.__version__),
        "efel": str(efel.__version__),
    }


def fit(config: FitConfig, pool: ExecutorPool | None = None) -> FitResult:
    """Run one fit and write its outputs into ``config.out_dir``.

    Args:
        config: The run.
        pool: An existing pool for this model and measurement set (reused, not closed);
            by default one is started and closed here.
    """
    if config.method not in METHODS:
        raise ConfigError(f"Expected --method in {list(METHODS)}, actual {config.method!r}")
    started = time.perf_counter()
    own_pool = pool is None
    model = config.model.prepare()
    if pool is None:
        pool = WorkerPool(
            model, config.measurements, config.workers, config.timeout_s, config.start_method
        )
    try:
        discovered = pool.call(discover_in_worker)
        space = (
            ParameterSpace(config.parameters or config.measurements.parameters)
            if (config.parameters or config.measurements.parameters)
            else default_space(model, discovered)
        )
        check_space(space, discovered)
        return _fit_with_pool(config, model, pool, space, started)
    finally:
        if own_pool:
            pool.close()


def _fit_with_pool(
    config: FitConfig, model: ModelSpec, pool: ExecutorPool, space: ParameterSpace, started: float
) -> FitResult:
    from fitting.optimizers.cmaes import run_cmaes
    from fitting.optimizers.random_search import run_random

    rng = np.random.default_rng(config.seed)
    timeouts_before = pool.timeouts  # a pool may serve several fits (a folder's lane)
    run_info: dict[str, Any] = {
        "model": {
            "kind": model.kind,
            "target": model.target,
            "mod_dirs": list(model.mod_dirs),
            "compiled_dir": model.compiled_dir,
        },
        "measurements": config.measurements.to_dict(),
        "parameters": space.to_dict(),
        "method": config.method,
        "seed": config.seed,
        "k": config.k,
    }
    config.out_dir.mkdir(parents=True, exist_ok=True)
    training_sims, training_wall = 0, 0.0
    policy = None
    if config.method == "rl":
        policy, training_sims, training_wall = _policy_for(config, pool, space, rng, run_info)
        # Only the fit's archive is keyed by how rollouts start (the training archive is not).
        run_info["rl"] = {
            "start": config.rl_start,
            "parallel": config.rl_parallel,
            "patience": config.rl_patience,
        }
    targets = config.measurements.targets

    def evaluate(params: Sequence[dict[str, float]]) -> list[Evaluation]:
        # Workers score against their own measurement set; the parent rescores against this
        # run's targets, so one pool can serve runs with different target values.
        return [rescore(e, targets) for e in pool.evaluate(params)]

    engine = Engine(
        space,
        evaluate,
        config.budget,
        config.out_dir,
        run_info,
        config.progress,
        resume=not config.restart,
        k=config.k,
        stop_after_solutions=config.stop_after_solutions,
    )
    try:
        if config.method == "random":
            run_random(engine, rng, batch_size=max(4, 4 * pool.size))
        elif config.method == "cmaes":
            run_cmaes(engine, rng)
        elif config.method == "bluepyopt":
            from fitting.optimizers.bluepyopt_peer import run_bluepyopt

            run_bluepyopt(
                engine,
                targets,
                rng,
                selector=config.bluepyopt_selector,
                offspring_size=config.bluepyopt_offspring,
            )
        else:
            from fitting.optimizers.rl import run_rl

            assert policy is not None
            run_rl(
                engine,
                policy,
                config.measurements.targets,
                rng,
                parallel=config.rl_parallel or pool.size,
                start=config.rl_start,
                patience=config.rl_patience,
                lone_search=config.rl_parallel is None,
            )
    finally:
        engine.close()
    history = [e for _, e in engine.history]
    solutions = rank_solutions(history, config.k, config.max_solutions)
    found = count_solutions(history, config.k)
    candidates = best_candidates(history)
    wall_s = time.perf_counter() - started
    summary = {
        **{k: v for k, v in run_info.items() if k != "measurements"},
        "budget": config.budget,
        "simulations": engine.used,
        "simulated_this_session": engine.simulated,
        "first_fit_at_simulation": engine.first_fit_at,
        "budget_used": engine.used,
        "training_simulations": training_sims,
        "training_wall_s": training_wall,
        "timeouts": pool.timeouts - timeouts_before,
        "workers": pool.size,
        "wall_s": wall_s,
        "solutions_found": found,
        "solutions_listed": len(solutions),
        "best_max_abs_z": best_max_abs_z(history),
        "versions": _versions(),
    }
    document = write_results(
        config.out_dir, solutions, candidates, space, config.measurements, summary
    )
    if config.plot and candidates:
        shown = solutions[:3] or candidates[:1]
        traces = [pool.traces(s.params) for s in shown]
        kind = "solution" if solutions else "closest set, not a solution"
        labels = [f"#{i + 1} {kind}, max|z| = {s.max_abs_z:.3g}" for i, s in enumerate(shown)]
        plot_traces(
            config.out_dir / "best_traces.png",
            traces,
            labels,
            shown[0],
            config.measurements,
            config.k,
            title=f"{model.target} fitted by {config.method}: {found} solution(s) with "
            f"every |z| ≤ {config.k:g} in {engine.used} simulations",
        )
    log.info(
        "fit_done",
        method=config.method,
        simulations=engine.used,
        solutions_found=found,
        solutions_listed=len(solutions),
        first_fit_at=engine.first_fit_at,
        best_max_abs_z=_round(best_max_abs_z(history)),
        wall_s=round(wall_s, 1),
    )
    return FitResult(
        solutions,
        history,
        engine.used,
        engine.first_fit_at,
        training_sims,
        training_wall,
        wall_s,
        document,
    )


def _policy_for(
    config: FitConfig,
    pool: ExecutorPool,
    space: ParameterSpace,
    rng: np.random.Generator,
    run_info: dict[str, Any],
) -> tuple[Any, int, float]:
    from fitting.optimizers.rl import FitPolicy, train_policy

    keys = [t.key for t in config.measurements.targets]
    saved = config.out_dir / "policy"
    if config.policy_path is not None:
        policy = FitPolicy.load(config.policy_path, space, keys)
        return policy, 0, 0.0
    if (saved / "policy.zip").is_file() and not config.restart:
        log.info("rl_policy_resumed", path=str(saved))
        policy = FitPolicy.load(saved, space, keys)
        return policy, policy.info.training_simulations, policy.info.training_wall_s
    training_config = {
        **run_info,
        "phase": "training",
        "train_steps": config.train_steps,
        "bank": config.bank_size,
    }
    engine = Engine(
        space,
        pool.evaluate,
        config.bank_size + 1 + config.train_steps,
        config.out_dir / "training",
        training_config,
        config.progress,
        resume=not config.restart,
        k=config.k,
    )
    try:
        policy = train_policy(
            engine, config.measurements.targets, rng, config.train_steps, config.bank_size, config.k
        )
    finally:
        engine.close()
    policy.save(saved)
    return policy, policy.info.training_simulations, policy.info.training_wall_s
