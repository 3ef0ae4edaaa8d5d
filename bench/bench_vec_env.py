"""Environment steps per second of one process: several environments, three ways to run them.

Prints one JSON object. Each round measures, each in a fresh process and in a rotated order:

* ``single``: one ``neuroloop/FTSTS-v0`` environment (N = 2000, 20 ms control period by
  default) stepped alone (``DummyVecEnv`` of one);
* ``dummy``: ``--n-envs`` environments stepped one after the other (``DummyVecEnv``);
* ``threads``: the same environments stepped at once on threads of the process
  (:class:`controller.training.thread_vec.ThreadVecEnv`; the kernel releases the GIL);
* ``subproc``: the same environments in a process each (``SubprocVecEnv``, what
  ``neuroloop-train --vec subproc`` runs), measured from the parent.

Then, one process per round, ``same_process_alternation``: one ``ThreadVecEnv`` stepped for
twice ``--steps`` vector steps in blocks of 25, alternately on its threads and one
environment at a time (one worker: what ``DummyVecEnv`` does), each pair's order the reverse
of the previous one's, so that both ways meet the same networks and the same moment of a
machine whose speed drifts between processes; the ratio is taken per pair of neighbouring
blocks.

Every kind steps the same seeded environments with the same seeded random actions, so
``dummy``, ``threads`` and ``subproc`` must give the same observation and reward digest
(``digests_equal``). Rates count environment steps (one vector step of ``n`` environments is
``n``); medians with ranges over the rounds, and per round the ratio of ``threads`` to
``dummy`` and to ``subproc`` (ratios within a round cancel most of a noisy host's drift).

    python bench/bench_vec_env.py [--rounds 5] [--steps 300] [--n-envs 2] [--n-scale 1]
                                  [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fresh_process import median_range
from json_out import ROOT, emit, shown

KINDS = ("single", "dummy", "threads", "subproc")
WARM_STEPS = 20
#: Vector steps per block of the same-process alternation
ALTERNATE_BLOCK = 25
#: Every other pair of blocks runs in this order (ABBA), so that a steady drift favours neither
PAIR_REVERSED = ("one_at_a_time", "threads")


def _make(period_ms: float, steps: int, n_scale: float) -> Any:
    """A picklable builder of one environment whose episode outlasts ``steps`` steps."""
    from functools import partial

    from controller.envs import SimConfig

    controlled_s = round(period_ms * (steps + WARM_STEPS + 2) / 1000.0, 3)
    cfg = SimConfig(control_period_ms=period_ms, onset_ms=period_ms, controlled_s=controlled_s,
                    tail_s=0.1)  # fmt: skip
    return partial(_build, cfg, n_scale)


def _build(cfg: Any, n_scale: float) -> Any:
    import gymnasium as gym

    import controller.envs  # noqa: F401 - registers the environment id (also in a worker)

    return gym.make("neuroloop/FTSTS-v0", sim_config=cfg, model_params={"n_scale": n_scale})


def child(kind: str, n_envs: int, period_ms: float, steps: int, n_scale: float) -> dict[str, Any]:
    """Time ``steps`` vector steps of ``n_envs`` environments run the ``kind`` way."""
    import numpy as np
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from controller.training.thread_vec import ThreadVecEnv
    from core.logs import configure_logging

    configure_logging("console", "warning")
    n = 1 if kind == "single" else n_envs
    fns = [_make(period_ms, steps, n_scale)] * n
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


def child_alternate(
    n_envs: int, period_ms: float, steps: int, block: int, n_scale: float
) -> dict[str, Any]:
    """One ``ThreadVecEnv`` stepped in blocks, alternately on its threads and one at a time.

    With one worker a ``ThreadVecEnv`` steps its environments in order on the calling thread,
    as ``DummyVecEnv`` does; alternating blocks of ``block`` vector steps in one process puts
    both ways on the same networks and the same moment of the machine. ``2 · steps // block``
    blocks (at least two) in pairs, each pair's order the reverse of the previous one's
    (threads first, then one at a time first, ...), so that a steady drift favours neither.
    """
    import numpy as np

    from controller.training.thread_vec import ThreadVecEnv
    from core.logs import configure_logging

    configure_logging("console", "warning")
    n_blocks = max(2, 2 * (steps // block))
    fns = [_make(period_ms, n_blocks * block, n_scale)] * n_envs
    venv = ThreadVecEnv(fns, workers=n_envs)
    actions = np.random.default_rng(0).uniform(-1, 1, (WARM_STEPS + n_blocks * block, n_envs, 3))
    rates: dict[str, list[float]] = {"threads": [], "one_at_a_time": []}
    try:
        venv.seed(1)
        venv.reset()
        for a in actions[:WARM_STEPS].astype(np.float32):
            venv.step(a)
        for b in range(n_blocks):
            pair = ("threads", "one_at_a_time") if (b // 2) % 2 == 0 else PAIR_REVERSED
            mode = pair[b % 2]
            venv.workers = n_envs if mode == "threads" else 1
            chunk = actions[WARM_STEPS + b * block : WARM_STEPS + (b + 1) * block]
            t0 = time.perf_counter()
            for a in chunk.astype(np.float32):
                venv.step(a)
            rates[mode].append(n_envs * block / (time.perf_counter() - t0))
    finally:
        venv.close()
    pairs = [t / o for t, o in zip(rates["threads"], rates["one_at_a_time"], strict=True)]
    return {"kind": "alternate", "n_envs": n_envs, "block": block, "rates": rates,
            "ratio_per_pair": pairs}  # fmt: skip


def _run_child(
    kind: str, n_envs: int, period_ms: float, steps: int, n_scale: float
) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(n_envs),
         str(period_ms), str(steps), str(n_scale)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Measure and print JSON (or run one child measurement with ``--child``)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, n_envs, period_ms, steps, n_scale = sys.argv[2:7]
        if kind == "alternate":
            result = child_alternate(
                int(n_envs), float(period_ms), int(steps), ALTERNATE_BLOCK, float(n_scale)
            )
        else:
            result = child(kind, int(n_envs), float(period_ms), int(steps), float(n_scale))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--steps", type=int, default=300,
                        help="timed vector steps per run (default 300)")  # fmt: skip
    parser.add_argument(
        "--n-envs",
        type=int,
        default=2,
        help="environments of the vector kinds (default 2, the cores here)",
    )
    parser.add_argument("--period-ms", type=float, default=20.0,
                        help="control period in ms (default 20)")  # fmt: skip
    parser.add_argument(
        "--n-scale", type=float, default=1.0, help="network size / 2000 (default 1: N = 2000)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    for name in ("rounds", "steps", "n_envs"):
        if getattr(args, name) < 1:
            parser.error(f"expected --{name.replace('_', '-')} >= 1, actual {getattr(args, name)}")
    if not (math.isfinite(args.period_ms) and args.period_ms > 0) or not (
        0.005 <= args.n_scale <= 4.0
    ):
        parser.error(
            f"expected --period-ms > 0 and --n-scale in [0.005, 4], actual {args.period_ms} "
            f"and {args.n_scale}"
        )
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    ratios: dict[str, list[float]] = {"threads_over_dummy": [], "threads_over_subproc": [],
                                      "threads_over_single": []}  # fmt: skip
    for r in range(args.rounds):
        order = KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]
        got = {
            k: _run_child(k, args.n_envs, args.period_ms, args.steps, args.n_scale) for k in order
        }
        for k in KINDS:
            runs[k].append(got[k])
        rate = {k: got[k]["env_steps_per_s"] for k in KINDS}
        ratios["threads_over_dummy"].append(rate["threads"] / rate["dummy"])
        ratios["threads_over_subproc"].append(rate["threads"] / rate["subproc"])
        ratios["threads_over_single"].append(rate["threads"] / rate["single"])
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{k} {rate[k]:.0f}" for k in KINDS)
            + " env steps/s",
            file=sys.stderr,
        )
    alternated = [_run_child("alternate", args.n_envs, args.period_ms, args.steps, args.n_scale)
                  for _ in range(args.rounds)]  # fmt: skip
    pair_ratios = [x for run in alternated for x in run["ratio_per_pair"]]
    digests = {k: sorted({run["digest"] for run in runs[k]}) for k in KINDS}
    report = {
        "benchmark": "vec_env",
        "n_scale": args.n_scale,
        "control_period_ms": args.period_ms,
        "n_envs": args.n_envs,
        "rounds": args.rounds,
        "steps_per_run": args.steps,
        "cpu_count": os.cpu_count(),
        "env_steps_per_s": {
            k: median_range([x["env_steps_per_s"] for x in runs[k]]) for k in KINDS
        },
        "ratios": {k: median_range(v) for k, v in ratios.items()},
        "same_process_alternation": {
            "what": f"one ThreadVecEnv per process, blocks of {ALTERNATE_BLOCK} vector steps "
            "alternately on its threads and one environment at a time (workers=1, what "
            "DummyVecEnv does); one process per round",
            "threads_env_steps_per_s": median_range(
                [x for r in alternated for x in r["rates"]["threads"]]
            ),
            "one_at_a_time_env_steps_per_s": median_range(
                [x for r in alternated for x in r["rates"]["one_at_a_time"]]
            ),
            "ratio_threads_over_one_at_a_time": median_range(pair_ratios),
            "runs": alternated,
        },
        "digests_equal": len({d for k in ("dummy", "threads", "subproc") for d in digests[k]}) == 1,
        "runs": runs,
        "command": "python bench/bench_vec_env.py " + " ".join(sys.argv[1:]),
    }
    if args.out is not None:
        report["out"] = shown(args.out)
    emit(report, args.out)


if __name__ == "__main__":
    main()
