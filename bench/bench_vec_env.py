"""Environment steps per second of one process: several environments, three ways to run them.

Prints one JSON object. Each round measures, each in a fresh process and in a rotated order:

* ``single``: one ``neuroloop/FTSTS-v0`` environment (N = 2000, 20 ms control period by
  default) stepped alone (``DummyVecEnv`` of one);
* ``dummy``: ``--n-envs`` environments stepped one after the other (``DummyVecEnv``);
* ``threads``: the same environments stepped at once on threads of the process
  (:class:`controller.training.thread_vec.ThreadVecEnv`; the kernel releases the GIL);
* ``subproc``: the same environments in a process each (``SubprocVecEnv``, what
  ``neuroloop-train --vec subproc`` runs), measured from the parent.

Every kind steps the same seeded environments with the same seeded random actions, so
``dummy``, ``threads`` and ``subproc`` must give the same observation and reward digest
(``digests_equal``). Rates count environment steps (one vector step of ``n`` environments is
``n``); medians with ranges over the rounds, and per round the ratio of ``threads`` to
``dummy`` and to ``subproc`` (ratios within a round cancel most of a noisy host's drift).

    python bench/bench_vec_env.py [--rounds 5] [--steps 300] [--n-envs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from json_out import ROOT, emit, shown  # noqa: E402

KINDS = ("single", "dummy", "threads", "subproc")
WARM_STEPS = 20


def _make(period_ms: float, steps: int) -> Any:
    """A picklable builder of one N = 2000 environment whose episode outlasts the run."""
    from functools import partial

    from controller.envs import SimConfig

    controlled_s = round(period_ms * (steps + WARM_STEPS + 2) / 1000.0, 3)
    cfg = SimConfig(control_period_ms=period_ms, onset_ms=period_ms, controlled_s=controlled_s,
                    tail_s=0.1)  # fmt: skip
    return partial(_build, cfg)


def _build(cfg: Any) -> Any:
    import gymnasium as gym

    import controller.envs  # noqa: F401 - registers the environment id (also in a worker)

    return gym.make("neuroloop/FTSTS-v0", sim_config=cfg, model_params={"n_scale": 1.0})


def child(kind: str, n_envs: int, period_ms: float, steps: int) -> dict[str, Any]:
    """Time ``steps`` vector steps of ``n_envs`` environments run the ``kind`` way."""
    import numpy as np
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from controller.training.thread_vec import ThreadVecEnv
    from core.logs import configure_logging

    configure_logging("console", "warning")
    n = 1 if kind == "single" else n_envs
    fns = [_make(period_ms, steps)] * n
    venv = {"single": DummyVecEnv, "dummy": DummyVecEnv, "threads": ThreadVecEnv,
            "subproc": SubprocVecEnv}[kind](fns)  # fmt: skip
    actions = np.random.default_rng(0).uniform(-1, 1, (WARM_STEPS + steps, n, 3))
    digest = hashlib.sha256()
    try:
        venv.seed(1)
        digest.update(venv.reset().tobytes())
        for a in actions[:WARM_STEPS].astype(np.float32):
            obs, rewards, _, _ = venv.step(a)
            # DummyVecEnv keeps rewards in float32, SubprocVecEnv returns float64
            digest.update(obs.tobytes() + rewards.astype(np.float32).tobytes())
        t0 = time.perf_counter()
        c0 = time.process_time()
        for a in actions[WARM_STEPS:].astype(np.float32):
            obs, rewards, _, _ = venv.step(a)
            digest.update(obs.tobytes() + rewards.astype(np.float32).tobytes())
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    finally:
        venv.close()
    return {
        "kind": kind, "n_envs": n, "wall_s": wall, "cpu_s_this_process": cpu,
        "env_steps_per_s": n * steps / wall, "digest": digest.hexdigest(),
        "load_avg_1min": os.getloadavg()[0],
    }  # fmt: skip


def _run_child(kind: str, n_envs: int, period_ms: float, steps: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(n_envs),
         str(period_ms), str(steps)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    """Measure and print JSON (or run one child measurement with ``--child``)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, n_envs, period_ms, steps = sys.argv[2:6]
        print(json.dumps(child(kind, int(n_envs), float(period_ms), int(steps))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--steps", type=int, default=300,
                        help="timed vector steps per run (default 300)")  # fmt: skip
    parser.add_argument("--n-envs", type=int, default=2,
                        help="environments of the vector kinds (default 2, the cores here)")
    parser.add_argument("--period-ms", type=float, default=20.0,
                        help="control period in ms (default 20)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.n_envs < 1 or not args.period_ms > 0:
        parser.error("expected --rounds, --steps, --n-envs >= 1 and --period-ms > 0")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    ratios: dict[str, list[float]] = {"threads_over_dummy": [], "threads_over_subproc": [],
                                      "threads_over_single": []}  # fmt: skip
    for r in range(args.rounds):
        order = KINDS[r % len(KINDS):] + KINDS[: r % len(KINDS)]
        got = {k: _run_child(k, args.n_envs, args.period_ms, args.steps) for k in order}
        for k in KINDS:
            runs[k].append(got[k])
        rate = {k: got[k]["env_steps_per_s"] for k in KINDS}
        ratios["threads_over_dummy"].append(rate["threads"] / rate["dummy"])
        ratios["threads_over_subproc"].append(rate["threads"] / rate["subproc"])
        ratios["threads_over_single"].append(rate["threads"] / rate["single"])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {rate[k]:.0f}" for k in KINDS) + " env steps/s", file=sys.stderr)
    digests = {k: sorted({run["digest"] for run in runs[k]}) for k in KINDS}
    report = {
        "benchmark": "vec_env",
        "n": 2000, "control_period_ms": args.period_ms, "n_envs": args.n_envs,
        "rounds": args.rounds, "steps_per_run": args.steps, "cpu_count": os.cpu_count(),
        "env_steps_per_s": {k: _stats([x["env_steps_per_s"] for x in runs[k]]) for k in KINDS},
        "ratios": {k: _stats(v) for k, v in ratios.items()},
        "digests_equal": len({d for k in ("dummy", "threads", "subproc") for d in digests[k]})
        == 1,
        "runs": runs,
        "command": "python bench/bench_vec_env.py " + " ".join(sys.argv[1:]),
    }
    if args.out is not None:
        report["out"] = shown(args.out)
    emit(report, args.out)


if __name__ == "__main__":
    main()
