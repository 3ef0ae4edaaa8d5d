"""BluePyOpt's own evolutionary optimiser (IBEA or NSGA-II, via DEAP) as a peer method.

BluePyOpt (``pip install bluepyopt``) is what a modeller would otherwise pick to fit a NEURON
cell to eFEL features. This module runs its public ``bluepyopt.deapext.optimisations.
DEAPOptimisation`` on *our* model, features and budget, so the comparison isolates the search
algorithm:

* the parameters are the same unit cube the other methods search (log-scaled parameters are
  uniform in log), handed to BluePyOpt as ``bluepyopt.parameters.Parameter`` bounds [0, 1];
* the objectives are one ``bluepyopt.objectives.Objective`` per target: its ``|z|`` (250 on a
  failed feature), exactly BluePyOpt's own eFEL-feature objective;
* simulations go through the same budgeted :class:`fitting.engine.Engine` (archive, first-fit
  counting, stop after the first solution), in batches: each generation's offspring are passed
  to the engine at once through BluePyOpt's documented ``map_function`` hook, which is how
  BluePyOpt parallelises (ipyparallel/scoop) as well.

DEAP draws from Python's global ``random`` module; BluePyOpt seeds it from the ``seed`` argument,
which comes from the run's seeded numpy generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import structlog

from core.errors import ConfigError
from fitting.engine import BudgetExhaustedError, Engine
from fitting.measurements import Target

log = structlog.get_logger()

#: BluePyOpt's selectors.
SELECTORS = ("IBEA", "NSGA2")
DEFAULT_OFFSPRING = 20


def _evaluator_class() -> type:
    import bluepyopt

    class UnitCubeEvaluator(bluepyopt.evaluators.Evaluator):  # type: ignore[misc]
        """BluePyOpt evaluator over the unit cube; scoring happens in the batched map."""

        def __init__(self, names: Sequence[str], keys: Sequence[str]) -> None:
            params = [bluepyopt.parameters.Parameter(n, bounds=[0.0, 1.0]) for n in names]
            objectives = [bluepyopt.objectives.Objective(k) for k in keys]
            super().__init__(objectives=objectives, params=params)
            self.param_names = list(names)

        def evaluate_with_dicts(self, param_dict: dict[str, float]) -> dict[str, float]:
            raise NotImplementedError("evaluated in batches by the map function")

        def evaluate_with_lists(self, param_list: list[float]) -> list[float]:
            raise NotImplementedError("evaluated in batches by the map function")

        def init_simulator_and_evaluate_with_lists(self, param_list: list[float]) -> list[float]:
            return self.evaluate_with_lists(param_list)

    return UnitCubeEvaluator


def batch_map(
    engine: Engine, targets: Sequence[Target]
) -> Callable[[Callable[..., Any], Iterable[Sequence[float]]], list[list[float]]]:
    """A BluePyOpt ``map_function`` that evaluates a whole generation in one engine batch.

    Each individual's objectives are its per-target ``|z|`` in target order.

    Raises:
        BudgetExhaustedError: When the budget (or the first solution) ends the run.
    """
    keys = [t.key for t in targets]

    def mapped(
        _func: Callable[..., Any], individuals: Iterable[Sequence[float]]
    ) -> list[list[float]]:
        points = [np.asarray(list(ind), dtype=np.float64) for ind in individuals]
        evaluations = engine.evaluate(points)
        if len(evaluations) < len(points):
            raise BudgetExhaustedError
        return [[abs(e.z[k]) for k in keys] for e in evaluations]

    return mapped


def run_bluepyopt(
    engine: Engine,
    targets: Sequence[Target],
    rng: np.random.Generator,
    selector: str = "IBEA",
    offspring_size: int = DEFAULT_OFFSPRING,
) -> None:
    """Run BluePyOpt's DEAP optimiser until the budget (or the first-solution stop) ends it.

    Args:
        engine: The budgeted evaluation engine (scores against ``targets``).
        targets: The measurement targets (one objective each).
        rng: Seeded generator; BluePyOpt's seed is drawn from it.
        selector: ``IBEA`` (BluePyOpt's default) or ``NSGA2``.
        offspring_size: Individuals per generation.
    """
    try:
        from bluepyopt.deapext.optimisations import DEAPOptimisation
    except ImportError as err:
        raise ConfigError(
            "Expected the bluepyopt package for --method bluepyopt, actual not installed. "
            "Fix: pip install 'bluepyopt>=1.14,<1.15' (or the package's [fit] extra)"
        ) from err
    evaluator = _evaluator_class()(engine.space.names, [t.key for t in targets])
    generations = max(1, engine.remaining // offspring_size + 1)
    optimisation = DEAPOptimisation(
        evaluator=evaluator,
        seed=int(rng.integers(1, 2**31 - 1)),
        offspring_size=offspring_size,
        map_function=batch_map(engine, targets),
        selector_name=selector,
    )
    with contextlib.suppress(BudgetExhaustedError):
        optimisation.run(max_ngen=generations)
    log.info("bluepyopt_done", used=engine.used, selector=selector)
