"""Environment steps/s and control-loop tick costs of this tree against another tree, alternated.

The environments and the in-process controller reach the simulator through the protocol's
backend object (:class:`controller.backends.inprocess.InProcessConnection`) instead of calling
the network directly. This script measures what that costs, in one run, alternating the two
trees so that both see the same machine drift (shared VMs drift by tens of percent). Each
measurement is a fresh one-core subprocess with ``PYTHONPATH`` set to its tree; a warm-up run
per tree and case (kernel compilation) is not counted. Cases:

* ``env``: ``FTSTSEnv`` at N = 2000 (``--n-scale``), ``--steps`` random actions in 20 ms
  control steps, single process: steps per wall second.
* ``loop``: ``ControlLoop`` with the FTSTS policy against the in-process simulator at
  N = 2000, fast pace, ``--ticks`` ticks: wall ticks per second, the per-tick overhead
  (observation in → next setpoint ready: policy and envelope) and the backend step, p50/p99.

The report gives every run, the medians and the ratios of the medians (other / this tree).

On a busy host whole-run rates swing by several times from one minute to the next, so the
report also isolates what the new route adds per step, in this tree and one process
(``route_overhead``): blocks of ``Network.advance`` called directly alternate with blocks of
the same windows through ``InProcessConnection.step`` (request objects, ranges, the envelope
monitor, the observation check) on a 10-neuron network, whose own step costs little; the
difference of the block medians is the route's cost per step.

    python bench/ab_route.py --other /tmp/route-base [--rounds 5] [--steps 500] [--ticks 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Worker run in each tree (the old tree names the in-process simulator InProcessSimBackend).
CASE = r"""
import json, sys, time
import numpy as np
from core.logs import configure_logging
configure_logging("console", "error")
case, n_scale, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if case == "env":
    from controller.envs import FTSTSEnv, SimConfig
    cfg = SimConfig(control_period_ms=20.0, onset_ms=20.0,
                    controlled_s=round(max(1.0, 0.02 * (count + 10)), 2), tail_s=0.1)
    env = FTSTSEnv(cfg, model_params={"n_scale": n_scale})
    env.reset(seed=1)
    actions = np.random.default_rng(0).uniform(-1, 1, (count, 3)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    wall = time.perf_counter() - t0
    env.close()
    print(json.dumps({"steps_per_s": count / wall, "wall_s": wall}))
else:
    from controller.envelope.governor import SafetyGovernor
    from controller.loop import ControlLoop, LoopSettings
    from controller.policies.builtin import FtstsPolicy
    from protocol.envelope.config import load_envelope
    from simulator.experiments import default_network_config
    config = default_network_config(n_scale=n_scale)
    try:
        from controller.backends.inprocess import InProcessConnection
        backend = InProcessConnection.simulator(config, seed=1, keep_applied=False)
    except ImportError:
        from controller.backends.inprocess import InProcessSimBackend
        backend = InProcessSimBackend(config, seed=1)
    gov = SafetyGovernor(load_envelope("simulator"), 0.02)
    settings = LoopSettings(period_ms=20.0, duration_s=count * 0.02, pace="fast", seed=1)
    loop = ControlLoop(backend, FtstsPolicy(onset_ms=200.0), gov, settings)
    t0 = time.perf_counter()
    result = loop.run()
    wall = time.perf_counter() - t0
    backend.close()
    over = np.asarray(result.stats.overhead_s) * 1000.0
    step = np.asarray(result.stats.step_s) * 1000.0
    print(json.dumps({"ticks_per_s": result.ticks / wall, "end": result.end_reason,
                      "charge": result.stats.charge,
                      "overhead_p50_ms": float(np.percentile(over, 50)),
                      "overhead_p99_ms": float(np.percentile(over, 99)),
                      "step_p50_ms": float(np.percentile(step, 50)),
                      "step_p99_ms": float(np.percentile(step, 99))}))
"""


def _run(tree: Path, case: str, n_scale: float, count: int) -> dict[str, Any]:
    """One measurement of ``case`` in ``tree``, in a fresh one-core subprocess."""
    env = dict(os.environ, PYTHONPATH=str(tree), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", CASE, case, str(n_scale), str(count)],
        capture_output=True, text=True, timeout=1800, cwd=tree, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"Expected a clean run in {tree}, actual:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


OVERHEAD = r"""
import json, time
import numpy as np
from core.logs import configure_logging
configure_logging("console", "error")
from controller.backends.inprocess import InProcessConnection
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from simulator.config import NetworkConfig
from simulator.network import Network
from simulator.stimulus import Stimulus
config = NetworkConfig(n_e=8, n_i=2)
env = load_envelope("simulator")
conn = InProcessConnection.simulator(config, seed=1, warm_up=False, keep_applied=False)
conn.hello("bench"); conn.configure(env, 20.0); conn.reset(1)
off = Setpoint(amplitude=0.0, frequency_hz=80.0, pulse_width_us=100.0)
on = Setpoint(amplitude=10.0, frequency_hz=80.0, pulse_width_us=100.0)
for _ in range(20):
    conn.step(off, 20.0, 5.0)
net = Network(config); net.reset(1)
stim = Stimulus(10.0, frequency_hz=80.0, pulse_width_us=100.0)
direct, route = [], []


def run_direct():
    t0 = time.perf_counter()
    for _ in range(100):
        net.advance(stim, 20.0)
    direct.append((time.perf_counter() - t0) / 100 * 1e6)


def run_route():
    t0 = time.perf_counter()
    for _ in range(100):
        conn.step(on, 20.0, 5.0)
    route.append((time.perf_counter() - t0) / 100 * 1e6)


for block in range(40):
    first, second = (run_direct, run_route) if block % 2 == 0 else (run_route, run_direct)
    first()
    second()
print(json.dumps({"direct_us": direct, "route_us": route}))
"""


def _overhead() -> dict[str, float]:
    """Per-step cost of the in-process protocol route over a direct network call (this tree)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", OVERHEAD], capture_output=True, text=True,
                         timeout=1800, cwd=ROOT, env=env)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"Expected a clean overhead run, actual:\n{out.stderr[-3000:]}")
    blocks = json.loads(out.stdout.strip().splitlines()[-1])
    direct = statistics.median(blocks["direct_us"])
    route = statistics.median(blocks["route_us"])
    return {
        "direct_step_us_p50": direct,
        "route_step_us_p50": route,
        "route_cost_us_per_step": route - direct,
        "blocks": len(blocks["route_us"]),
    }


