"""Ray against the local process pool: per-task overhead, sweep throughput, a scaling model.

Runs inside a network namespace with only ``lo`` up (it re-executes itself under
``unshare -n`` unless ``--no-netns``; needs root), on a Ray cluster of one-CPU nodes started on
this machine with Ray's own cluster utilities. Prints JSON (and writes it with ``--out``):

* ``overhead``: wall time per trivial task (returns its argument), warm executors, 2 workers,
  local pool and Ray alternated ``--rounds`` times; the ratio Ray / local;
* ``throughput``: a small sweep (N = 200, 4 s runs) with 1 and 2 workers on each engine,
  alternated, in points per second;
* ``example_on_cluster`` (``--example-local DIR``): the example study on two Ray nodes with one
  node killed after ``--kill-after`` points, compared value by value with the local run in DIR;
* ``model``: predicted wall time of the example study (and of a 20× larger one) on 10 and 100
  machines, from the measured task cost, per-task driver overhead and worker start-up.

Usage (from the repository root, niced):
    nice -n 10 python bench/bench_cluster.py --example-local runs/sweep-example \
        --out docs/results/bench_cluster.json
"""

from __future__ import annotations

import argparse
import csv
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
sys.path.insert(0, str(ROOT))

THROUGHPUT_STUDY = """\
[study]
name = "throughput"
protocol = "ftsts-desync"
n_scale = 0.1
duration_s = 4.0
seeds = 2
[parameters]
amplitude_mv = [100.0, 150.0, 200.0]
frequency_hz = [83.33, 130.0]
[fixed]
onset_ms = 1000.0
latch_mv = 150.0
"""


def echo(x: int) -> int:
    return x


def per_task_s(executor: Any, n: int) -> float:
    from core.executor import Task

    tasks = [Task(str(i), echo, (i,)) for i in range(n)]
    t0 = time.perf_counter()
    values = sorted(o.value for o in executor.run(tasks))
    wall = time.perf_counter() - t0
    assert values == list(range(n))
    return wall / n


def sweep_points_per_s(executor: Any, study_path: Path, work: Path, tag: str) -> float:
    from controller.sweep.run import run_sweep
    from controller.sweep.study import load_study

    study = load_study(study_path)
    out = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=work))
    t0 = time.perf_counter()
    manifest = run_sweep(study, out, executor, progress=False, plot=False)
    wall = time.perf_counter() - t0
    assert manifest["done"] == manifest["points"], manifest
    return manifest["points"] / wall


def table(path: Path) -> list[dict[str, str]]:
    from controller.sweep.point import TIMING_FIELDS

    with path.open() as f:
        rows = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r["key"])


