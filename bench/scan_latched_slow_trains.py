"""Grid search of latched slow trains as the emulated device delivers them; prints JSON.

The first latched-train grid (``bench/scan_latched_trains.py``) searched fast trains in model
units and found the ``latched`` baseline (66 % of FTSTS's charge). Slow trains held for the
whole controlled period cost less (``bench/scan_constant_trains.py``), so the issue's "best
latched constant train of a grid search" has to be searched again over slow rates. Every
candidate here is ``neuroloop-eval``'s ``latched-slow`` method with its own train: one amplitude
(mA), rate and phase width from the onset, stopped for good at the first 100 ms control period
whose mean E→I weight is below the candidate's latch (0: never), through the emulator's tissue
map and envelope (the device's amplitude ramps and pulse-width steps), on training networks
after FTSTS has run on them. Candidates are scored with the dose schedule search's own cost
(:func:`controller.training.schedule_search.cost`: mean charge as a fraction of FTSTS's plus
``--tail-penalty`` times how far the mean tail R lies above FTSTS's mean minus
``--tail-margin``; a candidate *meets* the bar when that excess is 0). The lowest cost is the
``latched-slow`` baseline (``controller.training.evaluate.LATCHED_SLOW_SETPOINT_MA``).

    python bench/scan_latched_slow_trains.py \\
        --json docs/results/rl/schedule/latched_slow_grid.json        # about 10 minutes
"""

from __future__ import annotations

import argparse
import sys

from grid_cli import add_grid_options, training_seeds
from json_out import emit
from tqdm import tqdm

from controller.envs.config import SimConfig
from controller.training.schedule_search import episode, episode_values, score_grid
from core.errors import ConfigError
from core.executor import Task, make_executor

#: The grid (mA, Hz, mV of weight; latch 0: never), around the slow constant trains' best
#: (2.4 mA at 92 Hz, 450 µs; 80 Hz desynchronised at no amplitude, 105 Hz needed more).
AMPLITUDES_MA = (2.2, 2.4, 2.6, 2.8, 3.0, 3.2)
FREQUENCIES_HZ = (88.0, 92.0, 96.0)
LATCHES_MV = (0.0, 85.0, 80.0, 75.0, 70.0)
PULSE_WIDTH_US = 450.0


def _parse(text: str) -> tuple[float, float, float, float]:
    try:
        amp, hz, us, latch = (float(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"Expected a candidate MA,HZ,US,LATCH_MV (e.g. 2.4,92,450,0), actual {text!r}"
        ) from err
    return amp, hz, us, latch


def main(argv: list[str] | None = None) -> int:
    """Run the grid and print JSON."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--grid", nargs="*", type=_parse, help="candidates MA,HZ,US,LATCH_MV "
                   "(default: the module's grid, 90 candidates)")  # fmt: skip
    add_grid_options(p)
    a = p.parse_args(argv)
    seeds = training_seeds(p, a)
    grid = a.grid or [(amp, hz, PULSE_WIDTH_US, latch) for amp in AMPLITUDES_MA
                      for hz in FREQUENCIES_HZ for latch in LATCHES_MV]  # fmt: skip
    # FTSTS and the policy-less baselines run at the eval's own periods; the candidates at
    # latched-slow's (run_one applies its envelope, units and 100 ms period).
    cfg = SimConfig(control_period_ms=100.0, envelope="emulator", observations="measurable")
    network = {"n_scale": 1.0, "semantics": "paper"}
    tasks = [Task(f"ftsts/{s}", episode, ("ftsts", s, cfg, network)) for s in seeds]
    tasks += [Task(f"{c}/{s}", episode, ("latched-slow", s, cfg, network, None, c))
              for c in grid for s in seeds]  # fmt: skip
    with make_executor(None, a.workers) as executor:
        outcomes = list(tqdm(executor.run(tasks), total=len(tasks), desc="episodes", unit="run"))
    by_key = {o.key: o for o in outcomes}
    try:
        rows = episode_values([by_key[t.key] for t in tasks])
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    settings = [{"amplitude_ma": amp, "frequency_hz": hz, "pulse_width_us": us, "latch_mv": latch}
                for amp, hz, us, latch in grid]  # fmt: skip
    score = score_grid(rows, len(seeds), settings, a.tail_penalty, a.tail_margin)

    report = {
        "command": "python bench/scan_latched_slow_trains.py",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "training_seeds": seeds,
        **score.report(),
    }
    emit(report, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
