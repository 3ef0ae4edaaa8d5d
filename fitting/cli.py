"""``neuroloop-fit``: fit a NEURON model's channel parameters to measurements.

Exit status: 0 when at least one parameter set reproduces every target within ``k``; 3 when the
budget ran out without one (outputs are still written, with the best candidates); 2 on bad
input (model, measurements, arguments). With ``--measurements-dir``: 0 when every cell was
fitted, 3 when at least one was not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from core.errors import ConfigError, FittingError
from core.executor.base import ExecutorError
from core.executor.factory import add_executor_arguments
from core.logs import add_log_options, configure_from_args
from fitting.cells import Folder, fit_cells, format_cells, load_cells
from fitting.cluster import ExecutorPool
from fitting.measurements import (
    PAPER_STIMULUS,
    MeasurementSet,
    Target,
    example_measurements_path,
    load_measurements,
)
from fitting.model import parse_model
from fitting.parameters import ParameterSpec, parse_parameter_name
from fitting.run import METHODS, FitConfig, discover_in_worker, fit

log = structlog.get_logger()

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NO_SOLUTION = 3
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT

EPILOG = """\
examples:
  # fit the bundled 5-compartment model to the paper's -5 nA measurement set (bundled example)
  neuroloop-fit --model reference --measurements fitting/examples/paper_minus5na.yaml \\
      --method cmaes --budget 600 --workers 2 --out fit-out

  # the same on a Ray cluster (docs/cluster.md): every parameter set is a task on the cluster
  neuroloop-fit --model reference --measurements fitting/examples/paper_minus5na.yaml \\
      --method cmaes --budget 600 --ray auto --out fit-out

  # list the channel parameters a hoc model exposes (mod files beside the hoc file are compiled)
  neuroloop-fit --model cells/cell.hoc:MyCell --list-params

  # RL: train a fitting policy once (--bank-size + 1 + --train-steps simulations, 4001 by
  # default), then reuse it for new measurements of the same stimuli and features
  neuroloop-fit --model reference --measurements a.yaml --method rl --out run-a
  neuroloop-fit --model reference --measurements b.yaml --method rl --policy run-a/policy \\
      --budget 100 --out run-b

  # a lab's cells: every file in cells/ fitted with one policy (trained once if no --policy,
  # or the one run-a trained above), two cells at a time (one lane per worker); one row per
  # cell in lab/cells.csv, each cell's solutions in lab/<cell>/
  neuroloop-fit --model reference --measurements-dir cells/ --method rl --policy run-a/policy \\
      --budget 200 --workers 2 --out lab

  # BluePyOpt's own optimiser (IBEA) on the same model, features and budget, for comparison
  neuroloop-fit --model reference --measurements example --method bluepyopt --out run-bpo

model forms:
  reference                      the bundled soma + hillock + 3-dendrite model (hh + pas)
  pkg.module:function            a Python builder returning a cell (with a section_lists
                                 mapping, or Section attributes)
  path/to/file.py:function       the same, from a file
  path/to/cell.hoc:TemplateName  a hoc template; .mod files beside it (and --mod-dir) are
                                 compiled once into a content-hashed cache

measurements (.yaml/.json/.csv): stimuli (current steps), targets (feature, mean, std, weight),
optional parameter bounds, or raw traces to extract targets from; see docs/fitting.md.
features: input_resistance, resting_potential, steady_state_voltage, voltage_deflection,
decay_time_constant, spike_count, mean_frequency, ap_amplitude, ap_half_width, ahp_depth,
time_to_first_spike, or any eFEL feature name.

exit codes: 0 fitted (every cell, with --measurements-dir), 3 no parameter set fitted (some
cell not fitted), 2 bad input (with --measurements-dir: some file invalid or some cell's fit
failed; the other cells are fitted), 130 interrupted (finished cells are kept).

