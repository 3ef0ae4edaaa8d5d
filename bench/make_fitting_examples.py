"""Re-make the bundled example measurement sets away from the parameter box's centre.

For each problem of ``fitting/problems.py`` this simulates one ground-truth parameter set that
lies in the outer part of the box (every unit-cube coordinate at least 0.2 from the centre,
drawn with a fixed seed, redrawn until every feature is measurable), and rewrites the
problem's measurement file with those features as target means (stds: 5 % of the value for
``reference``, the file's experimenter stds for ``l5_active``). The ground truth goes into the
file's header comment, and the script prints it as JSON.

    python bench/make_fitting_examples.py            # rewrites both example files
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import yaml

from core.logs import configure_logging
from fitting.parameters import ParameterSpace
from fitting.pool import WorkerPool
from fitting.problems import PROBLEMS, Problem

HEADERS = {
    "reference": (
        "The source paper's measurement stimulus (-5 nA at soma(0.5) for 100 ms after 150 ms,\n"
        "tstop 500 ms) plus a depolarising +4 nA step, with targets measured on NeuroLoop's\n"
        "bundled five-compartment reference model (fitting/reference.py) at a parameter set\n"
        "away from the box centre (the defaults), so no method starts at the answer.\n"
        "Each std is 5 % of the value (with a floor; 1 mV for the resting potential).\n"
        "Fit it with:  neuroloop-fit --model reference --measurements <this file> --out fit-out\n"
    ),
    "l5_active": (
        "Three current steps on the active-dendrite example cell (fitting/examples/l5_active):\n"
        "the source paper's -5 nA step (150 ms delay, 100 ms, tstop 500 ms) and depolarising\n"
        "steps of +2.5 and +3.5 nA (100 ms). Targets measured at a parameter set away from the\n"
        "box centre; stds are what an experimenter reports for a population of cells (input\n"
        "resistance 0.8 MOhm, potentials 2 mV, sag 1.5 mV, spike count 1, first-spike latency\n"
        "1 ms, AP amplitude 5 mV, half width 0.2 ms, AHP depth 1.5 mV).\n"
        "Fit it with:  neuroloop-fit --model fitting/examples/l5_active/L5Active.hoc:L5Active \\\n"
        "                  --measurements <this file> --out fit-out\n"
    ),
}


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def remake(problem: Problem, seed: int) -> dict[str, Any]:
    """Rewrite ``problem``'s measurement file; the ground truth used."""
    measurements = problem.measurements()
    space = ParameterSpace(measurements.parameters)
    rng = np.random.default_rng(seed)
    raw = yaml.safe_load(problem.measurements_file.read_text())
    with WorkerPool(problem.model_spec().prepare(), measurements, 1, 60.0) as pool:
        while True:
            side = rng.choice([-1.0, 1.0], space.dim)
            u = 0.5 + side * rng.uniform(0.2, 0.45, space.dim)
            params = space.from_unit(u)
            evaluation = pool.evaluate([params])[0]
            targets = problem.targets_for(evaluation, measurements.targets)
            if targets is not None:
                break
    raw["targets"] = [
        {
            "stimulus": t.stimulus,
            "feature": t.feature,
            "mean": _significant(t.mean),
            "std": _significant(t.std, 3),
            "weight": t.weight,
        }
        for t in targets
    ]
    truth = {k: _significant(v) for k, v in params.items()}
    header = (
        HEADERS[problem.name]
        + "Ground truth (unit-cube point "
        + ", ".join(f"{x:.2f}" for x in u)
        + "):\n"
        + "".join(f"  {k} = {v:g}\n" for k, v in truth.items())
    )
    text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    text += yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=100)
    problem.measurements_file.write_text(text)
    return {
        "file": problem.measurements_file.name,
        "unit_point": u.round(3).tolist(),
        "truth": truth,
    }


def main() -> int:
    """Rewrite both example files and print what was used."""
    configure_logging("console", "warning")
    done = {name: remake(problem, seed=7) for name, problem in PROBLEMS.items()}
    print(json.dumps(done, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
