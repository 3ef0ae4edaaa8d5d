"""Simulator speed: 25 s at N = 2000 and 5 s at N = 10 000, JIT apart; prints JSON.

Each case runs in a fresh subprocess so that peak RSS belongs to that case alone. The first-ever
compile time is measured in a subprocess with an empty Numba cache directory; a short run then
fills the project's own cache, so that no measured case compiles (which would add LLVM's memory
to its peak RSS). Speed is reported as model seconds per wall second (the ratio to real time).

The machines here are shared VMs whose speed drifts by tens of percent from one minute to the
next, so each speed case runs ``--repeats`` times (default 5), the two cases alternating so that
both meet the same drift; a case reports its median run (with every run's wall seconds beside
it) and the largest peak RSS of its runs.

    python bench/bench_simulator.py [--quick] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

CASE = r"""
import json, resource, sys, time
import numpy as np
from simulator.experiments import get_experiment
from simulator.run import run_experiment
name, scale, dur = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
t0 = time.perf_counter()
c0 = time.process_time()
extra = {"threads": int(sys.argv[4])} if len(sys.argv) > 4 else {}  # older trees: no threads
res = run_experiment(get_experiment(name), n_scale=scale, duration_s=dur, seed=1, **extra)
cpu = time.process_time() - c0
total = time.perf_counter() - t0
print(json.dumps({
    "protocol": name, "n": res.n_e + res.n_i, "model_s": res.duration_ms / 1000.0,
    "wall_s": res.wall_s, "jit_s": res.jit_s, "total_process_s": total,
    "model_s_per_wall_s": res.duration_ms / 1000.0 / res.wall_s,
    "process_cpu_s": cpu,
    "model_s_per_cpu_s": res.duration_ms / 1000.0 / max(cpu - res.jit_s, 1e-9),
    "load_avg_1min": __import__("os").getloadavg()[0],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    "spikes": int(res.spike_times_ms.shape[0]),
    "threads": extra.get("threads", 1),
    "weight_mv": float(res.window_weight_mv[-1]),
    "module": __import__("simulator").__file__,
}))
"""


BASELINE = r"""
import json, time
import numpy as np
from simulator.network import Network
from simulator.noise import standard_normal_f32
from simulator.experiments import get_experiment
from simulator.reference import ReferenceState, reference_step
cfg = get_experiment("ftsts-desync").network_config("paper", 1.0)
net = Network(cfg)
net.reset(seed=1)
for _ in range(50):  # 1 s: the synchronous regime
    net.advance(None, 20.0)
steps = 200
xi = standard_normal_f32(net._noise, (steps, cfg.n))
zero = np.zeros(steps)
state = ReferenceState(
    v=net.v.copy(), ref=net._ref.copy(), x_cross=net._x_cross.copy(),
    s_cross=net._s_cross.copy(), hist_cross=net._hist_cross.copy(), head=int(net._head[0]),
    tr_e=net._tr_e.copy(), tr_i=net._tr_i.copy(), w_ei=net._ei.weight.copy(),
    w_ie=net._ie.weight.copy(),
)
t0 = time.process_time()
for k in range(steps):
    state, _ = reference_step(
        cfg, state, dt_over_tau=net._dt_over_tau,
        noise_increment=net._gain_off * xi[k].astype(np.float64), u_e=0.0, u_i=0.0,
        plast_on=True, ei=(net._ei.ptr, net._ei.target), ie=(net._ie.ptr, net._ie.target),
    )
numpy_s = time.process_time() - t0
best = float("inf")
for _ in range(5):
    import copy
    trial = copy.deepcopy(net)
    t0 = time.process_time()
    trial.integrate_explicit(zero, zero, xi, plast_on=True)
    best = min(best, time.process_time() - t0)
model_s = steps * cfg.dt_ms / 1000.0
print(json.dumps({
    "n": cfg.n, "steps": steps,
    "numpy_reference_model_s_per_cpu_s": model_s / numpy_s,
    "kernel_model_s_per_cpu_s": model_s / best,
    "kernel_speedup_vs_numpy_reference": numpy_s / best,
}))
"""


def _case(
    name: str, scale: float, dur: float, env: dict[str, str] | None = None, code: str = ""
) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code or CASE, name, str(scale), str(dur)],
        capture_output=True, text=True, check=True, timeout=1800,
        # one core: no BLAS worker threads spinning beside the simulation
        env=dict(env or os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (the upper one of an even count), with every run's."""
    ordered = sorted(runs, key=lambda r: float(r["wall_s"]))
    summary = dict(ordered[len(ordered) // 2])
    summary["runs_wall_s"] = [float(r["wall_s"]) for r in runs]
    summary["repeats"] = len(runs)
    summary["peak_rss_mb"] = max(float(r["peak_rss_mb"]) for r in runs)
    return summary


def main() -> None:
    """Print the simulator benchmark's JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI smoke)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs of each speed case, median reported (≥ 1)"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats expected an integer >= 1, actual {args.repeats}")
    with tempfile.TemporaryDirectory() as cache:
        cold_env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = _case("ftsts-desync", 0.05, 0.2, cold_env)
    # compile into the project's own cache first: a case that compiled in-process would count
    # LLVM's memory in its peak RSS (≈ 90 MB at N = 2000)
    _case("ftsts-desync", 0.05, 0.2)
    small: list[dict[str, Any]] = []
    large: list[dict[str, Any]] = []
    for _ in range(args.repeats):  # alternated: both cases meet the same drift
        small.append(_case("ftsts-desync", 1.0, 2.0 if args.quick else 25.0))
        large.append(_case("ftsts-desync-10k", 1.0, 1.0 if args.quick else 5.0))
    results = {
        "first_compile_s": cold["jit_s"],
        "n2000_25s": _median_run(small),
        "n10000_5s": _median_run(large),
        "same_state_baseline": _case("", 1.0, 0.0, code=BASELINE),
        "cpu": os.cpu_count(),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