def example_on_cluster(
    cluster: Any, nodes: list[Any], local_dir: Path, work: Path, kill_after: int
) -> dict[str, Any]:
    out = work / "example-ray"
    cmd = [
        sys.executable,
        "-m",
        "controller.sweep.cli",
        "example",
        "--out",
        str(out),
        "--ray",
        cluster.address,
        "--no-progress",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    points = out / "points.jsonl"
    deadline = time.monotonic() + 3600
    while (not points.exists() or len(points.read_text().splitlines()) < kill_after) and (
        proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    victim = nodes.pop(0)
    cluster.remove_node(victim, allow_graceful=False)
    killed_at = time.perf_counter() - t0
    code = proc.wait(timeout=3600)
    wall = time.perf_counter() - t0
    recs = [json.loads(x) for x in points.read_text().splitlines() if x.strip()]
    ray_rows, local_rows = table(out / "results.csv"), table(local_dir / "results.csv")
    return {
        "exit": code,
        "nodes_at_start": 2,
        "node_killed_after_s": round(killed_at, 1),
        "node_killed_after_points": kill_after,
        "wall_s": round(wall, 1),
        "points": len(ray_rows),
        "retried_points": sum(1 for r in recs if r.get("attempts", 1) > 1),
        "recorded_once": len({r["key"] for r in recs}) == len(recs),
        "equal_to_local": ray_rows == local_rows,
    }


def scaling_model(
    task_s: float, jit_s: float, driver_s: float, points: int, cores: int
) -> dict[str, Any]:
    """Wall time = worker start-up + waves of tasks, or the driver's dispatch if that is longer.

    ``waves = ceil(points / (machines × cores))``; each wave costs one task's wall time (tasks
    of a study cost about the same); the driver hands out one task per ``driver_s`` (measured
    Ray per-task overhead), so it alone needs ``points × driver_s``; each fresh worker process
    pays the simulator's JIT compilation once (``jit_s``, all workers in parallel). Results
    are ~2 kB of JSON per point: the object store
    and the network are not the bottleneck at these sizes.
    """
    out: dict[str, Any] = {}
    for machines in (1, 10, 100):
        slots = machines * cores
        waves = math.ceil(points / slots)
        wall = jit_s + max(waves * task_s, points * driver_s)
        out[f"{machines}_machines"] = {
            "slots": slots,
            "waves": waves,
            "wall_s": round(wall, 1),
            "busy_fraction": round(points / (waves * slots), 3),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="Alternated rounds (default 3).")
    p.add_argument("--tasks", type=int, default=200, help="Trivial tasks per overhead round.")
    p.add_argument("--example-local", type=Path, help="Local run of the example study.")
    p.add_argument("--kill-after", type=int, default=6, help="Example: kill a node after N points.")
    p.add_argument("--cores-per-machine", type=int, default=16, help="Scaling model (default 16).")
    p.add_argument(
        "--cold-start-s",
        type=float,
        default=18.2,
        help="Scaling model: a fresh worker's first run compiles the simulator (numba cache "
        "empty); 18.2 s is the jit_s of `neuroloop-sim run --protocol ftsts-desync` on a fresh "
        "cache on this machine (default).",
    )
    p.add_argument("--out", type=Path, help="Also write the JSON here.")
    p.add_argument("--no-netns", action="store_true", help="Do not enter a network namespace.")
    a = p.parse_args()
    if not a.no_netns and os.environ.get("NEUROLOOP_BENCH_NETNS") != "1":
        args = " ".join(f"'{x}'" for x in sys.argv[1:])
        script = f"ip link set lo up && exec {sys.executable} {Path(__file__).resolve()} {args}"
        env = {
            **os.environ,
            "NEUROLOOP_BENCH_NETNS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(ROOT),
        }
        return subprocess.run(
            ["unshare", "-n", "sh", "-c", script], env=env, check=False
        ).returncode

    import ray
    from ray.cluster_utils import Cluster

    from core.executor import LocalExecutor
    from core.executor.ray_engine import RayExecutor

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    study = work / "throughput.toml"
    study.write_text(THROUGHPUT_STUDY)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    nodes = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")]
    ray.init(address=cluster.address, log_to_driver=False)
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "rounds": a.rounds}
    ray_ex = RayExecutor(cluster.address)

    # Sweep throughput: 1 then 2 workers; warm-up sweeps first (worker start, JIT).
    throughput: dict[str, Any] = {}
    for workers in (1, 2):
        if workers == 2:
            nodes.append(cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
            cluster.wait_for_nodes()
        local = LocalExecutor(workers)
        sweep_points_per_s(local, study, work, "warm-local")
        sweep_points_per_s(ray_ex, study, work, "warm-ray")
        rates: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(a.rounds):
            rates["local"].append(sweep_points_per_s(local, study, work, f"local{workers}"))
            rates["ray"].append(sweep_points_per_s(ray_ex, study, work, f"ray{workers}"))
        local.close()
        throughput[f"{workers}_workers"] = {
            "local_points_per_s": round(statistics.median(rates["local"]), 3),
            "ray_points_per_s": round(statistics.median(rates["ray"]), 3),
            "ray_over_local": round(
                statistics.median(rates["ray"]) / statistics.median(rates["local"]), 3
            ),
            "all_rounds": {k: [round(x, 3) for x in v] for k, v in rates.items()},
        }
    throughput["points_per_sweep"] = 12
    result["throughput"] = throughput

    # Per-task overhead, 2 workers each, warm.
    local = LocalExecutor(2)
    per_task_s(local, a.tasks)
    per_task_s(ray_ex, a.tasks)
    over: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(a.rounds):
        over["local"].append(per_task_s(local, a.tasks))
        over["ray"].append(per_task_s(ray_ex, a.tasks))
    local.close()
    lo, ry = statistics.median(over["local"]), statistics.median(over["ray"])
    result["overhead"] = {
        "tasks_per_round": a.tasks,
        "local_ms_per_task": round(lo * 1e3, 3),
        "ray_ms_per_task": round(ry * 1e3, 3),
        "ray_over_local": round(ry / lo, 2),
        "all_rounds_ms": {k: [round(x * 1e3, 3) for x in v] for k, v in over.items()},
    }

    if a.example_local is not None:
        result["example_on_cluster"] = example_on_cluster(
            cluster, nodes, a.example_local, work, a.kill_after
        )
        manifest = json.loads((a.example_local / "sweep.json").read_text())
        with (a.example_local / "results.csv").open() as f:
            rows = list(csv.DictReader(f))
        task_s = statistics.median(float(r["point_wall_s"]) for r in rows)
        jit_s = a.cold_start_s
        result["model"] = {
            "inputs": {
                "example_points": manifest["points"],
                "task_s_median_local": round(task_s, 2),
                "cold_start_s": jit_s,
                "driver_s_per_task": round(ry, 5),
                "cores_per_machine": a.cores_per_machine,
                "example_local_wall_s_2_workers": manifest["wall_s"],
            },
            "example_study": scaling_model(
                task_s, jit_s, ry, manifest["points"], a.cores_per_machine
            ),
            "example_x20_points": scaling_model(
                task_s, jit_s, ry, 20 * manifest["points"], a.cores_per_machine
            ),
            "formula": scaling_model.__doc__,
        }
    ray.shutdown()
    cluster.shutdown()
    text = json.dumps(result, indent=2)
    print(text)
    if a.out is not None:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
