"""Fit a folder of measurement sets (a lab's cells) with one model and, for RL, one policy.

Every measurement file in the folder (``*.yaml``, ``*.yml``, ``*.json``, ``*.csv``) is one
cell, except files that a cell names as a raw trace (``traces: - file: ...``). The cells must
share the stimuli, the features (in any order: each cell's targets are put in the first valid
cell's order) and the parameter bounds a file may give, so that one trained RL policy serves
them all. A file that cannot be read, or that differs, is reported in the summary with the
reason and left out; the other cells are fitted. With ``--method rl`` and no ``--policy`` the
policy is trained once, on the first valid cell, into ``<out>/training-run/policy``.

Cells run in parallel **lanes**, each with a pool of its own on the executor
(:mod:`core.executor`): local worker processes, or the Ray cluster with ``--ray``. By default
there are as many lanes as workers (at most one per cell), so each lane fits its cells one
after another on ``workers // lanes`` processes; a cell's fit is then the same as
``neuroloop-fit --measurements CELL --workers workers//lanes`` (the same simulations, the same
result). A cell that fails (a simulation error the fit cannot score, a lost cluster) is
reported with its error and the other cells go on.

Outputs: ``<out>/<cell>/`` holds each cell's usual files (``solutions.json``,
``solutions.csv``, ``archive.jsonl``, ...), and ``<out>/cells.csv`` / ``<out>/cells.json`` the
summary table, rewritten each time a cell ends (a run stopped midway keeps what it finished):
one row per cell with its status, the solutions found, the simulation of the first fit, the
simulations used, the best max|z| and any error; the JSON adds the policy's training cost and
the RL cost per cell with the training spread over the folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog
import yaml

from core.errors import ConfigError, FittingError
from core.executor.base import ExecutorError
from fitting.cluster import ExecutorPool
from fitting.measurements import MeasurementSet, load_measurements
from fitting.pool import WorkerPool
from fitting.run import FitConfig, FitResult, fit

log = structlog.get_logger()

SUFFIXES = (".yaml", ".yml", ".json", ".csv")
SUMMARY_COLUMNS = (
    "cell",
    "file",
    "status",
    "solutions_found",
    "first_fit_at",
    "budget_used",
    "best_max_abs_z",
    "fitted",
    "error",
    "started_unix_s",
    "ended_unix_s",
)
#: ``status`` of a summary row
FITTED, NOT_FITTED, FAILED, INVALID = "fitted", "not fitted", "failed", "invalid"
#: ``status`` of a cell not fitted yet, and of one an interrupted run did not reach
PENDING, NOT_RUN = "pending", "not run"

#: Makes the pool a lane fits its cells on: ``(workers) -> pool`` (closed by the caller).
PoolFactory = Callable[[int], ExecutorPool]


@dataclass(frozen=True)
class Cell:
    """One measurement set of the folder.

    Attributes:
        name: The file's stem (also its output directory).
        path: The measurement file.
        measurements: Its validated content, targets in the folder's order.
    """

    name: str
    path: Path
    measurements: MeasurementSet


@dataclass(frozen=True)
class InvalidCell:
    """A file of the folder that is not fitted, and why.

    Attributes:
        name: The file's stem.
        path: The file.
        error: What was expected and what arrived.
    """

    name: str
    path: Path
    error: str


@dataclass(frozen=True)
class Folder:
    """A folder's cells: those to fit, and the files left out with their reasons."""

    cells: list[Cell]
    invalid: list[InvalidCell]


