"""``neuroloop-sim``: run the paper's open-loop experiments, list them, or serve the simulator."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from core.errors import NeuroLoopError
from core.logs import add_log_options, configure_from_args
from core.threads import add_threads_option, warn_if_oversubscribed

_EPILOG = """\
examples:
  neuroloop-sim experiments
  neuroloop-sim run --experiment ftsts-desync --out runs/fig3        # the paper's Fig 3, 25 s
  neuroloop-sim run --experiment none --duration 10 --out runs/control
  neuroloop-sim run --experiment ftsts-desync --semantics clean --seed 3 --out runs/fig3-clean
  neuroloop-sim run --experiment ftsts-desync --n-scale 0.25 --out runs/small   # N = 500
  neuroloop-sim run --experiment fig10-cr-ftsts --seed 1 --out runs/fig10   # FTSTS-CR, Fig 10
  neuroloop-sim run --experiment ftsts-desync-10k --threads auto --out runs/fig5  # N = 10 000
  neuroloop-sim serve --bind tcp://127.0.0.1:5555                   # backend for the controller

An experiment is one of the paper's open-loop stimulation runs (its network, stimulus and
duration). The older spellings 'protocols' and '--protocol' still work.

semantics:
  paper  reproduces the authors' released code, quirks included (non-summing simultaneous
         synaptic jumps, noise scaled by dt, stimulus noise on E cells, one dropped step per
         20 ms chunk, refractoriness reset every chunk).
  clean  fixes them (summed jumps, Euler-Maruyama noise, exact 5 ms delay, carried
         refractoriness). See docs/simulator.md for every difference and its measured effect.
"""


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where there is a default to show.

    Required options, flags and options whose help already names their default get none.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.required
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return super()._get_help_string(action)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuroloop-sim",
        description="Simulate the Schmalz & Kumar (2019) FTSTS network: an E-I leaky "
        "integrate-and-fire network with spike-timing-dependent plasticity, under open-loop "
        "stimulation experiments from the paper.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("experiments", aliases=["protocols"],
                   help="list the paper's named experiments, one line each")  # fmt: skip
    run = sub.add_parser(
        "run",
        help="run one experiment and write summary.json and a figure",
        formatter_class=_DefaultsFormatter,
    )
    run.add_argument("--experiment", "--protocol", dest="experiment", required=True,
                     help="experiment name (see 'experiments')")  # fmt: skip
    run.add_argument("--n-scale", type=float, default=1.0,
                     help="multiplies the experiment's own population sizes")  # fmt: skip
    run.add_argument("--duration", type=float, default=None,
                     help="run length in seconds (default: the experiment's own)")  # fmt: skip
    run.add_argument("--seed", type=int, default=0, help="seed of connectivity and noise")
    run.add_argument("--semantics", choices=("paper", "clean"), default="paper",
                     help="paper: the authors' code, quirks included; clean: quirks fixed "
                     "(every difference: neuroloop-sim --help, docs/simulator.md)")  # fmt: skip
    run.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory for summary.json and figure.png (created)",
    )
    add_threads_option(run)
    run.add_argument("--no-figure", action="store_true", help="skip the PNG figure")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_log_options(run)
    serve = sub.add_parser("serve", help="serve the simulator over the NeuroLoop protocol",
                           add_help=False)  # fmt: skip
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``neuroloop-sim``."""
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["serve"]:
        from simulator.server import serve_main

        return serve_main(args_list[1:])
    args = _build_parser().parse_args(args_list)
    if args.command in ("experiments", "protocols"):
        from simulator.experiments import EXPERIMENTS

        width = max(len(name) for name in EXPERIMENTS)
        for name, exp in EXPERIMENTS.items():
            print(f"{name:<{width}}  Fig {exp.figure:<11} {exp.summary}")
        return 0
    configure_from_args(args)
    try:
        return _run(args)
    except NeuroLoopError as err:
        print(f"neuroloop-sim: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import structlog
    from tqdm import tqdm

    from simulator.experiments import get_experiment
    from simulator.run import run_experiment

    log = structlog.get_logger()
    experiment = get_experiment(args.experiment)
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        print(f"neuroloop-sim: error: Expected --duration > 0 s, actual {args.duration}",
              file=sys.stderr)  # fmt: skip
        return 2
    if not (math.isfinite(args.n_scale) and args.n_scale > 0):
        print(f"neuroloop-sim: error: Expected --n-scale > 0, actual {args.n_scale}",
              file=sys.stderr)  # fmt: skip
        return 2
    # Every argument is checked (the network is built from them) before the progress bar
    # starts and before the output directory is created, so an error stands alone.
    experiment.network_config(args.semantics, args.n_scale)
    args.out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=0, unit="win", disable=args.no_progress, desc=experiment.name)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    warn_if_oversubscribed(args.threads, 1)
    result = run_experiment(
        experiment,
        semantics=args.semantics,
        n_scale=args.n_scale,
        duration_s=args.duration,
        seed=args.seed,
        progress=progress,
        threads=args.threads,
    )
    bar.close()
    summary_path = args.out / "summary.json"
    summary_path.write_text(json.dumps(result.summary, indent=2) + "\n")
    log.info("summary_written", path=str(summary_path), **{
        k: result.summary[k] for k in ("r_pre", "r_stim", "r_tail", "latch_time_s", "weight_mv")
    })  # fmt: skip
    if not args.no_figure:
        from simulator.figure import plot_run

        fig_path = plot_run(result, args.out / "figure.png")
        log.info("figure_written", path=str(fig_path))
    print(json.dumps(result.summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
