"""``neuroloop-sweep``: run a parameter study described in a TOML file (docs/sweep.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import structlog

from core.errors import NeuroLoopError
from core.executor.factory import add_executor_arguments, make_executor
from core.logs import add_log_options, configure_from_args
from core.threads import add_threads_option

#: The example study shipped with the package.
EXAMPLE = Path(__file__).parent / "studies" / "ftsts_amplitude_frequency.toml"

EPILOG = f"""\
examples:
  neuroloop-sweep example --out runs/sweep-ftsts --workers 2
  neuroloop-sweep my_study.toml --out runs/my-study --ray auto
  neuroloop-sweep my_study.toml --list

'example' is {EXAMPLE.name}: FTSTS latch time and tail synchrony against stimulation amplitude
and frequency at N = 2000.

A study file has [study] (protocol = NAME from `neuroloop-sim protocols`, or policy = ftsts |
latched | off | BUNDLE_DIR; seeds; semantics; n_scale; duration_s), [sample] (method = grid |
random | lhs; points and seed for random/lhs), [parameters] (grid: name = [values]; random/lhs:
name = {{low = A, high = B, log = false}}), optional [fixed] and [plot] (x, y, metrics).

output in DIR: points.jsonl (one line per finished point, written as it finishes),
results.parquet and results.csv (one row per point and seed: the parameters, the seed, and the
simulator's run summary), heatmap_<metric>.png (mean over seeds, ± SD and seeds with a value in
each cell), sweep.json (counts, engine, failed points with their error).

Run the same command again after an interruption: finished points are kept, the rest run.
exit status: 0 every point done, 1 some points failed (the rest finished), 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="neuroloop-sweep",
        description=(
            "Map how the simulator's outcome (synchrony before, during and after stimulation, "
            "latch time, charge, rates, final weight) depends on stimulation and network "
            "parameters: a grid, random or Latin-hypercube sample over several seeds, run on "
            "local processes or a Ray cluster, resumable after an interruption."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", help="Study TOML file, or 'example'.")
    p.add_argument("--out", type=Path, help="Output directory (created; reused to resume).")
    p.add_argument("--workers", type=int, default=1, help="Local worker processes (default 1).")
    add_executor_arguments(p)
    add_threads_option(p, per_worker=True)
    p.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="Starts of a point whose worker or node dies before it is reported "
        "failed (default 3).",
    )
    p.add_argument("--list", action="store_true", help="Print the points and exit.")
    p.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    p.add_argument("--no-plot", action="store_true", help="Skip the heat maps.")
    add_log_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-sweep``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 256:
        parser.error(f"Expected --workers in [1, 256], actual {args.workers}")
    if not 1 <= args.max_attempts <= 100:
        parser.error(f"Expected --max-attempts in [1, 100], actual {args.max_attempts}")
    if args.out is None and not args.list:
        parser.error("Expected --out DIR (or --list)")
    configure_from_args(args)
    from controller.sweep.run import run_sweep, study_tasks
    from controller.sweep.study import load_study

    path = EXAMPLE if args.study == "example" else Path(args.study)
    try:
        study = load_study(path)
        if args.list:
            for task in study_tasks(study):
                print(task.key, dict(task.params))
            return 0
        structlog.get_logger().info("sweep_cli", study=str(path), out=str(args.out))
        with make_executor(
            args.ray, args.workers, max_attempts=args.max_attempts, threads=args.threads
        ) as executor:
            manifest = run_sweep(
                study,
                args.out,
                executor,
                progress=not args.no_progress,
                plot=not args.no_plot,
                threads=args.threads,
            )
    except NeuroLoopError as err:
        print(f"neuroloop-sweep: error: {err}", file=sys.stderr)
        return 2
    print(
        f"{manifest['done']}/{manifest['points']} points done, {manifest['failed']} failed "
        f"({manifest['resumed_with']} from an earlier run); results in {args.out}"
    )
    for failure in manifest["failures"]:
        print(
            f"failed: {failure['params']} seed {failure['seed']}: {failure['error']}",
            file=sys.stderr,
        )
    return 1 if manifest["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
