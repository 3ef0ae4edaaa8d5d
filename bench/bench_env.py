"""Environment throughput at N = 2000 with 20 ms control steps: one process and all cores.

Prints one JSON object: steps per second (agent steps and model seconds per wall second) for a
single environment in this process and for ``SubprocVecEnv`` with one worker per core, plus the
reset cost and the machine's load average (other jobs on the machine lower the numbers).

    .venv/bin/python bench/bench_env.py [--steps 500] [--n-scale 1.0] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np

import controller.envs  # noqa: F401 - registers the env id
from controller.envs import SimConfig
from core.logs import configure_logging


def _config(steps: int) -> SimConfig:
    # Long controlled period so the measured steps never hit the episode's tail.
    controlled_s = max(1.0, 0.02 * (steps + 10))
    return SimConfig(control_period_ms=20.0, onset_ms=20.0, controlled_s=round(controlled_s, 2),
                     tail_s=0.1)  # fmt: skip


def _make(steps: int, n_scale: float) -> Any:
    def build() -> gym.Env[Any, Any]:
        configure_logging("console", "warning")  # workers: no per-clamp info lines
        return gym.make("neuroloop/FTSTS-v0", sim_config=_config(steps),
                        model_params={"n_scale": n_scale})  # fmt: skip

    return build


def single(steps: int, n_scale: float) -> dict[str, float]:
    env = _make(steps, n_scale)()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    env.reset(seed=1)
    reset_s = time.perf_counter() - t0
    actions = rng.uniform(-1, 1, (steps, 3)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    wall = time.perf_counter() - t0
    env.close()
    return {"steps": steps, "wall_s": wall, "steps_per_s": steps / wall,
            "model_s_per_wall_s": steps * 0.02 / wall, "reset_s": reset_s}  # fmt: skip


def vectorised(steps: int, n_scale: float, workers: int) -> dict[str, float]:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([_make(steps, n_scale) for _ in range(workers)])
    venv.seed(1)
    venv.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, workers, 3)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        venv.step(a)
    wall = time.perf_counter() - t0
    venv.close()
    total = steps * workers
    return {"workers": workers, "steps": total, "wall_s": wall, "steps_per_s": total / wall,
            "model_s_per_wall_s": total * 0.02 / wall}  # fmt: skip


def main() -> None:
    """Run both measurements and print JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500, help="Steps per environment (default 500).")
    p.add_argument("--n-scale", type=float, default=1.0, help="1.0 = N 2000.")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    _make(10, 0.01)().reset(seed=0)  # load the cached Numba kernels outside the timings
    out = {
        "benchmark": "env_steps",
        "n": round(2000 * a.n_scale),
        "control_period_ms": 20.0,
        "cpu_count": os.cpu_count(),
        "load_avg_before": os.getloadavg(),
        "single_process": single(a.steps, a.n_scale),
        "subproc_vec_env": vectorised(a.steps, a.n_scale, a.workers),
        "load_avg_after": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
