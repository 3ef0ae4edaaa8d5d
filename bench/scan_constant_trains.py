"""Grid search of constant trains held for the whole controlled period; prints JSON.

The latched-train grid (``bench/scan_latched_trains.py``) looked at fast trains stopped at a
weight. A dose schedule (``neuroloop-train --algo schedule``) found that slow trains held for
the whole 20 s cost less; this is the baseline that finding calls for: one amplitude, rate and
phase width from the onset to the end of the controlled period, nothing sensed, chosen by grid
search on training networks with the schedule search's own cost. Each candidate is a one-part
dose schedule whose total dose is out of reach, run as ``neuroloop-eval`` runs a bundle (device
units through the emulator's tissue map, the bundle's episode), on training seeds after FTSTS
has run on them, and scored by :func:`controller.training.schedule_search.cost` (mean charge
as a fraction of FTSTS's plus ``--tail-penalty`` times how far its mean tail R lies above
FTSTS's mean minus ``--tail-margin``; it *meets* the bar when that excess is 0). The lowest
cost is written as a bundle to ``--out`` (evaluate it with ``neuroloop-eval --policy OUT``).

    python bench/scan_constant_trains.py --out runs/constant_train \\
        --json docs/results/rl/schedule/constant_trains.json          # about 4 minutes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grid_cli import add_grid_options, training_seeds
from json_out import emit

from controller.envs.config import SimConfig
from controller.training.schedule import DoseSchedule
from controller.training.schedule_search import (
    episode,
    episode_values,
    score_grid,
    write_for_episode,
)
from core.errors import ConfigError
from core.executor import Task, make_executor, run_ordered

#: The grid (mA, Hz) around the dose schedule's settings (2.1–2.8 mA at 92 Hz, 450 µs).
AMPLITUDES_MA = (2.0, 2.2, 2.4, 2.6, 2.8, 3.0)
FREQUENCIES_HZ = (80.0, 92.0, 105.0, 120.0)
PULSE_WIDTH_US = 450.0
#: A total dose no 20 s train of the grid reaches (3 mA × 0.45 ms × 2 × 120 Hz × 20 s = 6 480 µC).
OUT_OF_REACH_UC = 12_000.0


def main(argv: list[str] | None = None) -> int:
    """Run the grid and print JSON."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="bundle of the lowest cost")
    add_grid_options(p)
    a = p.parse_args(argv)
    seeds = training_seeds(p, a)
    cfg = SimConfig(control_period_ms=100.0, envelope="emulator", observations="measurable")
    network = {"n_scale": 1.0, "semantics": "paper"}
    grid = [(amp, hz) for amp in AMPLITUDES_MA for hz in FREQUENCIES_HZ]
    tasks = [Task(f"ftsts/{s}", episode, ("ftsts", s, cfg, network, None)) for s in seeds]
    for amp, hz in grid:
        one_part = DoseSchedule((amp,), hz, PULSE_WIDTH_US, OUT_OF_REACH_UC, "dose_uc").as_dict()
        tasks += [Task(f"{amp}mA_{hz}Hz/{s}", episode, ("policy", s, cfg, network, one_part))
                  for s in seeds]  # fmt: skip
    with make_executor(None, a.workers) as executor:
        try:
            rows = episode_values(run_ordered(executor, tasks))
        except ConfigError as err:
            raise SystemExit(str(err)) from err
    settings = [{"amplitude_ma": amp, "frequency_hz": hz, "pulse_width_us": PULSE_WIDTH_US}
                for amp, hz in grid]  # fmt: skip
    score = score_grid(rows, len(seeds), settings, a.tail_penalty, a.tail_margin)
    best = score.best
    report: dict[str, Any] = {
        "command": "python bench/scan_constant_trains.py",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "training_seeds": seeds,
        **score.report(),
    }
    sched = DoseSchedule((best["amplitude_ma"],), best["frequency_hz"], PULSE_WIDTH_US,
                         OUT_OF_REACH_UC, "dose_uc")  # fmt: skip
    write_for_episode(sched, a.out, cfg, {"baseline": "constant train, grid search",
                                          "training_network_seeds": seeds})  # fmt: skip
    report["bundle"] = str(a.out)
    emit(report, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
