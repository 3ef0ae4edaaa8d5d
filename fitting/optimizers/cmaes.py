"""CMA-ES (``cma`` package) in the unit cube with IPOP restarts.

The first run starts at the centre of the box; each restart starts at a fresh random point with
twice the population, until the budget is spent. The minimised objective is the evaluation
score (weighted mean ``|z|``).
"""

from __future__ import annotations

import numpy as np
import structlog

from fitting.engine import BudgetExhaustedError, Engine

log = structlog.get_logger()


def run_cmaes(
    engine: Engine,
    rng: np.random.Generator,
    sigma0: float = 0.25,
    popsize: int | None = None,
    max_restarts: int = 20,
) -> None:
    """Run CMA-ES with restarts until the budget is spent.

    Args:
        engine: The budgeted evaluation engine.
        rng: Seeded generator for start points and CMA-ES seeds.
        sigma0: Initial step size in the unit cube.
        popsize: Initial population (default: CMA-ES's 4 + 3 ln n).
        max_restarts: Upper bound on restarts.
    """
    import cma

    dim = engine.space.dim
    population = popsize or int(4 + 3 * np.log(dim))
    for restart in range(max_restarts + 1):
        x0 = np.full(dim, 0.5) if restart == 0 else rng.uniform(0.1, 0.9, dim)
        options = {
            "bounds": [0.0, 1.0],
            "popsize": population,
            "seed": int(rng.integers(1, 2**31 - 1)),
            "verbose": -9,
            "tolfun": 1e-4,
            "tolx": 1e-5,
        }
        strategy = cma.CMAEvolutionStrategy(x0.tolist(), sigma0, options)
        while not strategy.stop():
            candidates = strategy.ask()
            try:
                evaluations = engine.evaluate([np.asarray(c) for c in candidates])
            except BudgetExhaustedError:
                return
            if len(evaluations) < len(candidates):
                return
            strategy.tell(candidates, [e.score for e in evaluations])
        log.info(
            "cmaes_restart",
            restart=restart + 1,
            reason=str(strategy.stop()),
            used=engine.used,
            next_popsize=population * 2,
        )
        population *= 2
