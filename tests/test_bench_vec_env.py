"""The vector-environment bench (bench/bench_vec_env.py): it runs, agrees, refuses bad counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "bench_vec_env.py")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def test_vec_env_bench_reports_every_kind_with_one_digest(tmp_path: Path) -> None:
    path = tmp_path / "vec.json"
    out = _run("--rounds", "1", "--steps", "6", "--n-scale", "0.05", "--out", str(path))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert json.loads(path.read_text()) == report
    assert report["n_scale"] == 0.05
    assert set(report["env_steps_per_s"]) == {"single", "dummy", "threads", "subproc"}
    assert report["digests_equal"] is True
    assert [run["n_envs"] for run in report["runs"]["single"]] == [1]
    assert [run["n_envs"] for run in report["runs"]["threads"]] == [2]
    alternation = report["same_process_alternation"]
    assert len(alternation["runs"][0]["ratio_per_pair"]) == 1
    assert alternation["ratio_threads_over_one_at_a_time"]["min"] > 0.0


def test_vec_env_bench_refuses_bad_counts() -> None:
    none = _run("--rounds", "0")
    assert none.returncode == 2
    assert "expected --rounds >= 1, actual 0" in none.stderr
    big = _run("--n-scale", "9")
    assert big.returncode == 2
    assert "expected --period-ms > 0 and --n-scale in [0.005, 4], actual 20.0 and 9.0" in big.stderr
