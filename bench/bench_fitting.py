"""Benchmark: RL (after training) against CMA-ES and random search on held-out synthetic targets.

For the bundled reference model and the example measurement set's protocols and features, draw
``--targets`` random ground-truth parameter sets (held out: a seed disjoint from training), turn
their features into targets (5 % std), and fit each with every method until the first parameter
set with every |z| <= k, or the method's budget. Prints one JSON document: per method the
success rate, median and mean simulations-to-fit, and RL's training cost (simulations, wall time).

Bounded by default: --targets 10, RL training on a 2000-set bank plus 2000 SAC steps (4001
simulations), then per target at most --rl-budget 600, --cmaes-budget 600, --random-budget 300
simulations (about 25 min wall and 15 min CPU on 2 loaded cores). ``--methods`` and
``--policy`` run parts of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.logs import configure_logging
from fitting.measurements import example_measurements_path, load_measurements
from fitting.model import parse_model
from fitting.objective import rescore
from fitting.pool import WorkerPool
from fitting.run import FitConfig, fit
from fitting.synthetic import targets_from_evaluation


def held_out_targets(pool, measurements, space, count, seed):
    rng = np.random.default_rng(seed)
    tasks = []
    while len(tasks) < count:
        u = rng.uniform(0.15, 0.85, space.dim)
        params = space.from_unit(u)
        evaluation = pool.evaluate([params])[0]
        targets = targets_from_evaluation(evaluation, measurements.targets)
        if targets is not None:
            tasks.append((params, measurements.with_targets(targets)))
    return tasks


def summarise(runs, budget):
    fits = [r["first_fit_at"] for r in runs if r["first_fit_at"] is not None]
    return {
        "budget_per_target": budget,
        "success_rate": len(fits) / len(runs),
        "median_simulations_to_fit": statistics.median(fits) if fits else None,
        "mean_simulations_to_fit": statistics.fmean(fits) if fits else None,
        "simulations_per_target": [r["first_fit_at"] for r in runs],
        "best_max_abs_z_per_target": [round(r["best_max_abs_z"], 3) for r in runs],
        "wall_s_total": round(sum(r["wall_s"] for r in runs), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--bank-size", type=int, default=2000)
    parser.add_argument("--rl-budget", type=int, default=600)
    parser.add_argument("--cmaes-budget", type=int, default=600)
    parser.add_argument("--random-budget", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--k", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="rl,cmaes,random")
    parser.add_argument("--policy", type=Path, help="reuse a trained policy instead of training")
    parser.add_argument("--out", type=Path, help="keep run directories here (default: temporary)")
    args = parser.parse_args()
    configure_logging("console", "warning")

    base = load_measurements(example_measurements_path())
    model = parse_model("reference").prepare()
    workdir = args.out or Path(tempfile.mkdtemp(prefix="bench-fitting-"))
    methods = args.methods.split(",")
    report: dict[str, object] = {
        "model": "reference",
        "features": [t.key for t in base.targets],
        "k": args.k,
        "targets": args.targets,
        "workers": args.workers,
        "parameters": [p.name for p in base.parameters],
        "simulation": "one parameter set evaluated on both protocols (-5 nA and +4 nA steps)",
    }
    with WorkerPool(model, base, args.workers, 60.0) as pool:
        from fitting.parameters import ParameterSpace

        space = ParameterSpace(base.parameters)
        started = time.perf_counter()
        tasks = held_out_targets(pool, base, space, args.targets, seed=10_000 + args.seed)
        report["target_generation_wall_s"] = round(time.perf_counter() - started, 1)
        policy_path = args.policy
        if "rl" in methods and policy_path is None:
            config = FitConfig(
                model,
                base,
                workdir / "train",
                method="rl",
                budget=1,
                workers=args.workers,
                k=args.k,
                seed=args.seed,
                train_steps=args.train_steps,
                bank_size=args.bank_size,
                progress=False,
                plot=False,
                restart=True,
            )
            result = fit(config, pool)
            policy_path = workdir / "train" / "policy"
            report["rl_training"] = {
                "simulations": result.training_simulations,
                "wall_s": round(result.training_wall_s, 1),
                "bank_size": args.bank_size,
                "train_steps": args.train_steps,
            }
        budgets = {"rl": args.rl_budget, "cmaes": args.cmaes_budget, "random": args.random_budget}
        results: dict[str, object] = {}
        for method in methods:
            runs = []
            for index, (_truth, measurements) in enumerate(tasks):
                config = FitConfig(
                    model,
                    measurements,
                    workdir / f"{method}-{index}",
                    method=method,
                    budget=budgets[method],
                    workers=args.workers,
                    k=args.k,
                    seed=args.seed + index,
                    policy_path=policy_path if method == "rl" else None,
                    progress=False,
                    stop_after_solutions=1,
                    plot=False,
                    restart=True,
                )
                result = fit(config, pool)
                best = min(rescore(e, measurements.targets).max_abs_z for e in result.history)
                runs.append(
                    {
                        "first_fit_at": result.first_fit_at,
                        "best_max_abs_z": best,
                        "wall_s": result.wall_s,
                    }
                )
                print(
                    f"{method} target {index}: first fit at {result.first_fit_at}, "
                    f"best max|z| {best:.2f}",
                    file=sys.stderr,
                )
            results[method] = summarise(runs, budgets[method])
        report["results"] = results
    rl, cm = results.get("rl"), results.get("cmaes")
    if (
        isinstance(rl, dict)
        and isinstance(cm, dict)
        and rl["median_simulations_to_fit"]
        and cm["median_simulations_to_fit"]
    ):
        report["rl_vs_cmaes"] = {
            "median_simulation_ratio": round(
                rl["median_simulations_to_fit"] / cm["median_simulations_to_fit"], 3
            ),
            "target_met": bool(
                rl["median_simulations_to_fit"] <= cm["median_simulations_to_fit"] / 5
                and rl["success_rate"] >= cm["success_rate"]
            ),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