def _trace_files(files: Sequence[Path]) -> set[Path]:
    """Files that the folder's YAML/JSON cells name as raw traces (not cells themselves)."""
    named: set[Path] = set()
    for path in files:
        if path.suffix.lower() == ".csv":
            continue
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # load_measurements reports it
        traces = data.get("traces") if isinstance(data, dict) else None
        for entry in traces if isinstance(traces, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                named.add((path.parent / entry["file"]).resolve())
    return named


def _difference(
    cell: MeasurementSet, first: MeasurementSet, first_name: str, compare_bounds: bool
) -> str | None:
    """Why ``cell`` cannot share ``first``'s policy and pool, or ``None`` (order aside)."""
    by_name = {p.name: p for p in cell.stimuli}
    first_names = [p.name for p in first.stimuli]
    if sorted(by_name) != sorted(first_names):
        return f"expected the stimuli of {first_name} ({first_names}), actual {sorted(by_name)}"
    other = [p.name for p in first.stimuli if by_name[p.name] != p]
    if other:
        return (
            f"expected the stimuli of {first_name}, actual other amplitudes or timing for {other}"
        )
    keys, first_keys = [t.key for t in cell.targets], [t.key for t in first.targets]
    if sorted(keys) != sorted(first_keys):
        return f"expected the same features as {first_name} ({first_keys}), actual {keys}"
    bounds = sorted(cell.parameters, key=lambda p: p.name)
    if compare_bounds and bounds != sorted(first.parameters, key=lambda p: p.name):
        return (
            f"expected the same parameter bounds as {first_name} "
            f"({[p.name for p in first.parameters] or 'none: the model defaults'}), actual "
            f"{[(p.name, p.low, p.high) for p in cell.parameters] or 'none'}"
        )
    return None


def _in_order(cell: MeasurementSet, first: MeasurementSet) -> MeasurementSet:
    """``cell`` with its stimuli, targets and bounds in ``first``'s order.

    A policy reads the targets in that order. Bounds are reordered only when the cell gives
    the same names (with ``--param`` they are not compared and stay as they are).
    """
    stimuli = {p.name: p for p in cell.stimuli}
    targets = {t.key: t for t in cell.targets}
    bounds = {p.name: p for p in cell.parameters}
    same_names = sorted(bounds) == sorted(p.name for p in first.parameters)
    return replace(
        cell,
        stimuli=tuple(stimuli[p.name] for p in first.stimuli),
        targets=tuple(targets[t.key] for t in first.targets),
        parameters=tuple(bounds[p.name] for p in first.parameters)
        if same_names
        else cell.parameters,
    )


#: Names of ``--out`` entries that a cell's output folder must not take
RESERVED = ("training-run",)


def load_cells(directory: Path, compare_bounds: bool = True) -> Folder:
    """Every measurement file in ``directory``: the valid cells and the files left out.

    Args:
        directory: The folder.
        compare_bounds: Whether cells must give the same parameter bounds (not when the run
            sets them for all, ``neuroloop-fit --param``).

    Raises:
        ConfigError: If the folder is missing, holds no measurement file, two files share a
            stem, or no file is a valid cell (every file's reason is in the message).
    """
    if not directory.is_dir():
        raise ConfigError(f"Expected a folder of measurement files at {directory}, actual missing")
    found = sorted(p for p in directory.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    traces = _trace_files(found)
    files = [p for p in found if p.resolve() not in traces]
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
    cells: list[Cell] = []
    invalid: list[InvalidCell] = []
    for path in files:
        if path.stem in RESERVED:
            invalid.append(InvalidCell(path.stem, path, f"{path}: expected a cell name other "
                           f"than {list(RESERVED)} (output folders of the run), actual "
                           f"{path.stem!r}. Fix: rename the file"))  # fmt: skip
            continue
        try:
            measurements = load_measurements(path)
        except (ConfigError, FittingError) as err:
            invalid.append(InvalidCell(path.stem, path, str(err)))
            continue
        if cells:
            first = cells[0]
            reason = _difference(measurements, first.measurements, first.path.name, compare_bounds)
            if reason is not None:
                invalid.append(InvalidCell(path.stem, path, f"{path}: {reason}. Fix: put cells "
                               "measured another way in another folder"))  # fmt: skip
                continue
            measurements = _in_order(measurements, first.measurements)
        cells.append(Cell(path.stem, path, measurements))
    if not cells:
        raise ConfigError(
            f"Expected at least one valid measurement file in {directory}, actual none: "
            + "; ".join(bad.error for bad in invalid)
        )
    for bad in invalid:
        log.error("cell_invalid", cell=bad.name, reason=bad.error)
    return Folder(cells, invalid)


def lanes_for(cells: int, workers: int, lanes: int | None = None) -> int:
    """Lanes to run: ``lanes`` if given, else one per worker; at most the workers and cells."""
    return max(1, min(cells, workers, lanes if lanes is not None else workers))


def run_cells(
    jobs: Sequence[FitConfig],
    make_pool: PoolFactory,
    lanes: int,
    workers_per_lane: int,
    on_done: Callable[[int, FitResult | None, str | None, float, float], None],
    fit_one: Callable[..., FitResult] = fit,
    names: Sequence[str] | None = None,
) -> None:
    """Fit every job in ``lanes`` threads, each on a pool of its own; report each as it ends.

    ``on_done(index, result, error, started_s, ended_s)`` is called (under a lock) when job
    ``index`` ends: with its result, or with ``None`` and the error that stopped it (any
    ``Exception`` of one job is that job's failure; the others go on). An
    :class:`~core.executor.base.ExecutorError` (the executor itself failed: a lost cluster), an
    interrupt (``KeyboardInterrupt``) or any other ``BaseException`` stops the lanes from taking
    another job and is raised here at once; the lanes are daemon threads, so a job still
    running does not keep the process alive (its pool's workers stop with the process). Log
    lines of a job carry ``cell=names[index]``.
    """
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(jobs)):
        todo.put(index)
    lock = threading.Lock()
    stop = threading.Event()
    crashed: list[BaseException] = []

    def lane() -> None:
        try:
            with make_pool(workers_per_lane) as pool:
                while not stop.is_set():
                    try:
                        index = todo.get_nowait()
                    except queue.Empty:
                        return
                    if names is not None:
                        structlog.contextvars.bind_contextvars(cell=names[index])
                    started = time.time()
                    try:
                        result, error = fit_one(jobs[index], pool), None
                    except ExecutorError:
                        raise  # the executor (a cluster) is gone: no other cell can run either
                    except (ConfigError, FittingError) as err:
                        result, error = None, str(err)
                    except Exception as err:  # a bug or a library's error: still one cell's
                        log.exception("cell_crashed")
                        result, error = None, f"{type(err).__name__}: {err}"
                    with lock:
                        if not stop.is_set():
                            on_done(index, result, error, started, time.time())
        except BaseException as err:
            crashed.append(err)
            stop.set()

    threads = [threading.Thread(target=lane, name=f"cells-lane-{i}", daemon=True)
               for i in range(lanes)]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads) and not stop.is_set():
            for thread in threads:
                thread.join(timeout=0.2)
    except BaseException:
        stop.set()
        raise
    if crashed:
        raise crashed[0]


