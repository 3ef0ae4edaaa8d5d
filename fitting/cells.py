"""Fit a folder of measurement sets (a lab's cells) with one model and, for RL, one policy.

Every file in the folder (``*.yaml``, ``*.yml``, ``*.json``, ``*.csv``) is one cell. All cells
must share the stimuli and the feature list (targets' values and stds differ from cell to
cell): one pool of workers simulates them, and one trained RL policy serves them all. With
``--method rl`` and no ``--policy`` the policy is trained once, on the first cell's stimuli
and features, into ``<out>/policy`` and reused for every cell.

Outputs: ``<out>/<cell>/`` holds each cell's usual files (``solutions.json``,
``solutions.csv``, ``archive.jsonl``, ...), and ``<out>/cells.csv`` / ``<out>/cells.json`` the
summary table: one row per cell with the solutions found, the simulation of the first fit, the
simulations used and the best max|z|, plus (JSON) the policy's training cost.

The cells' fits are dispatched by :func:`run_cells`, the one place to swap in another executor.
Today it runs them one after another on one shared pool (:class:`fitting.pool.WorkerPool`, the
executor's local engine), so every cell's simulations run in parallel on ``--workers``
processes that built the model once.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from core.errors import ConfigError
from fitting.cluster import ExecutorPool
from fitting.measurements import MeasurementSet, load_measurements
from fitting.pool import WorkerPool
from fitting.run import FitConfig, FitResult, fit

log = structlog.get_logger()

SUFFIXES = (".yaml", ".yml", ".json", ".csv")
SUMMARY_COLUMNS = (
    "cell",
    "file",
    "solutions_found",
    "first_fit_at",
    "budget_used",
    "best_max_abs_z",
    "fitted",
)


@dataclass(frozen=True)
class Cell:
    """One measurement set of the folder.

    Attributes:
        name: The file's stem (also its output directory).
        path: The measurement file.
        measurements: Its validated content.
    """

    name: str
    path: Path
    measurements: MeasurementSet


def _signature(measurements: MeasurementSet) -> tuple[Any, ...]:
    return (measurements.stimuli, tuple(t.key for t in measurements.targets))


def load_cells(directory: Path) -> list[Cell]:
    """Every measurement file in ``directory``, validated, sharing stimuli and features.

    Raises:
        ConfigError: If the folder is missing or empty, a file is invalid (named), two files
            share a stem, or the cells differ in stimuli or features.
    """
    if not directory.is_dir():
        raise ConfigError(f"Expected a folder of measurement files at {directory}, actual missing")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise ConfigError(
            f"Expected measurement files ({', '.join(SUFFIXES)}) in {directory}, actual none"
        )
    stems = [p.stem for p in files]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ConfigError(
            f"Expected one file per cell name in {directory}, actual several for {clashes}"
        )
    cells = [Cell(p.stem, p, load_measurements(p)) for p in files]
    first = cells[0]
    for cell in cells[1:]:
        if _signature(cell.measurements) != _signature(first.measurements):
            raise ConfigError(
                f"{cell.path}: expected the same stimuli and features as {first.path.name} "
                f"({[t.key for t in first.measurements.targets]}), actual "
                f"{[t.key for t in cell.measurements.targets]} with stimuli "
                f"{[p.name for p in cell.measurements.stimuli]}. Fix: put cells measured "
                "with other stimuli or features in another folder"
            )
    return cells


def run_cells(
    jobs: Sequence[FitConfig], pool: ExecutorPool, fit_one: Callable[..., FitResult] = fit
) -> list[FitResult]:
    """Fit every job; the single dispatch point for an executor (see the module docstring)."""
    return [fit_one(job, pool) for job in jobs]


def _row(cell: Cell, result: FitResult) -> dict[str, Any]:
    run = result.document["run"]
    return {
        "cell": cell.name,
        "file": str(cell.path),
        "solutions_found": run["solutions_found"],
        "first_fit_at": result.first_fit_at,
        "budget_used": result.simulations,
        "best_max_abs_z": run["best_max_abs_z"],
        "fitted": bool(run["solutions_found"]),
    }


def fit_cells(base: FitConfig, cells: Sequence[Cell]) -> dict[str, Any]:
    """Fit ``cells`` with ``base``'s model, method and budget; write the summary table.

    ``base.out_dir`` is the folder's output; each cell's outputs go to a subfolder. For RL
    without ``base.policy_path`` the policy is trained once (its cost is reported once).

    Returns:
        The summary document (also written to ``cells.json``).
    """
    out = base.out_dir
    out.mkdir(parents=True, exist_ok=True)
    model = base.model.prepare()
    first = cells[0].measurements
    training: dict[str, Any] = {"simulations": 0, "wall_s": 0.0}
    with WorkerPool(model, first, base.workers, base.timeout_s, base.start_method) as pool:
        policy = base.policy_path
        if base.method == "rl" and policy is None:
            trainer = replace(
                base,
                model=model,
                measurements=first,
                out_dir=out / "training-run",
                budget=1,
                plot=False,
                stop_after_solutions=None,
            )
            trained = fit(trainer, pool)
            policy = out / "training-run" / "policy"
            training = {
                "simulations": trained.training_simulations,
                "wall_s": round(trained.training_wall_s, 1),
                "policy": str(policy),
            }
        jobs = [
            replace(
                base,
                model=model,
                measurements=cell.measurements,
                out_dir=out / cell.name,
                policy_path=policy,
            )
            for cell in cells
        ]
        results = run_cells(jobs, pool)
    rows = [_row(cell, result) for cell, result in zip(cells, results, strict=True)]
    with (out / "cells.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    document = {
        "method": base.method,
        "budget_per_cell": base.budget,
        "k": base.k,
        "cells": rows,
        "cells_fitted": sum(r["fitted"] for r in rows),
        "simulations_used": sum(r["budget_used"] for r in rows),
        "training": training,
    }
    (out / "cells.json").write_text(json.dumps(document, indent=2) + "\n")
    log.info(
        "cells_done",
        cells=len(rows),
        fitted=document["cells_fitted"],
        simulations=document["simulations_used"],
        training_simulations=training["simulations"],
    )
    return document


def format_cells(rows: Sequence[dict[str, Any]]) -> str:
    """The summary table as text (one line per cell)."""
    lines = [
        f"{'cell':<20} {'fitted':>6} {'solutions':>9} {'first fit':>9} {'used':>6} "
        f"{'best max|z|':>11}"
    ]
    for row in rows:
        first = "-" if row["first_fit_at"] is None else str(row["first_fit_at"])
        best = "-" if row["best_max_abs_z"] is None else f"{row['best_max_abs_z']:.3g}"
        lines.append(
            f"{row['cell']:<20} {'yes' if row['fitted'] else 'no':>6} "
            f"{row['solutions_found']:>9} {first:>9} {row['budget_used']:>6} {best:>11}"
        )
    return "\n".join(lines)
