"""Grid search of latched constant trains at N = 2000: the bar a learned policy has to clear.

Each candidate stimulates with one fixed setting (amplitude, frequency, pulse width) from the end
of the lead-in until the mean E→I weight observed at the end of a control period falls below the
candidate's latch, then stops for good. Episodes are those of ``neuroloop/FTSTS-v0`` (2 s
lead-in, 20 s controlled, 5 s stimulation-free tail, 500 ms control period), on held-out
network seeds, through the simulator envelope. Prints one JSON line per run, then a summary
per candidate with the charge relative to the paper's FTSTS train (315 600 mV·ms on average
over the same seeds, ``docs/results/rl/eval.json``).

    python bench/scan_latched_trains.py                       # the grid of docs/rl.md
    python bench/scan_latched_trains.py --grid 110,180,500,90 120,180,500,95 --seeds 5
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

#: amplitude mV, frequency Hz, pulse width µs, latch mV (docs/rl.md, "Latched trains").
DEFAULT_GRID = (
    (200, 40, 500, 75), (200, 60, 500, 75), (200, 83.3, 500, 75), (200, 120, 500, 75),
    (200, 180, 500, 75), (150, 120, 500, 75), (120, 180, 500, 75), (100, 180, 500, 75),
    (100, 180, 500, 90), (100, 180, 500, 105), (80, 180, 500, 75), (60, 180, 500, 75),
    (110, 180, 500, 90), (120, 180, 500, 95), (120, 180, 500, 110), (140, 180, 500, 100),
    (200, 180, 250, 90), (200, 180, 150, 90), (160, 180, 300, 90),
)  # fmt: skip
FTSTS_CHARGE_MV_MS = 315_600.0


def run(job: tuple[float, float, float, float, int, float]) -> dict[str, Any]:
    """One latched-train episode; returns its metrics."""
    import gymnasium as gym

    import controller.envs  # noqa: F401  (registers the environment)
    from controller.envs import SimConfig
    from controller.envs.spaces import ACTION_MAP
    from protocol.envelope.setpoint import Setpoint

    amp, freq, width, latch, seed, period = job
    on = np.array(
        ACTION_MAP.to_action(Setpoint(amplitude=amp, frequency_hz=freq, pulse_width_us=width)),
        dtype=np.float32,
    )
    off = -np.ones(3, dtype=np.float32)  # 10 mV, 5 Hz, 50 µs: 0.03 % of the FTSTS charge rate
    env = gym.make("neuroloop/FTSTS-v0", sim_config=SimConfig(control_period_ms=period))
    obs, info = env.reset(seed=seed)
    latched_at = None
    done, k = False, 0
    while not done:
        if latched_at is None and obs[5] * 290.0 < latch:
            latched_at = k * period / 1000.0
        obs, _, term, trunc, info = env.step(off if latched_at is not None else on)
        done, k = term or trunc, k + 1
    env.close()
    return {
        "amplitude_mv": amp, "frequency_hz": freq, "pulse_width_us": width, "latch_mv": latch,
        "seed": seed, "r_tail": float(info["r_tail"]),
        "charge_mv_ms": float(info["total_charge_mv_ms"]),
        "weight_end_mv": float(info["weight_end_mv"]), "latched_after_s": latched_at,
    }  # fmt: skip


def main() -> None:
    """Run the grid and print JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--grid", nargs="*", help="candidates MV,HZ,US,LATCH_MV (default: docs grid)")
    p.add_argument("--seeds", type=int, default=2, help="held-out seeds 2**31+1 ... (default 2)")
    p.add_argument("--period-ms", type=float, default=500.0, help="control period (default 500)")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    grid = [tuple(float(x) for x in c.split(",")) for c in a.grid] if a.grid else DEFAULT_GRID
    jobs = [(*c, 2**31 + 1 + s, a.period_ms) for c in grid for s in range(a.seeds)]
    rows = []
    with ProcessPoolExecutor(a.workers) as ex:
        for row in ex.map(run, jobs):  # type: ignore[arg-type]
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    for c in grid:
        mine = [r for r in rows if (r["amplitude_mv"], r["frequency_hz"], r["pulse_width_us"],
                                    r["latch_mv"]) == tuple(c)]  # fmt: skip
        summary.append({
            "candidate": list(c),
            "r_tail_mean": float(np.mean([r["r_tail"] for r in mine])),
            "charge_fraction_of_ftsts": float(np.mean([r["charge_mv_ms"] for r in mine]))
            / FTSTS_CHARGE_MV_MS,
        })  # fmt: skip
    print(json.dumps({"summary": summary}, indent=1))


if __name__ == "__main__":
    main()