def _empty_row(name: str, path: Path, status: str, error: str | None) -> dict[str, Any]:
    return {
        "cell": name,
        "file": str(path),
        "status": status,
        "solutions_found": 0,
        "first_fit_at": None,
        "budget_used": 0,
        "best_max_abs_z": None,
        "fitted": False,
        "error": error,
        "started_unix_s": None,
        "ended_unix_s": None,
    }


def _fitted_row(cell: Cell, result: FitResult) -> dict[str, Any]:
    run = result.document["run"]
    found = int(run["solutions_found"])
    return {
        **_empty_row(cell.name, cell.path, FITTED if found else NOT_FITTED, None),
        "solutions_found": found,
        "first_fit_at": result.first_fit_at,
        "budget_used": result.simulations,
        "best_max_abs_z": run["best_max_abs_z"],
        "fitted": bool(found),
    }


def _policy_cost(policy: Path) -> dict[str, Any]:
    """What a reused policy cost to train (from its ``policy.json``), when it says."""
    from fitting.optimizers.rl import read_policy_info

    try:
        info = read_policy_info(policy / "policy.json")
    except (ConfigError, OSError):
        return {}
    return {
        "simulations_when_trained": info.training_simulations,
        "wall_s_when_trained": info.training_wall_s,
    }


def _summary(
    base: FitConfig,
    rows: list[dict[str, Any]],
    training: dict[str, Any],
    lanes: int,
    workers_per_lane: int,
) -> dict[str, Any]:
    done = [r for r in rows if r["status"] in (FITTED, NOT_FITTED)]
    used = sum(int(r["budget_used"]) for r in rows)
    document: dict[str, Any] = {
        "method": base.method,
        "budget_per_cell": base.budget,
        "k": base.k,
        "lanes": lanes,
        "workers_per_lane": workers_per_lane,
        "cells": rows,
        "cells_done": len(done),
        "cells_fitted": sum(bool(r["fitted"]) for r in rows),
        "cells_failed": sum(r["status"] == FAILED for r in rows),
        "cells_invalid": sum(r["status"] == INVALID for r in rows),
        "cells_not_run": sum(r["status"] in (PENDING, NOT_RUN) for r in rows),
        "simulations_used": used,
        "training": training,
    }
    if base.method == "rl" and done:
        cost = training.get("simulations") or training.get("simulations_when_trained") or 0
        document["rl_cost_per_cell"] = {
            "fits_mean": used / len(done),
            "with_training_spread": (used + int(cost)) / len(done),
            "training_simulations_counted": int(cost),
        }
    return document