outputs in --out: solutions.json / solutions.csv (ranked sets with every |z| <= k, spread per
parameter, best candidates), best_traces.png, archive.jsonl (every simulation; rerunning the same
command resumes from it), policy/ (rl). With --measurements-dir: cells.csv / cells.json (one row
per cell: status fitted, not fitted, failed or invalid with the reason; the policy's training
cost and RL's cost per cell), <cell>/ per cell as above, training-run/policy/ (rl, trained here).
"""


def _parse_param(text: str) -> ParameterSpec:
    name, eq, bounds = text.partition("=")
    parts = bounds.split(":")
    if not eq or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "lin")):
        raise argparse.ArgumentTypeError(
            f"expected NAME=LOW:HIGH[:log|lin], e.g. soma.gnabar_hh=0.02:0.6:log, actual {text!r}"
        )
    location, variable = parse_parameter_name(name)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numeric LOW:HIGH in {text!r}") from None
    return ParameterSpec(location, variable, low, high, len(parts) == 2 or parts[2] == "log")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, actual {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, actual {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, actual {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, actual {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, actual {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, actual {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="neuroloop-fit",
        description="Fit channel parameters of a multi-compartment NEURON model to measurements "
        "(RL, CMA-ES with restarts, BluePyOpt's IBEA, or random search) and list every "
        "parameter set that reproduces them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model to fit: 'reference', module:function, file.py:function or file.hoc:Template",
    )
    parser.add_argument(
        "--mod-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory of .mod files (repeatable)",
    )
    parser.add_argument(
        "--measurements",
        type=Path,
        help="measurement file (.yaml/.json/.csv), or 'example' for the bundled paper set",
    )
    parser.add_argument(
        "--measurements-dir",
        type=Path,
        metavar="DIR",
        help="fit every measurement file in DIR (a lab's cells: same stimuli and features) "
        "with one model and, for rl, one policy; summary in --out/cells.csv",
    )
    parser.add_argument(
        "--lanes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --measurements-dir: cells fitted at once, each lane on --workers/N "
        "processes (default: one lane per worker, or per cluster CPU with --ray)",
    )
    parser.add_argument(
        "--list-params",
        action="store_true",
        help="print the model's discoverable channel parameters as JSON and exit",
    )
    parser.add_argument(
        "--method", choices=METHODS, default="cmaes", help="optimiser (default: cmaes)"
    )
    parser.add_argument(
        "--budget", type=_positive_int, default=1000, help="simulations for the fit (default: 1000)"
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=1, help="worker processes (default: 1)"
    )
    add_executor_arguments(parser)
    parser.add_argument(
        "--k", type=_positive_float, default=2.0, help="a solution has every |z| <= K (default: 2)"
    )
    parser.add_argument("--out", type=Path, help="output directory (also the checkpoint)")
    parser.add_argument(
        "--param",
        action="append",
        type=_parse_param,
        default=[],
        metavar="NAME=LOW:HIGH[:log|lin]",
        help="parameter to fit with bounds, e.g. soma.gnabar_hh=0.02:0.6 "
        "(repeatable; overrides the file's)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=60.0,
        help="seconds allowed per simulation (default: 60)",
    )
    parser.add_argument(
        "--policy", type=Path, help="rl: reuse a trained policy directory instead of training"
    )
    parser.add_argument(
        "--train-steps",
        type=_non_negative_int,
        default=2000,
        help="rl: SAC interaction simulations after hindsight pre-training on the bank "
        "(default: 2000; 0 keeps the pre-trained actor)",
    )
    parser.add_argument(
        "--bank-size",
        type=_positive_int,
        default=2000,
        help="rl: random parameter sets simulated for hindsight pre-training (default: 2000)",
    )
    parser.add_argument(
        "--rl-start",
        choices=("bank", "centre", "random"),
        default="bank",
        help="rl: where rollouts start: bank = the training simulations nearest the measurements "
        "in z (default), centre = the box centre then random points, random = random points",
    )
    parser.add_argument(
        "--rl-parallel",
        type=_positive_int,
        help="rl: rollouts advanced together from the start, one simulation each per step "
        "(default: one rollout until the first solution, the fewest simulations to a fit, "
        "then one per worker)",
    )
    parser.add_argument(
        "--rl-patience",
        type=_positive_int,
        help="rl: restart a rollout from the next start after this many steps without "
        "improvement (default: only after a fit or the policy's 25 steps)",
    )
    parser.add_argument(
        "--stop-after", type=_positive_int, help="stop once this many solutions were found"
    )
    parser.add_argument(
        "--max-solutions", type=_positive_int, default=50, help="solutions listed (default: 50)"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="ignore an existing checkpoint in --out and start afresh",
    )
    parser.add_argument(
        "--start-method",
        choices=("spawn", "forkserver"),
        default="spawn",
        help="worker start method (never fork)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--no-plot", action="store_true", help="skip best_traces.png")
    add_log_options(parser)
    return parser


def _list_params(args: argparse.Namespace) -> int:
    from fitting.pool import WorkerPool

    model = parse_model(args.model, args.mod_dir).prepare()
    probe = MeasurementSet(
        (PAPER_STIMULUS,), (Target(PAPER_STIMULUS.name, "resting_potential", -65.0, 1.0),)
    )
    with WorkerPool(model, probe, 1, args.timeout, args.start_method) as pool:
        discovered = pool.call(discover_in_worker)
    json.dump(discovered, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def _cluster_pool(
    ray: str | None, config: FitConfig, max_in_flight: int | None = None
) -> ExecutorPool | None:
    """With ``--ray``, a pool on the cluster (else ``None``: ``fit`` runs its local pool)."""
    if ray is None:
        return None
    from core.executor.factory import make_executor

    executor = make_executor(ray)
    return ExecutorPool(
        config.model.prepare(), config.measurements, executor, config.timeout_s, max_in_flight
    )


def _fit_folder(
    ray: str | None, lanes: int | None, config: FitConfig, folder: Folder
) -> dict[str, Any]:
    """Fit a folder's cells locally, or on the cluster with ``--ray`` (a pool per lane)."""
    if ray is None:
        return fit_cells(config, folder, lanes)
    from core.executor.factory import make_executor

    probe = make_executor(ray)  # joins the cluster once, before the lanes' threads start
    cluster_cpus = probe.workers
    probe.close()

    def cluster_pool(workers: int) -> ExecutorPool:
        # each lane keeps its share of the cluster's CPUs busy, and no more (a task queued
        # behind another lane's would run out its timeout waiting); config.measurements is
        # the folder's first cell, which every cell's fit rescores against its own targets
        pool = _cluster_pool(ray, config, workers)
        assert pool is not None
        return pool

    return fit_cells(replace(config, workers=cluster_cpus), folder, lanes, cluster_pool)


def _report_folder(document: dict[str, Any], out: Path) -> int:
    """Print the folder's table and closing line; the exit code."""
    rows = document["cells"]
    print(format_cells(rows))
    training = document["training"]
    if document["method"] != "rl":
        spent = ""
    elif training.get("reused"):
        cost = training.get("simulations_when_trained")
        spent = f" (policy reused; it took {cost if cost is not None else 'unknown'} to train)"
    else:
        spent = f" (training: {training['simulations']})"
    per_cell = document.get("rl_cost_per_cell")
    amortised = (
        f"; RL per cell {per_cell['fits_mean']:.1f} simulations, "
        f"{per_cell['with_training_spread']:.1f} with the training spread over these cells"
        if per_cell else ""
    )  # fmt: skip
    print(
        f"neuroloop-fit: {document['cells_fitted']} of {len(rows)} cells fitted in "
        f"{document['simulations_used']} simulations{spent}{amortised}; "
        f"{document['cells_failed']} failed, {document['cells_invalid']} invalid; "
        f"summary in {out}/cells.csv",
        file=sys.stderr,
    )
    if document["cells_failed"] or document["cells_invalid"]:
        return EXIT_BAD_INPUT
    return EXIT_OK if document["cells_fitted"] == len(rows) else EXIT_NO_SOLUTION


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``neuroloop-fit``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_from_args(args)
    try:
        if args.list_params:
            return _list_params(args)
        if (args.measurements is None) == (args.measurements_dir is None) or args.out is None:
            parser.error(
                "one of --measurements or --measurements-dir, and --out, are required "
                "(unless --list-params)"
            )
        if args.policy is not None and args.method != "rl":
            parser.error("--policy only applies to --method rl")
        rl_options = [args.rl_start != "bank", args.rl_parallel, args.rl_patience]
        if args.method != "rl" and any(o not in (None, False) for o in rl_options):
            parser.error("--rl-start, --rl-parallel and --rl-patience only apply to --method rl")
        if args.lanes is not None and args.measurements_dir is None:
            parser.error("--lanes only applies to --measurements-dir")
        if args.lanes is not None and args.ray is None and args.lanes > args.workers:
            parser.error(
                f"expected --lanes <= --workers (each lane needs a worker process of its own), "
                f"actual {args.lanes} > {args.workers}"
            )
        folder = (
            load_cells(args.measurements_dir, compare_bounds=not args.param)
            if args.measurements_dir
            else None
        )
        cells = folder.cells if folder else None
        config = FitConfig(
            model=parse_model(args.model, args.mod_dir),
            measurements=cells[0].measurements
            if cells
            else load_measurements(
                example_measurements_path()
                if str(args.measurements) == "example"
                else args.measurements
            ),
            out_dir=args.out,
            method=args.method,
            budget=args.budget,
            workers=args.workers,
            k=args.k,
            seed=args.seed,
            parameters=tuple(args.param),
            timeout_s=args.timeout,
            policy_path=args.policy,
            train_steps=args.train_steps,
            bank_size=args.bank_size,
            restart=args.restart,
            progress=not args.no_progress,
            stop_after_solutions=args.stop_after,
            start_method=args.start_method,
            max_solutions=args.max_solutions,
            plot=not args.no_plot,
            rl_start=args.rl_start,
            rl_parallel=args.rl_parallel,
            rl_patience=args.rl_patience,
        )
        if folder:
            try:
                document = _fit_folder(args.ray, args.lanes, config, folder)
            except KeyboardInterrupt:
                table = args.out / "cells.json"
                if table.is_file():
                    print(format_cells(json.loads(table.read_text())["cells"]))
                print(f"neuroloop-fit: interrupted; finished cells are in {args.out}/cells.csv, "
                      "rerun the command to resume the others", file=sys.stderr)  # fmt: skip
                return EXIT_INTERRUPTED
        else:
            pool = _cluster_pool(args.ray, config)
            try:
                result = fit(config, pool)
            finally:
                if pool is not None:
                    pool.close()
    except (ConfigError, FittingError, ExecutorError) as err:
        log.error("fit_failed", reason=str(err))
        print(f"neuroloop-fit: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if folder:
        return _report_folder(document, args.out)
    if not result.solutions:
        best = result.document["run"].get("best_max_abs_z")
        shown = "none evaluated" if best is None else f"{best:.3g}"
        print(
            f"neuroloop-fit: no parameter set reproduced every target within k={args.k} in "
            f"{result.simulations} simulations (best max|z| = {shown}); "
            f"see {args.out}/solutions.json",
            file=sys.stderr,
        )
        return EXIT_NO_SOLUTION
    print(
        f"neuroloop-fit: {result.document['run']['solutions_found']} solution(s) in "
        f"{result.simulations} simulations (first at simulation {result.first_fit_at}; "
        f"{len(result.solutions)} listed); results in {args.out}",
        file=sys.stderr,
    )
    print(format_spread(result.document["spread"]))
    return EXIT_OK


def format_spread(spread: dict[str, dict[str, float]]) -> str:
    """A small table of how far the solutions spread per parameter."""
    lines = [f"{'parameter':<24} {'min':>11} {'median':>11} {'max':>11} {'fold':>7} {'box%':>5}"]
    for name, row in spread.items():
        lines.append(
            f"{name:<24} {row['min']:>11.4g} {row['median']:>11.4g} {row['max']:>11.4g} "
            f"{row['fold_range']:>7.3g} {100 * row['box_fraction_covered']:>5.0f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
