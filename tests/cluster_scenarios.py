"""Scenarios on a real multi-node Ray cluster, run by tests/test_cluster.py inside a network
namespace with only the loopback interface up (so every byte stays on 127.0.0.1).

Usage: python tests/cluster_scenarios.py WORK_DIR  -> writes WORK_DIR/report.json, one entry
per scenario (or its error), then shuts the cluster down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUDY = """\
[study]
name = "tiny"
protocol = "ftsts-desync"
n_scale = 0.1
duration_s = 4.0
seeds = 2

[parameters]
amplitude_mv = [100.0, 200.0]
frequency_hz = [83.33, 180.0]

[fixed]
onset_ms = 1000.0
latch_mv = 150.0
"""
#: Longest wait for anything this script waits on (s).
WAIT_S = 120.0


def wait_for(predicate: Any, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(0.05)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def blocking_task(marker_dir: str, value: int) -> dict[str, Any]:
    """Record where it runs, then wait for ``go`` (a lost first attempt never sees it)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    marker = Path(marker_dir)
    (marker / f"started-{os.getpid()}").write_text(node)
    deadline = time.monotonic() + WAIT_S
    while not (marker / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"value": value * value, "node": node}


def failing_task(x: float) -> float:
    raise ValueError(f"refuses x = {x}")


def square(x: int) -> int:
    return x * x


def sleeping_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def scenario_executor_timeout(cluster: Any) -> dict[str, Any]:
    from core.executor import Task
    from core.executor.ray_engine import RayExecutor

    ex = RayExecutor(cluster.address)
    tasks = [Task("slow", sleeping_task, (600.0,), {"s": 600.0}, timeout_s=2.0),
             *[Task(f"sq{i}", square, (i,), timeout_s=60.0) for i in range(4)]]  # fmt: skip
    outcomes = list(ex.run(tasks))
    by_key = {o.key: o for o in outcomes}
    slow = by_key["slow"]
    return {"outcomes": len(outcomes), "keys": sorted(by_key),
            "slow": {"timed_out": slow.timed_out, "error": slow.error,
                     "attempts": slow.attempts, "params": dict(slow.params)},
            "squares": [(by_key[f"sq{i}"].value, by_key[f"sq{i}"].attempts)
                        for i in range(4)]}  # fmt: skip


def scenario_threads_need_a_node_that_fits(cluster: Any) -> dict[str, Any]:
    """``--threads 2`` on one-CPU nodes: refused at once instead of waiting for ever."""
    from core.executor import ExecutorError
    from core.executor.ray_engine import RayExecutor

    try:
        RayExecutor(cluster.address, cpus_per_task=2)
    except ExecutorError as err:
        refused = str(err)
    else:
        refused = ""
    ex = RayExecutor(cluster.address, cpus_per_task=1)
    return {"refused": refused, "describe_cpus_per_task": ex.describe()["cpus_per_task"]}


def sweep_cmd(study: Path, out: Path, ray: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "controller.sweep.cli", str(study), "--out", str(out),
           "--no-progress", "--no-plot"]  # fmt: skip
    return [*cmd, "--ray", ray] if ray else [*cmd, "--workers", "2"]


