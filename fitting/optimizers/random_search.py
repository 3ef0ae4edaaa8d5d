"""Uniform random search in the unit cube (log-scaled where the parameter says so)."""

from __future__ import annotations

import numpy as np

from fitting.engine import BudgetExhaustedError, Engine


def run_random(engine: Engine, rng: np.random.Generator, batch_size: int = 8) -> None:
    """Draw batches of uniform points until the budget is spent.

    Args:
        engine: The budgeted evaluation engine.
        rng: Seeded generator (the only source of randomness).
        batch_size: Points evaluated per batch (a multiple of the worker count is best).
    """
    while engine.remaining > 0:
        points = rng.random((min(batch_size, engine.remaining), engine.space.dim))
        try:
            engine.evaluate(list(points))
        except BudgetExhaustedError:
            return
