"""Environment speed against the kernel, and the peak memory of a 25 s run, in one run.

Prints one JSON object. For each control period (20 ms and 500 ms by default) and each tree
(this one and, with ``--baseline TREE``, another checkout such as ``git worktree add
/tmp/base main``), alternated round by round, each measurement in a fresh process:

* ``env``: steps per second of ``DBSEnv`` (``neuroloop/FTSTS-v0``, N = 2000, seeded random
  actions), with each step's time split into the kernel (``run_steps`` calls, Numba's
  dispatch included), the sensing model (``Sensor.window``, in trees that have it), the
  rest of ``Network.advance`` (pulse drive, window statistics) and the rest of the step
  (governor, protocol route, observation, reward); its kernel time gives the kernel-only
  bound of the same process (``kernel_bound_steps_per_s``, and ``kernel_share`` of the
  step), which the machine's speed phases move together with the environment's own speed;
* ``bound``: the kernel-only bounds in a second process: the same windows (the stimuli the
  environment applied, read from the first process) replayed on a fresh ``Network`` of the
  same seed, timed as whole ``Network.advance`` calls and as ``run_steps`` calls alone. The
  replay must give the environment's observations bit for bit (``replay_identical``), which
  shows that the bound did the same work;
* ``overhead``: one step's cost with the simulation answered at once (every
  ``Network.advance`` returns one stored window): what is not simulation, least noisy as the
  minimum of many short episodes;
* ``rss``: peak resident memory (``wait4``'s ``ru_maxrss``) of ``neuroloop-sim run
  --protocol ftsts-desync --duration 25 --no-figure`` (and once with the figure).

Medians with ranges over the rounds; the environment's observation and reward digest per tree
(equal digests: the trees compute the same episode). Compiled kernels are loaded from each
tree's Numba cache (a first run compiles them, outside the timings).

    python bench/bench_env_speed.py [--rounds 5] [--steps 300] [--baseline /tmp/base]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Steps of a 500 ms episode per ``--steps`` 20 ms steps (the same model time would take
#: minutes per round).
LONG_PERIOD_STEPS = 12
WARM_STEPS = 3


# ----------------------------------------------------------------------------- child side
def _timers() -> dict[str, float]:
    """Wrap ``run_steps`` and ``Network.advance`` with accumulating timers (this process)."""
    from simulator import network as nw

    acc = {"kernel_s": 0.0, "advance_s": 0.0, "windows": 0.0, "sensing_s": 0.0}
    kernel = nw.run_steps
    advance = nw.Network.advance
    stimuli: list[Any] = []
    sensor_class = getattr(nw, "Sensor", None)  # trees with the sensing model
    if sensor_class is not None:
        sense = sensor_class.window

        def timed_sense(self: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = sense(self, *args, **kwargs)
            acc["sensing_s"] += time.perf_counter() - t0
            return out

        sensor_class.window = timed_sense

    def timed_kernel(*args: Any) -> Any:
        t0 = time.perf_counter()
        out = kernel(*args)
        acc["kernel_s"] += time.perf_counter() - t0
        return out

    def timed_advance(self: Any, stimulus: Any, duration_ms: float) -> Any:
        stimuli.append((stimulus, duration_ms))
        t0 = time.perf_counter()
        out = advance(self, stimulus, duration_ms)
        acc["advance_s"] += time.perf_counter() - t0
        acc["windows"] += 1
        return out

    nw.run_steps = timed_kernel  # type: ignore[assignment]
    nw.Network.advance = timed_advance  # type: ignore[method-assign]
    acc["stimuli"] = stimuli  # type: ignore[assignment]
    return acc


def _stimulus_dict(stimulus: Any) -> dict[str, Any] | None:
    from dataclasses import fields

    if stimulus is None:
        return None
    return {f.name: getattr(stimulus, f.name) for f in fields(stimulus) if f.init}


def child_env(period_ms: float, steps: int, record: Path) -> dict[str, Any]:
    """Time ``steps`` environment steps; write the applied stimuli and observations."""
    import gymnasium as gym
    import numpy as np

    import controller.envs  # noqa: F401 - registers the environment id
    from controller.envs import SimConfig
    from core.logs import configure_logging

    configure_logging("console", "warning")
    total = steps + WARM_STEPS
    controlled_s = round(period_ms * (total + 2) / 1000.0, 3)
    cfg = SimConfig(control_period_ms=period_ms, onset_ms=period_ms, controlled_s=controlled_s,
                    tail_s=0.1)  # fmt: skip
    env = gym.make("neuroloop/FTSTS-v0", sim_config=cfg, model_params={"n_scale": 1.0})
    acc = _timers()
    stimuli: list[Any] = acc.pop("stimuli")  # type: ignore[assignment]
    actions = np.random.default_rng(0).uniform(-1, 1, (total, 3)).astype(np.float32)
    digest = hashlib.sha256()
    obs, info = env.reset(seed=1)
    digest.update(obs.tobytes())
    observed = [info["fields"]]
    for a in actions[:WARM_STEPS]:
        obs, reward, *_, info = env.step(a)
        digest.update(obs.tobytes() + repr(float(reward)).encode())
        observed.append(info["fields"])
    acc.update(kernel_s=0.0, advance_s=0.0, windows=0.0, sensing_s=0.0)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for a in actions[WARM_STEPS:]:
        obs, reward, *_, info = env.step(a)
        digest.update(obs.tobytes() + repr(float(reward)).encode())
        observed.append(info["fields"])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    env.close()
    record.write_text(json.dumps({
        "stimuli": [(_stimulus_dict(s), d) for s, d in stimuli], "fields": observed,
        "timed_from": WARM_STEPS + 1,
    }))  # fmt: skip
    per = 1000.0 / steps
    return {
        "steps": steps, "wall_s": wall, "cpu_s": cpu, "steps_per_s": steps / wall,
        "ms_per_step": wall * per, "kernel_ms": acc["kernel_s"] * per,
        "sensing_ms": acc["sensing_s"] * per,
        "network_rest_ms": (acc["advance_s"] - acc["kernel_s"] - acc["sensing_s"]) * per,
        "env_rest_ms": (wall - acc["advance_s"]) * per,
        "kernel_calls_per_step": acc["windows"] / steps, "digest": digest.hexdigest(),
        # the bound measured in this same process: steps per second if a step were its kernel
        "kernel_bound_steps_per_s": steps / acc["kernel_s"],
        "advance_bound_steps_per_s": steps / acc["advance_s"],
        "kernel_share": acc["kernel_s"] / wall,
        "load_avg_1min": os.getloadavg()[0],
    }  # fmt: skip


def child_overhead(rounds: int, steps: int) -> dict[str, Any]:
    """Time the environment's own work: every window answered at once by one stored window.

    ``Network.advance`` returns the first window it computed for every later call, so a step
    costs only what is not simulation (governor, protocol route, window statistics' copies,
    observation, reward). Minimum over ``rounds`` episodes of ``steps`` steps.
    """
    import gymnasium as gym
    import numpy as np

    import controller.envs  # noqa: F401 - registers the environment id
    from controller.envs import SimConfig
    from core.logs import configure_logging
    from simulator import network as nw

    configure_logging("console", "warning")
    cfg = SimConfig(control_period_ms=20.0, onset_ms=20.0,
                    controlled_s=round(0.02 * (steps + 2), 3), tail_s=0.1)  # fmt: skip
    env = gym.make("neuroloop/FTSTS-v0", sim_config=cfg, model_params={"n_scale": 0.05})
    advance = nw.Network.advance
    stored: list[Any] = []

    def answer(self: Any, stimulus: Any, duration_ms: float) -> Any:
        if not stored:
            stored.append(advance(self, stimulus, duration_ms))
        return stored[0]

    nw.Network.advance = answer  # type: ignore[method-assign]
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 3)).astype(np.float32)
    best = math.inf
    for _ in range(rounds):
        env.reset(seed=1)
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        best = min(best, (time.perf_counter() - t0) / steps)
    env.close()
    return {"rounds": rounds, "steps": steps, "us_per_step_min": best * 1e6,
            "load_avg_1min": os.getloadavg()[0]}  # fmt: skip


def child_bound(record: Path) -> dict[str, Any]:
    """Replay the recorded windows on a fresh network: ``Network.advance`` and kernel alone."""
    from controller.envs.models import network_config
    from simulator.network import Network
    from simulator.stimulus import Stimulus

    data = json.loads(record.read_text())
    net = Network(network_config(1.0))
    net.reset(seed=1)
    acc = _timers()
    acc.pop("stimuli")
    windows = [(None if s is None else Stimulus(**s), d) for s, d in data["stimuli"]]
    first = data["timed_from"]
    fields = []
    for stimulus, duration_ms in windows[:first]:
        fields.append(net.advance(stimulus, duration_ms).observation())
    acc.update(kernel_s=0.0, advance_s=0.0)
    t0 = time.perf_counter()
    for stimulus, duration_ms in windows[first:]:
        fields.append(net.advance(stimulus, duration_ms).observation())
    wall = time.perf_counter() - t0
    steps = len(windows) - first
    identical = all(
        # the network's fields (the environment adds the controller's own, e.g. its dose)
        all(float(got[k]) == float(want[k]) for k in got)
        for got, want in zip(fields, data["fields"], strict=True)
    )
    return {
        "steps": steps, "advance_steps_per_s": steps / acc["advance_s"],
        "kernel_steps_per_s": steps / acc["kernel_s"], "loop_wall_s": wall,
        "kernel_ms": acc["kernel_s"] * 1000.0 / steps,
        "network_rest_ms": (acc["advance_s"] - acc["kernel_s"]) * 1000.0 / steps,
        "replay_identical": identical, "load_avg_1min": os.getloadavg()[0],
    }  # fmt: skip


# ----------------------------------------------------------------------------- parent side
def _python_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    # Measure with the bytecode cache a normal install has (compiling every module from its
    # source on each start costs about 5 MB of peak memory).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _child(tree: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        capture_output=True, text=True, timeout=900, cwd=tree, env=_python_env(tree),
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"child {args} in {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def peak_rss_mb(tree: Path, figure: bool, out_dir: Path) -> dict[str, float]:
    """Peak RSS and wall time of ``neuroloop-sim run`` (Fig 3 network, 25 s) in ``tree``."""
    cmd = [sys.executable, "-m", "simulator.cli", "run", "--protocol", "ftsts-desync",
           "--duration", "25", "--out", str(out_dir), "--no-progress",
           "--log-level", "warning"]  # fmt: skip
    if not figure:
        cmd.append("--no-figure")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=_python_env(tree), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read().decode() if proc.stderr is not None else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"neuroloop-sim run in {tree} failed:\n{stderr[-3000:]}")
    return {"peak_rss_mb": usage.ru_maxrss / 1024.0, "wall_s": wall}


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _summary(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: _stats([float(r[k]) for r in runs]) for k in keys}


def main() -> None:
    """Measure and print JSON (or run one child measurement with ``--child``)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "env":
            result = child_env(float(rest[0]), int(rest[1]), Path(rest[2]))
        elif kind == "overhead":
            result = child_overhead(int(rest[0]), int(rest[1]))
        else:
            result = child_bound(Path(rest[0]))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--steps", type=int, default=300,
                        help=f"timed 20 ms steps per run (default 300; 500 ms runs take "
                             f"{LONG_PERIOD_STEPS})")  # fmt: skip
    parser.add_argument("--periods", type=float, nargs="+", default=[20.0, 500.0],
                        help="control periods in ms (default 20 500)")  # fmt: skip
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout to measure alternately (e.g. a worktree of main)",
    )
    parser.add_argument(
        "--overhead-runs",
        type=int,
        default=3,
        help="processes per tree timing the environment without simulation (default 3)",
    )
    parser.add_argument(
        "--rss-rounds",
        type=int,
        default=3,
        help="peak-RSS runs per tree without the figure (default 3; 0: skip)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error("expected --rounds >= 1 and --steps >= 1")
    trees = {"this": ROOT}
    if args.baseline is not None:
        if not (args.baseline / "simulator" / "network.py").is_file():
            parser.error(f"expected --baseline to be a NeuroLoop checkout, actual {args.baseline}")
        trees["baseline"] = args.baseline.resolve()
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
        name: {f"{p:g}": {"env": [], "bound": []} for p in args.periods} for name in trees
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for tree in trees.values():  # compile (or load) each tree's kernels, untimed
            subprocess.run(
                [sys.executable, "-m", "simulator.cli", "run", "--protocol", "ftsts-desync",
                 "--duration", "0.2", "--out", str(Path(tmp) / "warm"), "--no-figure",
                 "--no-progress", "--log-level", "warning"],
                cwd=tree, env=_python_env(tree), capture_output=True, timeout=900, check=True,
            )  # fmt: skip
        for rnd in range(args.rounds):
            for period in args.periods:
                steps = args.steps if period <= 20.0 else LONG_PERIOD_STEPS
                order = list(trees.items())
                if rnd % 2:
                    order.reverse()
                for name, tree in order:
                    record = Path(tmp) / f"{name}_{period:g}.json"
                    env = _child(tree, "env", f"{period:g}", str(steps), str(record))
                    bound = _child(tree, "bound", str(record))
                    runs[name][f"{period:g}"]["env"].append(env)
                    runs[name][f"{period:g}"]["bound"].append(bound)
                    print(f"round {rnd + 1} {name} {period:g} ms: env {env['steps_per_s']:.1f} "
                          f"steps/s, advance bound {bound['advance_steps_per_s']:.1f}, kernel "
                          f"bound {bound['kernel_steps_per_s']:.1f}", file=sys.stderr)  # fmt: skip
        overhead: dict[str, list[float]] = {name: [] for name in trees}
        for rnd in range(args.overhead_runs):
            order = list(trees.items())
            if rnd % 2:
                order.reverse()
            for name, tree in order:
                got = _child(tree, "overhead", "15", "150")
                overhead[name].append(got["us_per_step_min"])
        rss: dict[str, Any] = {}
        if args.rss_rounds > 0:
            plain: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for _ in range(args.rss_rounds):
                for name, tree in trees.items():
                    plain[name].append(peak_rss_mb(tree, False, Path(tmp) / f"run_{name}"))
            for name, tree in trees.items():
                with_figure = peak_rss_mb(tree, True, Path(tmp) / f"fig_{name}")
                rss[name] = {
                    "no_figure": _summary(plain[name], ("peak_rss_mb", "wall_s")),
                    "no_figure_runs_mb": [r["peak_rss_mb"] for r in plain[name]],
                    "with_figure_peak_rss_mb": with_figure["peak_rss_mb"],
                }
    report: dict[str, Any] = {
        "benchmark": "env_speed", "n": 2000, "rounds": args.rounds,
        "cpu_count": os.cpu_count(), "load_avg_before": load_before,
        "trees": {name: str(tree) for name, tree in trees.items()},
    }  # fmt: skip
    env_keys = ("steps_per_s", "ms_per_step", "kernel_ms", "sensing_ms", "network_rest_ms",
                "env_rest_ms",
                "cpu_s", "kernel_bound_steps_per_s", "advance_bound_steps_per_s",
                "kernel_share")  # fmt: skip
    bound_keys = ("advance_steps_per_s", "kernel_steps_per_s", "kernel_ms", "network_rest_ms")
    for name in trees:
        report[name] = {}
        for period, both in runs[name].items():
            env_runs, bound_runs = both["env"], both["bound"]
            ratios = [e["steps_per_s"] / b["kernel_steps_per_s"]
                      for e, b in zip(env_runs, bound_runs, strict=True)]  # fmt: skip
            report[name][f"period_{period}_ms"] = {
                "steps_per_run": env_runs[0]["steps"],
                "env": _summary(env_runs, env_keys),
                "bound": _summary(bound_runs, bound_keys),
                "env_over_kernel_bound": _stats(ratios),
                "replay_identical": all(b["replay_identical"] for b in bound_runs),
                "digests": sorted({e["digest"] for e in env_runs}),
                "load_avg_1min": _stats([e["load_avg_1min"] for e in env_runs]),
            }
        if overhead[name]:
            report[name]["env_overhead_us_per_step"] = {
                **_stats(overhead[name]), "runs": overhead[name],
                "what": "one environment step with the simulation answered at once "
                "(minimum of 15 episodes of 150 steps per process)",
            }  # fmt: skip
        if name in rss:
            report[name]["peak_rss_25s_n2000"] = rss[name]
    if "baseline" in trees:
        report["same_episode_both_trees"] = {
            p: report["this"][f"period_{p}_ms"]["digests"]
            == report["baseline"][f"period_{p}_ms"]["digests"]
            for p in runs["this"]
        }
        report["speedup_env_steps_per_s"] = {
            p: report["this"][f"period_{p}_ms"]["env"]["steps_per_s"]["median"]
            / report["baseline"][f"period_{p}_ms"]["env"]["steps_per_s"]["median"]
            for p in runs["this"]
        }
    report["load_avg_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