def main() -> int:
    """Alternate the two trees and print the JSON report."""
    parser = argparse.ArgumentParser(
        description="Env steps/s and loop tick costs of this tree against another, alternated."
    )
    parser.add_argument("--other", type=Path, required=True, help="The other tree (a worktree).")
    parser.add_argument("--rounds", type=int, default=5, help="Alternated rounds (default 5).")
    parser.add_argument("--steps", type=int, default=500, help="Env steps per run (default 500).")
    parser.add_argument("--ticks", type=int, default=500, help="Loop ticks per run (default 500).")
    parser.add_argument("--n-scale", type=float, default=1.0, help="1.0 = N 2000 (default).")
    args = parser.parse_args()
    trees = {"this": ROOT, "other": args.other.resolve()}
    counts = {"env": args.steps, "loop": args.ticks}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        case: {name: [] for name in trees} for case in counts
    }
    for case, count in counts.items():
        for tree in trees.values():
            _run(tree, case, args.n_scale, min(count, 20))  # compile, not counted
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for case, count in counts.items():
            for name, tree in order:
                runs[case][name].append(_run(tree, case, args.n_scale, count))
                print(f"round {r + 1} {case} {name}: {runs[case][name][-1]}", file=sys.stderr)
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for case, per_tree in runs.items():
        medians[case] = {}
        for name, results in per_tree.items():
            keys = [k for k, v in results[0].items() if isinstance(v, float)]
            medians[case][name] = {k: statistics.median(r[k] for r in results) for k in keys}
    ratios = {
        case: {
            k: medians[case]["other"][k] / medians[case]["this"][k]
            for k in medians[case]["this"]
            if medians[case]["this"][k]
        }
        for case in medians
    }
    overhead = _overhead()
    report = {
        "benchmark": "ab_route",
        "route_overhead": overhead,
        "other_tree": str(trees["other"]),
        "n": round(2000 * args.n_scale),
        "rounds": args.rounds,
        "env_steps": args.steps,
        "loop_ticks": args.ticks,
        "cpu_count": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "medians": medians,
        "ratio_other_over_this": ratios,
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
