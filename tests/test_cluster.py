"""A sweep, an evaluation and a training run on a real Ray cluster (three nodes on this machine).

The cluster runs inside a network namespace that this test makes with only ``lo`` up
(``unshare -n``; needs root), so Ray can only use 127.0.0.1 and no traffic leaves the machine.
One subprocess (tests/cluster_scenarios.py) starts the cluster once and plays every scenario:
a node killed while a task runs on it, a node killed mid-sweep, the sweep's driver killed and
the sweep resumed, an evaluation, a fit, and a short PPO run with its environments as actors;
each test below checks one scenario in its report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The whole scenario script, cluster start to shutdown (s).
SCENARIOS_TIMEOUT_S = 280


def _namespace_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10, check=False)
    return None if probe.returncode == 0 else "cannot make a network namespace (needs root)"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("ray", reason="the cluster extra is not installed")
    reason = _namespace_available()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    script = f"ip link set lo up && exec {sys.executable} tests/cluster_scenarios.py {work}"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=SCENARIOS_TIMEOUT_S,
                          check=False)  # fmt: skip
    path = work / "report.json"
    assert path.exists(), f"no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    data: dict[str, Any] = json.loads(path.read_text())
    data["_stderr"] = proc.stderr[-4000:]
    return data


def _scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in report, f"scenario {name} did not run:\n{report['_stderr']}"
    part: dict[str, Any] = report[name]
    assert "error" not in part, part.get("error")
    return part


def test_cluster_runs_on_loopback_only(report: dict[str, Any]) -> None:
    assert report["address"].startswith("127.0.0.1:")


def test_task_on_a_killed_node_runs_again_elsewhere_once(report: dict[str, Any]) -> None:
    r = _scenario(report, "executor_node_loss")
    assert r["outcomes"] == 8  # one outcome per task, none twice
    assert r["blocked"] == {"ok": True, "attempts": 2, "value": 49, "node_changed": True}
    assert r["squares"] == [0, 1, 4, 9, 16, 25]


def test_task_past_its_timeout_is_cancelled_and_the_rest_finish_once(
    report: dict[str, Any],
) -> None:
    r = _scenario(report, "executor_timeout")
    assert r["outcomes"] == 5
    assert r["keys"] == ["slow", "sq0", "sq1", "sq2", "sq3"]
    assert r["slow"] == {"timed_out": True, "error": "timed out after 2 s", "attempts": 1,
                         "params": {"s": 600.0}}  # fmt: skip
    assert r["squares"] == [[0, 1], [1, 1], [4, 1], [9, 1]]


def test_tasks_wider_than_every_node_are_refused_at_once(report: dict[str, Any]) -> None:
    r = _scenario(report, "threads_fit")
    assert r["refused"] == (
        "Expected a node with at least 2 CPUs for tasks of 2 CPUs (--threads), actual at most "
        "1 per node; lower --threads or add larger nodes"
    )
    assert r["describe_cpus_per_task"] == 1


def test_failing_task_is_reported_with_its_parameters(report: dict[str, Any]) -> None:
    r = _scenario(report, "executor_node_loss")
    assert r["bad"]["ok"] is False
    assert r["bad"]["error"] == "ValueError: refuses x = 2.5"
    assert r["bad"]["params"] == {"x": 2.5}
    assert r["bad"]["attempts"] == 1  # the code raised: not retried


def test_sweep_survives_a_node_killed_mid_run(report: dict[str, Any]) -> None:
    r = _scenario(report, "sweep_node_killed")
    assert r["exit"] == 0
    assert r["ok_lines"] == r["unique_ok"] == 8
    assert r["parquet"]


def test_sweep_resumes_after_its_driver_is_killed(report: dict[str, Any]) -> None:
    r = _scenario(report, "driver_killed")
    assert r["exit"] == 0
    assert r["lines_before_resume"] >= 2
    assert r["resumed_with"] == r["lines_before_resume"]  # nothing finished is recomputed
    assert r["ok_lines"] == r["unique_ok"] == 8  # nothing recorded twice or lost


def test_local_and_cluster_sweeps_give_the_same_table(report: dict[str, Any]) -> None:
    local = _scenario(report, "local")
    assert local["exit"] == 0
    assert local["unique_ok"] == 8
    assert _scenario(report, "sweep_node_killed")["table"] == local["table"]
    assert _scenario(report, "driver_killed")["table"] == local["table"]


def test_evaluation_on_the_cluster_equals_the_local_one(report: dict[str, Any]) -> None:
    r = _scenario(report, "eval")
    assert r["exit"] == {"ray": 0, "local": 0}
    assert r["failures"] == {"ray": [], "local": []}
    assert len(r["methods"]["ray"]["policy"]) == 2
    assert r["methods"]["ray"] == r["methods"]["local"]


def test_fit_on_the_cluster_equals_the_local_one(report: dict[str, Any]) -> None:
    r = _scenario(report, "fit")
    assert r["exit"] == {"ray": 3, "local": 3}  # k = 0.001: no solution, best candidates kept
    assert r["simulations"] == {"ray": 6, "local": 6}
    assert r["best"]["ray"]
    assert r["best"]["ray"] == r["best"]["local"]


def test_a_folder_of_cells_runs_in_lanes_on_the_cluster_as_locally(
    report: dict[str, Any],
) -> None:
    r = _scenario(report, "fit_cells")
    assert r["exit"] == {"ray": 3, "local": 3}  # k = 0.001: no cell fits
    assert r["lanes"] == {"ray": 2, "local": 2}
    assert r["used"] == {"ray": [6, 6], "local": [6, 6]}
    assert r["workers"] == {"ray": [1, 1], "local": [1, 1]}  # each lane its share, not the cluster
    assert r["best"]["ray"]["cell_a"]
    assert r["best"]["ray"] == r["best"]["local"]


def test_training_with_actor_environments_writes_the_same_bundle(report: dict[str, Any]) -> None:
    r = _scenario(report, "train")
    assert r["exit"] == 0
    assert r["local_exit"] == 0
    assert r["weights_equal_to_local"]  # same seeds: the same policy as with subprocesses
    assert r["vec"] == "ray"
    assert r["timesteps"] >= 64
    assert r["bundle_format"] == "neuroloop.policy_bundle"
    assert r["bundle_files"] == ["bundle.json", "weights.npz"]
