"""Run a study on an executor, recording each point as it finishes, then tabulate and draw it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import structlog
from tqdm import tqdm

from controller.sweep.figures import DEFAULT_METRICS, heat_maps
from controller.sweep.point import run_point
from controller.sweep.store import PointStore, tidy_rows, write_table
from controller.sweep.study import Study, point_key
from core.executor.base import Executor, Task
from core.threads import check_threads

log = structlog.get_logger()

MANIFEST_FILE = "sweep.json"


def study_tasks(study: Study, threads: int | str = 1) -> list[Task]:
    """Every (parameter set, seed) of the study as a task, in a fixed order, without repeats.

    ``threads`` integrate each point's network (a speed setting: not part of a point's key).
    """
    threads = check_threads(threads)
    tasks: list[Task] = []
    seen: set[str] = set()
    for params in study.parameter_sets():
        for seed in study.seeds_list():
            key = point_key(params, seed)
            if key in seen:
                continue
            seen.add(key)
            spec = {
                "kind": study.kind,
                "target": study.target,
                "semantics": study.semantics,
                "n_scale": study.n_scale,
                "duration_s": study.duration_s,
                "episode": study.episode,
                "values": {**study.fixed, **params},
                "seed": seed,
                "threads": threads,
            }
            tasks.append(Task(key, run_point, (spec,), {**params, "seed": seed}))
    return tasks


def run_sweep(
    study: Study,
    out_dir: Path,
    executor: Executor,
    progress: bool = True,
    plot: bool = True,
    threads: int | str = 1,
) -> dict[str, Any]:
    """Run every point not yet recorded in ``out_dir``; write the table, figures and manifest.

    ``threads`` integrate each point's network (``--threads``).

    Returns:
        The manifest (also ``out_dir/sweep.json``): counts, engine, failures, files.
    """
    store = PointStore(out_dir, study.source)
    all_tasks = study_tasks(study, threads)
    todo = [t for t in all_tasks if not store.done(t.key)]
    resumed = len(all_tasks) - len(todo)
    log.info(
        "sweep_started",
        study=study.name,
        points=len(all_tasks),
        already_done=resumed,
        **executor.describe(),
    )
    failed = 0
    t0 = time.monotonic()
    bar = tqdm(
        total=len(all_tasks),
        initial=resumed,
        desc=study.name,
        unit="point",
        disable=not progress,
        dynamic_ncols=True,
    )
    bar.set_postfix(failed=0)
    try:
        for outcome in executor.run(todo):
            params = {k: v for k, v in outcome.params.items() if k != "seed"}
            record: dict[str, Any] = {
                "key": outcome.key,
                "params": params,
                "seed": outcome.params["seed"],
                "attempts": outcome.attempts,
            }
            if outcome.ok:
                record.update(status="ok", summary=outcome.value)
            else:
                failed += 1
                record.update(status="failed", error=outcome.error, lost=outcome.lost)
                log.error(
                    "sweep_point_failed",
                    params=dict(outcome.params),
                    error=outcome.error,
                    attempts=outcome.attempts,
                )
            store.append(record)
            bar.update()
            bar.set_postfix(failed=failed)
    finally:
        bar.close()
        store.close()
    wall_s = time.monotonic() - t0
    names = list(study.parameters)
    rows = tidy_rows(store.ok_records(), names)
    files = [p.name for p in write_table(rows, out_dir)] if rows else []
    if plot and rows:
        x = study.plot.get("x", names[0])
        y = study.plot.get("y", next((n for n in names if n != x), None))
        metrics = list(study.plot.get("metrics", DEFAULT_METRICS[study.kind]))
        files += [p.name for p in heat_maps(rows, x, y, metrics, out_dir, study.name)]
    failures = [
        {
            "params": r["params"],
            "seed": r["seed"],
            "error": r.get("error"),
            "attempts": r.get("attempts"),
        }
        for r in store.failed_records()
    ]
    manifest = {
        "study": study.name,
        "digest": study.digest,
        "points": len(all_tasks),
        "done": len(rows),
        "failed": len(failures),
        "resumed_with": resumed,
        "computed_now": len(todo) - failed,
        "wall_s": round(wall_s, 3),
        "executor": executor.describe(),
        "failures": failures,
        "files": files,
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return manifest