def scenario_executor_node_loss(cluster: Any, nodes: list[Any], work: Path) -> dict[str, Any]:
    from core.executor import Task
    from core.executor.ray_engine import RayExecutor

    ex = RayExecutor(cluster.address)
    marker = work / "markers"
    marker.mkdir()
    outcomes: list[Any] = []
    tasks = [Task("blocked", blocking_task, (str(marker), 7), {"value": 7}),
             Task("bad", failing_task, (2.5,), {"x": 2.5}),
             *[Task(f"sq{i}", square, (i,), {"i": i}) for i in range(6)]]  # fmt: skip
    thread = threading.Thread(target=lambda: outcomes.extend(ex.run(tasks)), daemon=True)
    thread.start()
    wait_for(lambda: any(marker.glob("started-*")), "the blocking task to start")
    first = next(marker.glob("started-*"))
    victim_id = first.read_text()
    victim = next(n for n in nodes if n.node_id == victim_id)
    cluster.remove_node(victim, allow_graceful=False)
    nodes.remove(victim)
    nodes.append(cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
    wait_for(lambda: len(list(marker.glob("started-*"))) >= 2, "the retry to start")
    (marker / "go").write_text("")
    thread.join(WAIT_S)
    by_key = {o.key: o for o in outcomes}
    return {
        "outcomes": len(outcomes),
        "keys": sorted(by_key),
        "blocked": {"ok": by_key["blocked"].ok, "attempts": by_key["blocked"].attempts,
                    "value": (by_key["blocked"].value or {}).get("value"),
                    "node_changed": (by_key["blocked"].value or {}).get("node") != victim_id},
        "bad": {"ok": by_key["bad"].ok, "error": by_key["bad"].error,
                "params": dict(by_key["bad"].params), "attempts": by_key["bad"].attempts},
        "squares": [by_key[f"sq{i}"].value for i in range(6)],
    }  # fmt: skip


def run_sweep_here(study: Path, out: Path, executor: Any) -> dict[str, Any]:
    """The sweep in this process (its Ray workers are already warm)."""
    from controller.sweep.run import run_sweep
    from controller.sweep.study import load_study

    return run_sweep(load_study(study), out, executor, progress=False, plot=False)


def scenario_sweep_node_killed(
    cluster: Any, nodes: list[Any], work: Path, study: Path
) -> dict[str, Any]:
    from core.executor.ray_engine import RayExecutor

    out = work / "sweep-node-killed"
    manifests: list[dict[str, Any]] = []
    ex = RayExecutor(cluster.address)
    thread = threading.Thread(
        target=lambda: manifests.append(run_sweep_here(study, out, ex)), daemon=True
    )
    thread.start()
    wait_for(lambda: lines(out / "points.jsonl") >= 2, "two finished points")
    killed_after = lines(out / "points.jsonl")
    victim = nodes.pop(0)
    cluster.remove_node(victim, allow_graceful=False)
    nodes.append(cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1"))
    thread.join(WAIT_S * 2)
    done = manifests[0]["done"] == manifests[0]["points"] if manifests else False
    return {"exit": 0 if done else 1, "killed_after_points": killed_after, **_sweep_state(out)}


def scenario_driver_killed(cluster: Any, work: Path, study: Path) -> dict[str, Any]:
    out = work / "sweep-driver-killed"
    proc = subprocess.Popen(sweep_cmd(study, out, cluster.address), cwd=ROOT)
    try:
        wait_for(lambda: lines(out / "points.jsonl") >= 2, "two finished points")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = lines(out / "points.jsonl")
    # A write cut by the kill leaves a partial last line: simulate the worst case.
    with (out / "points.jsonl").open("a") as f:
        f.write('{"key": "cut-mid-wri')
    from core.executor.ray_engine import RayExecutor

    manifest = run_sweep_here(study, out, RayExecutor(cluster.address))
    code = 0 if manifest["done"] == manifest["points"] else 1
    return {"exit": code, "lines_before_resume": before,
            "resumed_with": manifest["resumed_with"], **_sweep_state(out)}  # fmt: skip


def _sweep_state(out: Path) -> dict[str, Any]:
    import csv

    recs = [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines() if x.strip()]
    keys = [r["key"] for r in recs if r["status"] == "ok"]
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    from controller.sweep.point import TIMING_FIELDS

    table = sorted(({k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows),
                   key=lambda r: r["key"])  # fmt: skip
    return {"ok_lines": len(keys), "unique_ok": len(set(keys)), "table": table,
            "attempts": [r.get("attempts") for r in recs],
            "parquet": (out / "results.parquet").exists()}  # fmt: skip


def scenario_eval(cluster: Any, work: Path) -> dict[str, Any]:
    from controller.eval_cli import main as eval_main

    bundle = ROOT / "controller/policies/pretrained/ftsts_ppo"
    common = ["--policy", str(bundle), "--seeds", "2", "--n-scale", "0.05", "--tail-s", "0.5",
              "--methods", "policy,off", "--log-level", "error"]  # fmt: skip
    codes = {
        "ray": eval_main([*common, "--out", str(work / "eval-ray"), "--ray", cluster.address]),
        "local": eval_main([*common, "--out", str(work / "eval-local"), "--workers", "2"]),
    }
    runs = {k: json.loads((work / f"eval-{k}" / "eval.json").read_text()) for k in codes}
    return {"exit": codes, "methods": {k: runs[k]["methods"] for k in runs},
            "failures": {k: runs[k]["failures"] for k in runs}}  # fmt: skip


def scenario_fit(cluster: Any, work: Path) -> dict[str, Any]:
    from fitting.cli import main as fit_main

    common = ["--model", "reference", "--measurements", "example", "--method", "random",
              "--budget", "6", "--k", "0.001", "--seed", "5", "--no-plot", "--no-progress",
              "--log-level", "error"]  # fmt: skip
    codes = {
        "ray": fit_main([*common, "--out", str(work / "fit-ray"), "--ray", cluster.address]),
        "local": fit_main([*common, "--out", str(work / "fit-local"), "--workers", "2"]),
    }
    docs = {k: json.loads((work / f"fit-{k}" / "solutions.json").read_text()) for k in codes}
    return {"exit": codes, "simulations": {k: d["run"]["simulations"] for k, d in docs.items()},
            "best": {k: d["best_candidates"] for k, d in docs.items()}}  # fmt: skip


def scenario_fit_cells(cluster: Any, work: Path) -> dict[str, Any]:
    """A folder of two cells in two lanes: on the two-CPU cluster, and on two local workers."""
    import shutil

    import yaml

    from fitting.cli import main as fit_main
    from fitting.measurements import example_measurements_path

    folder = work / "cells"
    folder.mkdir()
    shutil.copy(example_measurements_path(), folder / "cell_a.yaml")
    data = yaml.safe_load(example_measurements_path().read_text())
    data["targets"][0]["mean"] *= 1.1
    (folder / "cell_b.yaml").write_text(yaml.safe_dump(data))
    common = ["--model", "reference", "--measurements-dir", str(folder), "--method", "random",
              "--budget", "6", "--k", "0.001", "--seed", "5", "--lanes", "2", "--no-plot",
              "--no-progress", "--log-level", "error"]  # fmt: skip
    codes = {
        "ray": fit_main([*common, "--out", str(work / "cells-ray"), "--ray", cluster.address]),
        "local": fit_main([*common, "--out", str(work / "cells-local"), "--workers", "2"]),
    }
    out = {k: work / f"cells-{k}" for k in codes}
    summary = {k: json.loads((d / "cells.json").read_text()) for k, d in out.items()}
    docs = {k: {c: json.loads((d / c / "solutions.json").read_text())
                for c in ("cell_a", "cell_b")} for k, d in out.items()}  # fmt: skip
    best = {k: {c: d[c]["best_candidates"] for c in d} for k, d in docs.items()}
    return {"exit": codes, "lanes": {k: s["lanes"] for k, s in summary.items()},
            "used": {k: [r["budget_used"] for r in s["cells"]] for k, s in summary.items()},
            "workers": {k: [d[c]["run"]["workers"] for c in d] for k, d in docs.items()},
            "best": best}  # fmt: skip


def scenario_train(cluster: Any, work: Path) -> dict[str, Any]:
    from controller.train_cli import main as train_main

    out = work / "train-ray"
    args = ["--n-scale", "0.05", "--control-period-ms", "100", "--onset-ms", "200",
            "--controlled-s", "0.5", "--tail-s", "0.1", "--n-envs", "2", "--n-steps", "16",
            "--batch-size", "16", "--n-epochs", "1", "--total-timesteps", "64",
            "--ray", cluster.address, "--out", str(out), "--log-level", "error"]  # fmt: skip
    code = train_main(args)
    local_out = work / "train-local"
    local_args = [*args[: args.index("--ray")], "--vec", "subproc", "--out", str(local_out),
                  "--log-level", "error"]  # fmt: skip
    local_code = train_main(local_args)
    import numpy as np

    weights = [np.load(d / "bundle" / "weights.npz") for d in (out, local_out)]
    same = sorted(weights[0].files) == sorted(weights[1].files) and all(
        np.array_equal(weights[0][k], weights[1][k]) for k in weights[0].files
    )
    summary = json.loads((out / "train.json").read_text())
    bundle = json.loads((out / "bundle" / "bundle.json").read_text())
    return {"exit": code, "local_exit": local_code, "weights_equal_to_local": same,
            "vec": summary["vec"], "timesteps": summary["timesteps"],
            "bundle_format": bundle["format"], "bundle_files": sorted(
                p.name for p in (out / "bundle").iterdir())}  # fmt: skip


def main() -> int:
    import ray
    from ray.cluster_utils import Cluster

    work = Path(sys.argv[1])
    study = work / "tiny.toml"
    study.write_text(STUDY)
    report: dict[str, Any] = {}
    # Head: no CPUs (it schedules only); two one-CPU worker nodes.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False})  # fmt: skip
    nodes = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    report["address"] = cluster.address
    from core.executor import LocalExecutor

    with LocalExecutor(2) as local_ex:
        manifest = run_sweep_here(study, work / "sweep-local", local_ex)
    local = 0 if manifest["done"] == manifest["points"] else 1
    report["local"] = {"exit": local, **_sweep_state(work / "sweep-local")}
    steps = [
        ("executor_node_loss", lambda: scenario_executor_node_loss(cluster, nodes, work)),
        ("executor_timeout", lambda: scenario_executor_timeout(cluster)),
        ("threads_fit", lambda: scenario_threads_need_a_node_that_fits(cluster)),
        ("sweep_node_killed", lambda: scenario_sweep_node_killed(cluster, nodes, work, study)),
        ("driver_killed", lambda: scenario_driver_killed(cluster, work, study)),
        ("eval", lambda: scenario_eval(cluster, work)),
        ("fit", lambda: scenario_fit(cluster, work)),
        ("fit_cells", lambda: scenario_fit_cells(cluster, work)),
        ("train", lambda: scenario_train(cluster, work)),
    ]
    for name, step in steps:
        t0 = time.monotonic()
        try:
            report[name] = step()
        except Exception:
            report[name] = {"error": traceback.format_exc()}
        report[name]["wall_s"] = round(time.monotonic() - t0, 1)
        (work / "report.json").write_text(json.dumps(report, indent=1, default=str))
    ray.shutdown()
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
