"""Benchmark: RL against CMA-ES, BluePyOpt and random search, two problems, two target recipes.

Problems (``fitting/problems.py``): ``reference`` (the paper's five-compartment cell, 5
parameters, 8 features) and ``l5_active`` (a reduced L5 pyramidal cell with active dendrites
written as hoc/mod, 13 channel parameters, 3 stimuli, 10 features with experimenter stds).

Target recipes: ``anywhere`` draws the ground truth uniformly from the whole unit cube (log box),
``middle`` from its middle 70 % per parameter (the first benchmark's recipe). A draw whose
features cannot all be measured (a cell that does not fire for a step, say) is redrawn: a lab
only reports cells it could measure. Held-out draws use a seed disjoint from RL training.

Methods, each with the same budget per target, the same success rule (the first simulated set
with every |z| <= k) and several optimiser seeds per target:

* ``rl``: the trained policy (trained once per problem, reused for every target and seed), its
  rollouts starting at the training simulations whose features are nearest the target in z
  (re-simulated and counted; the bank is data the policy was trained on, not the truth);
  ``rl_centre``: the first rollout at the box centre, then random points; ``rl_no_centre``:
  every rollout starts at a random point (no method may start at the truth by construction: the
  truth is random in both recipes);
* ``cmaes``: CMA-ES with IPOP restarts (first run from the centre);
* ``bluepyopt``: BluePyOpt 1.14's IBEA (its default), 20 offspring per generation;
* ``random``: uniform random search.

Order: rounds over target index; in each round every (problem, recipe) cell runs its next target
with every method and seed, alternated, the hard problem with targets anywhere first. Every run
is appended to ``<out>/runs.jsonl`` as it ends, so a run cut short still yields the rounds that
finished (``--summarise-only`` prints the JSON from that file). Prints one JSON document.

Sizes: ``--quick`` (development, a few minutes): 2 targets, 1 seed, budget 60, training 120+40.
Full (default): 20 targets, 3 seeds, budget 400, training 1000-set bank + 500 SAC steps per
problem. On 2 shared cores the full run takes many hours; see docs/fitting.md for what ran.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.logs import configure_logging
from fitting.measurements import MeasurementSet
from fitting.objective import rescore
from fitting.parameters import ParameterSpace
from fitting.pool import WorkerPool
from fitting.problems import PROBLEMS, Problem
from fitting.run import FitConfig, fit

RECIPES = {"anywhere": (0.0, 1.0), "middle": (0.15, 0.85)}
METHODS = ("rl", "rl_centre", "rl_no_centre", "cmaes", "bluepyopt", "random")
RL_STARTS = {"rl": "bank", "rl_centre": "centre", "rl_no_centre": "random"}
CELLS = (
    ("l5_active", "anywhere"),
    ("l5_active", "middle"),
    ("reference", "anywhere"),
    ("reference", "middle"),
)


def draw_targets(
    pool: WorkerPool,
    problem: Problem,
    measurements: MeasurementSet,
    space: ParameterSpace,
    recipe: str,
    count: int,
    seed: int,
) -> list[tuple[dict[str, float], MeasurementSet]]:
    """``count`` ground truths from the recipe's range, each with every feature measurable."""
    low, high = RECIPES[recipe]
    rng = np.random.default_rng(seed)
    tasks: list[tuple[dict[str, float], MeasurementSet]] = []
    while len(tasks) < count:
        batch = [space.from_unit(rng.uniform(low, high, space.dim)) for _ in range(4)]
        for params, evaluation in zip(batch, pool.evaluate(batch), strict=True):
            targets = problem.targets_for(evaluation, measurements.targets)
            if targets is not None and len(tasks) < count:
                tasks.append((params, measurements.with_targets(targets)))
    return tasks