def _replace_durably(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through a temporary file, flushed to disk, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _write(out: Path, document: dict[str, Any]) -> None:
    """``cells.json`` then ``cells.csv``, each replaced whole (never left half-written)."""

    def table(handle: Any) -> None:
        writer = csv.DictWriter(handle, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(document["cells"])

    _replace_durably(out / "cells.json", lambda h: h.write(json.dumps(document, indent=2) + "\n"))
    _replace_durably(out / "cells.csv", table)


def fit_cells(
    base: FitConfig,
    folder: Folder,
    lanes: int | None = None,
    make_pool: PoolFactory | None = None,
    fit_one: Callable[..., FitResult] = fit,
) -> dict[str, Any]:
    """Fit ``folder``'s cells with ``base``'s model, method and budget; write the summary.

    Args:
        base: The run (``out_dir`` is the folder's output; each cell's goes to a subfolder;
            ``workers`` the processes, or cluster CPUs, shared by the lanes).
        folder: From :func:`load_cells`.
        lanes: Cells fitted at once (default: one per worker; at most the workers and cells).
        make_pool: Builds a lane's pool for a number of workers (default: local processes;
            ``neuroloop-fit --ray`` passes pools on the cluster).
        fit_one: The fit of one cell (tests replace it).

    Returns:
        The summary document (also written to ``cells.json``, first with every cell pending,
        then each time a cell ends; an interrupted run's unfinished cells say ``not run``).
    """
    cells = folder.cells
    out = base.out_dir
    out.mkdir(parents=True, exist_ok=True)
    model = base.model.prepare()
    first = cells[0].measurements

    def local_pool(workers: int) -> ExecutorPool:
        return WorkerPool(model, first, workers, base.timeout_s, base.start_method)

    pools = make_pool or local_pool
    total = lanes_for(len(cells), base.workers, lanes)
    per_lane = max(1, base.workers // total)
    if base.workers % total:
        log.info("cells_idle_workers", workers=base.workers, lanes=total,
                 idle=base.workers % total)  # fmt: skip
    rows: list[dict[str, Any]] = [_empty_row(c.name, c.path, PENDING, None) for c in cells]
    rows += [_empty_row(b.name, b.path, INVALID, b.error) for b in folder.invalid]
    training: dict[str, Any] = {"simulations": 0, "wall_s": 0.0, "reused": False}
    _write(out, _summary(base, rows, training, total, per_lane))
    policy = base.policy_path
    if base.method == "rl" and policy is None:
        trainer = replace(base, model=model, measurements=first, out_dir=out / "training-run",
                          budget=1, plot=False, stop_after_solutions=None)  # fmt: skip
        with pools(base.workers) as pool:
            trained = fit(trainer, pool)
        policy = out / "training-run" / "policy"
        training = {
            # what the policy cost (trained now, or earlier into this folder and resumed): its
            # bank and SAC steps, and the training run's one fitting simulation
            "simulations": trained.training_simulations + trained.simulations,
            "wall_s": round(trained.training_wall_s, 1),
            "policy": str(policy),
            "reused": False,
        }
    elif base.method == "rl" and policy is not None:
        training = {"simulations": 0, "wall_s": 0.0, "policy": str(policy), "reused": True,
                    **_policy_cost(policy)}  # fmt: skip
    jobs = [
        replace(base, model=model, measurements=cell.measurements, out_dir=out / cell.name,
                policy_path=policy, progress=base.progress and total == 1)
        for cell in cells
    ]  # fmt: skip
    progress = _CellsProgress(len(cells), base.progress and total > 1)

    def on_done(index: int, result: FitResult | None, error: str | None, t0: float,
                t1: float) -> None:  # fmt: skip
        cell = cells[index]
        row = (_fitted_row(cell, result) if result is not None
               else _empty_row(cell.name, cell.path, FAILED, error))  # fmt: skip
        row["started_unix_s"], row["ended_unix_s"] = round(t0, 3), round(t1, 3)
        rows[index] = row
        if error is not None:
            log.error("cell_failed", cell=cell.name, reason=error)
        progress.step(row)
        _write(out, _summary(base, rows, training, total, per_lane))

    try:
        run_cells(jobs, pools, total, per_lane, on_done, fit_one, [c.name for c in cells])
    except BaseException as err:
        for k, row in enumerate(rows[: len(cells)]):
            if row["status"] == PENDING:
                reason = f"not run: the run stopped ({type(err).__name__})"
                rows[k] = _empty_row(row["cell"], cells[k].path, NOT_RUN, reason)
        _write(out, _summary(base, rows, training, total, per_lane))
        raise
    finally:
        progress.close()
    document = _summary(base, rows, training, total, per_lane)
    _write(out, document)
    log.info(
        "cells_done",
        cells=len(rows),
        fitted=document["cells_fitted"],
        failed=document["cells_failed"],
        invalid=document["cells_invalid"],
        simulations=document["simulations_used"],
        training_simulations=training.get("simulations"),
        lanes=total,
    )
    return document


class _CellsProgress:
    """A progress bar over cells when several cells run at once (else each fit shows its own)."""

    def __init__(self, cells: int, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=cells, desc="cells", unit="cell")

    def step(self, row: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{row['cell']}: {row['status']}")
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_cells(rows: Sequence[dict[str, Any]]) -> str:
    """The summary table as text (one line per cell; errors on the lines below)."""
    lines = [
        f"{'cell':<20} {'status':>10} {'solutions':>9} {'first fit':>9} {'used':>6} "
        f"{'best max|z|':>11}"
    ]
    for row in rows:
        first = "-" if row["first_fit_at"] is None else str(row["first_fit_at"])
        best = row["best_max_abs_z"]
        shown = "-" if best is None or not math.isfinite(best) else f"{best:.3g}"
        lines.append(
            f"{row['cell']:<20} {row['status']:>10} {row['solutions_found']:>9} {first:>9} "
            f"{row['budget_used']:>6} {shown:>11}"
        )
    for row in rows:
        if row.get("error"):
            lines.append(f"  {row['cell']}: {row['error']}")
    return "\n".join(lines)
