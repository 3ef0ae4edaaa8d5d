"""How fast constant trains drive the mean E→I weight down, against FTSTS; prints JSON.

Why every effective slow train costs about half of FTSTS's charge (docs/rl.md, "A dose
schedule"): the plasticity, not the pulse, sets how fast the weight can fall. Each train is
``neuroloop-eval``'s ``latched-slow`` method with its own amplitude and no latch (held from the
onset to the end of the 20 s controlled period, device units through the emulator's tissue
map and envelope, 100 ms period); FTSTS is ``neuroloop-eval``'s ``ftsts``. For each, on each
network seed: the seconds after the onset at which the mean E→I weight first falls below each
level of ``--levels`` (``null``: not within the run), the charge as a fraction of FTSTS's on
the same seed, and the tail R.

    python bench/weight_descent.py --json docs/results/rl/schedule/weight_descent.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from json_out import emit

from controller.envs.config import SimConfig
from controller.training.evaluate import LATCHED_SLOW_SETPOINT_MA
from core.executor import Task, make_executor, run_ordered

#: Amplitudes (mA) of the constant trains, at the latched-slow train's rate and phase width.
AMPLITUDES_MA = (2.0, 2.4, 3.2, 4.0)
LEVELS_MV = (150.0, 120.0, 100.0, 90.0, 85.0, 80.0, 75.0)


def descent(
    method: str, amplitude_ma: float | None, seed: int, levels: tuple[float, ...]
) -> dict[str, Any]:
    """One episode's weight crossings (an executor task)."""
    import dataclasses

    from controller.training.evaluate import run_one

    cfg = SimConfig(control_period_ms=100.0, envelope="emulator", observations="measurable")
    train = None
    if amplitude_ma is not None:
        train = (dataclasses.replace(LATCHED_SLOW_SETPOINT_MA, amplitude=amplitude_ma), 0.0)
    rec = run_one(method, seed, cfg, {"n_scale": 1.0, "semantics": "paper"}, None, train)
    onset_s = cfg.onset_ms / 1000.0
    t_s, w_mv = rec.t_window_s, rec.weight_mv
    crossings = {}
    for level in levels:
        below = np.nonzero(w_mv < level)[0]
        crossings[f"{level:g}"] = round(float(t_s[below[0]]) - onset_s, 2) if below.size else None
    return {"method": method, "amplitude_ma": amplitude_ma, "seed": seed,
            "weight_onset_mv": float(w_mv[np.searchsorted(t_s, onset_s)]),
            "weight_end_mv": rec.weight_end_mv, "charge": rec.charge, "r_tail": rec.r_tail,
            "seconds_after_onset_below_mv": crossings}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the trains and FTSTS on the seeds; print JSON."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[100], help="network seeds (100)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the result to this file")
    a = p.parse_args(argv)
    tasks = []
    for seed in a.seeds:
        tasks.append(Task(f"ftsts/{seed}", descent, ("ftsts", None, seed, LEVELS_MV)))
        tasks += [Task(f"{amp}mA/{seed}", descent, ("latched-slow", amp, seed, LEVELS_MV))
                  for amp in AMPLITUDES_MA]  # fmt: skip
    with make_executor(None, a.workers) as executor:
        outcomes = run_ordered(executor, tasks)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(
            f"{len(failed)} episode(s) failed: first {failed[0].key}: {failed[0].error}"
        )
    rows = [o.value for o in outcomes]
    ftsts = {r["seed"]: r for r in rows if r["method"] == "ftsts"}
    for r in rows:
        r["charge_vs_ftsts"] = r["charge"] / ftsts[r["seed"]]["charge"]
    emit({"command": "python bench/weight_descent.py",
                       "argv": sys.argv[1:] if argv is None else list(argv),
                       "rate_hz": LATCHED_SLOW_SETPOINT_MA.frequency_hz,
                       "pulse_width_us": LATCHED_SLOW_SETPOINT_MA.pulse_width_us,
                       "runs": rows}, a.json)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