def train(
    pool: WorkerPool, problem: Problem, measurements: MeasurementSet, args: argparse.Namespace
) -> dict[str, Any]:
    """Train the problem's RL policy once; its directory and cost."""
    out = args.out / problem.name / "train"
    config = FitConfig(
        problem.model_spec(),
        measurements,
        out,
        method="rl",
        budget=1,
        workers=args.workers,
        k=args.k,
        seed=args.seed,
        train_steps=args.train_steps,
        bank_size=args.bank_size,
        progress=False,
        plot=False,
        restart=False,
    )
    result = fit(config, pool)
    return {
        "policy": str(out / "policy"),
        "simulations": result.training_simulations,
        "wall_s": round(result.training_wall_s, 1),
        "bank_size": args.bank_size,
        "train_steps": args.train_steps,
    }


def fit_once(
    pool: WorkerPool,
    problem: Problem,
    measurements: MeasurementSet,
    method: str,
    seed: int,
    policy: str | None,
    out: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One fit until the first solution or the budget; its record."""
    config = FitConfig(
        problem.model_spec(),
        measurements,
        out,
        method="rl" if method.startswith("rl") else method,
        budget=args.budget,
        workers=args.workers,
        k=args.k,
        seed=seed,
        policy_path=Path(policy) if method.startswith("rl") and policy else None,
        progress=False,
        stop_after_solutions=1,
        plot=False,
        restart=True,
        rl_start=RL_STARTS.get(method, "bank"),
        rl_parallel=args.rl_parallel,
        rl_patience=args.rl_patience,
    )
    result = fit(config, pool)
    best = min(rescore(e, measurements.targets).max_abs_z for e in result.history)
    return {
        "first_fit_at": result.first_fit_at,
        "budget_used": result.simulations,
        "best_max_abs_z": round(best, 3),
        "wall_s": round(result.wall_s, 2),
    }


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "mean": None, "min": None, "max": None}
    return {
        "median": float(statistics.median(values)),
        "mean": round(statistics.fmean(values), 1),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def summarise(records: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Per (problem, recipe, method): success rate, sims to first fit, spread over seeds."""
    cells: dict[str, Any] = {}
    keys = sorted({(r["problem"], r["recipe"]) for r in records})
    for problem, recipe in keys:
        cell: dict[str, Any] = {}
        for method in METHODS:
            runs = [
                r
                for r in records
                if (r["problem"], r["recipe"], r["method"]) == (problem, recipe, method)
            ]
            if not runs:
                continue
            fits = [r["first_fit_at"] for r in runs if r["first_fit_at"] is not None]
            by_target: dict[int, list[int | None]] = {}
            for r in runs:
                by_target.setdefault(r["target"], []).append(r["first_fit_at"])
            spreads = [
                max(v) - min(v)
                for v in ([x for x in vals if x is not None] for vals in by_target.values())
                if len(v) > 1
            ]
            cell[method] = {
                "runs": len(runs),
                "targets": len(by_target),
                "seeds_per_target": max(len(v) for v in by_target.values()),
                "successes": len(fits),
                "success_rate": round(len(fits) / len(runs), 3),
                "simulations_to_first_fit": _stats(fits),
                "median_spread_over_seeds": float(statistics.median(spreads)) if spreads else None,
                "mean_budget_used": round(statistics.fmean(r["budget_used"] for r in runs), 1),
                "first_fit_per_target_and_seed": {str(t): v for t, v in sorted(by_target.items())},
            }
        peers = {m: s for m, s in cell.items() if not m.startswith("rl")}
        for variant in RL_STARTS:
            rl = cell.get(variant)
            if not rl or not peers:
                continue
            # The best peer: highest success rate, then fewest simulations to first fit.
            best_name = min(
                peers,
                key=lambda m: (
                    -peers[m]["success_rate"],
                    peers[m]["simulations_to_first_fit"]["median"] or float("inf"),
                ),
            )
            best = peers[best_name]
            rl_median = rl["simulations_to_first_fit"]["median"]
            peer_median = best["simulations_to_first_fit"]["median"]
            ratio = None if rl_median is None or peer_median is None else rl_median / peer_median
            rl["vs_best_peer"] = {
                "peer": best_name,
                "median_ratio": None if ratio is None else round(ratio, 3),
                "goal_met": bool(
                    rl["success_rate"] >= best["success_rate"]
                    and rl_median is not None
                    and (ratio is None or ratio <= 0.2)
                ),
            }
        cells[f"{problem}/{recipe}"] = cell
    return cells


def complete_targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the targets every method ran with every seed on (a run cut short leaves one half
    done; comparing methods on different targets would not be fair)."""
    pairs = {(r["method"], r["seed"]) for r in runs}
    done: dict[tuple[str, str, int], set[tuple[str, int]]] = {}
    for r in runs:
        done.setdefault((r["problem"], r["recipe"], r["target"]), set()).add(
            (r["method"], r["seed"])
        )
    return [r for r in runs if done[(r["problem"], r["recipe"], r["target"])] == pairs]


def amortisation(cells: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """Cells (fits) after which RL's training plus fits costs less than CMA-ES's fits."""
    result: dict[str, Any] = {}
    for key, cell in cells.items():
        problem = key.split("/")[0]
        rl, cm = cell.get("rl") or cell.get("rl_no_centre"), cell.get("cmaes")
        if not rl or not cm or problem not in training:
            continue
        saved = cm["mean_budget_used"] - rl["mean_budget_used"]
        sims = training[problem]["simulations"]
        result[key] = {
            "training_simulations": sims,
            "cmaes_mean_budget_used": cm["mean_budget_used"],
            "rl_mean_budget_used": rl["mean_budget_used"],
            "cells_to_break_even": (None if saved <= 0 else int(np.ceil(sims / saved))),
        }
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line (``--help`` shows the defaults)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small development run")
    parser.add_argument("--targets", type=int, default=20, help="targets per cell (20)")
    parser.add_argument("--seeds", type=int, default=3, help="optimiser seeds per target (3)")
    parser.add_argument("--budget", type=int, default=400, help="simulations per fit (400)")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--bank-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--problems", default="l5_active,reference")
    parser.add_argument("--recipes", default="anywhere,middle")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--rl-parallel",
        type=int,
        default=None,
        help="RL rollouts advanced together from the start (default: neuroloop-fit's, one "
        "rollout until the first solution, then one per worker)",
    )
    parser.add_argument(
        "--rl-patience",
        type=int,
        default=None,
        help="restart an RL rollout after this many steps without improvement (default: none)",
    )
    parser.add_argument("--out", type=Path, help="run directory (runs.jsonl; default: temporary)")
    parser.add_argument(
        "--summarise-only", action="store_true", help="print the JSON from <out>/runs.jsonl"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="with --summarise-only: print the tables instead"
    )
    parser.add_argument("--note", default="", help="a remark stored in the JSON (e.g. run size)")
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.seeds, args.budget = 2, 1, 60
        args.train_steps, args.bank_size = 40, 120
    args.out = args.out or Path(tempfile.mkdtemp(prefix="bench-fitting-"))
    return args


def report(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON document from ``runs.jsonl``."""
    lines = (args.out / "runs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    training = {r["problem"]: r for r in records if r.get("kind") == "training"}
    runs = complete_targets([r for r in records if r.get("kind") == "fit"])
    cells = summarise(runs, args.budget)
    return {
        "note": args.note,
        "k": args.k,
        "budget_per_fit": args.budget,
        "seeds_per_target": args.seeds,
        "targets_per_cell_requested": args.targets,
        "workers": args.workers,
        "rl_starts": RL_STARTS,
        "rl_parallel": args.rl_parallel,
        "rl_patience": args.rl_patience,
        "success_rule": "first simulated parameter set with every |z| <= k within the budget",
        "recipes": {k: list(v) for k, v in RECIPES.items()},
        "problems": {
            name: {
                "model": PROBLEMS[name].model.split("/fitting/")[-1],
                "parameters": [p.name for p in PROBLEMS[name].measurements().parameters],
                "features": [t.key for t in PROBLEMS[name].measurements().targets],
            }
            for name in {r["problem"] for r in records}
        },
        "rl_training": training,
        "results": cells,
        "amortisation": amortisation(cells, training),
    }


LABELS = {
    "rl": "RL, starts at the nearest bank members",
    "rl_centre": "RL, first rollout from the centre",
    "rl_no_centre": "RL, random starts only",
    "cmaes": "CMA-ES (IPOP)",
    "bluepyopt": "BluePyOpt IBEA",
    "random": "random search",
}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def markdown(document: dict[str, Any]) -> str:
    """The results as one Markdown table (the README's and docs/fitting.md's)."""
    lines = [
        "| problem / targets | method | fitted | median sims to first fit | mean | range "
        "| median spread over seeds | RL vs best peer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell, methods in document["results"].items():
        for method, row in methods.items():
            sims = row["simulations_to_first_fit"]
            span = "—" if sims["min"] is None else f"{sims['min']:g}–{sims['max']:g}"
            versus = row.get("vs_best_peer")
            if versus is None:
                verdict = ""
            else:
                ratio = versus["median_ratio"]
                shown = "—" if ratio is None else f"{ratio:.2f}×"
                met = "met" if versus["goal_met"] else "not met"
                verdict = f"{shown} of {versus['peer']}: goal {met}"
            spread = row["median_spread_over_seeds"]
            lines.append(
                f"| {cell} ({row['targets']} × {row['seeds_per_target']} seeds) "
                f"| {LABELS.get(method, method)} | {row['successes']}/{row['runs']} "
                f"| {_num(sims['median'])} | {_num(sims['mean'])} | {span} "
                f"| {_num(spread)} | {verdict} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    args = parse_args(argv)
    configure_logging("console", "warning")
    if args.summarise_only:
        document = report(args)
        print(markdown(document) if args.markdown else json.dumps(document, indent=2))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "runs.jsonl"
    done = set()
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            r = json.loads(line)
            done.add(
                (
                    r.get("kind"),
                    r["problem"],
                    r.get("recipe"),
                    r.get("target"),
                    r.get("method"),
                    r.get("seed"),
                )
            )
    problems = args.problems.split(",")
    recipes = args.recipes.split(",")
    methods = args.methods.split(",")
    cells = [c for c in CELLS if c[0] in problems and c[1] in recipes]
    pools: dict[str, WorkerPool] = {}
    state: dict[str, Any] = {}
    with log_path.open("a") as log:

        def write(record: dict[str, Any]) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        try:
            for name in problems:
                problem = PROBLEMS[name]
                measurements = problem.measurements()
                pool = WorkerPool(problem.model_spec().prepare(), measurements, args.workers, 60)
                pools[name] = pool
                space = ParameterSpace(measurements.parameters)
                training = None
                if any(m.startswith("rl") for m in methods):
                    started = time.perf_counter()
                    training = train(pool, problem, measurements, args)
                    if ("training", name, None, None, None, None) not in done:
                        write({"kind": "training", "problem": name, **training})
                    print(
                        f"{name}: trained in {time.perf_counter() - started:.0f} s", file=sys.stderr
                    )
                for recipe in recipes:
                    seed = 10_000 + 1_000 * list(RECIPES).index(recipe) + args.seed
                    tasks = draw_targets(
                        pool, problem, measurements, space, recipe, args.targets, seed
                    )
                    state[f"{name}/{recipe}"] = (problem, tasks, training)
            for index in range(args.targets):
                for name, recipe in cells:
                    problem, tasks, training = state[f"{name}/{recipe}"]
                    _truth, measurements = tasks[index]
                    for seed in range(args.seeds):
                        for method in methods:
                            key = ("fit", name, recipe, index, method, seed)
                            if key in done:
                                continue
                            record = fit_once(
                                pools[name],
                                problem,
                                measurements,
                                method,
                                1000 * seed + index,
                                training["policy"] if training else None,
                                args.out / name / recipe / f"{method}-{index}-{seed}",
                                args,
                            )
                            write(
                                {
                                    "kind": "fit",
                                    "problem": name,
                                    "recipe": recipe,
                                    "target": index,
                                    "method": method,
                                    "seed": seed,
                                    **record,
                                }
                            )
                            print(
                                f"{name}/{recipe} target {index} seed {seed} {method}: "
                                f"first fit {record['first_fit_at']}, best max|z| "
                                f"{record['best_max_abs_z']}",
                                file=sys.stderr,
                            )
        finally:
            for pool in pools.values():
                pool.close()
    print(json.dumps(report(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
