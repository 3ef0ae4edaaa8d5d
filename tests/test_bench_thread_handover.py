"""The hand-over bench (bench/bench_thread_handover.py): it runs, and refuses bad counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "bench_thread_handover.py")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def test_handover_bench_reports_every_variant(tmp_path: Path) -> None:
    path = tmp_path / "handover.json"
    out = _run("--rounds", "2", "--calls", "5", "--n-scale", "0.1", "--json", str(path))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert json.loads(path.read_text()) == report
    assert report["threads"] == 2
    assert report["n"] == 200
    names = {"dispatch_one_thread", "dispatch_threaded", "pool_round_trip", "run_threaded"}
    assert set(report["us_per_call"]) == names
    for name in names:
        assert len(report["us_per_call_rounds"][name]) == 2
        assert report["us_per_call"][name]["min"] > 0.0


def test_handover_bench_refuses_one_thread_and_no_rounds() -> None:
    one = _run("--threads", "1")
    assert one.returncode == 2
    assert "expected --threads ≥ 2, actual 1" in one.stderr
    none = _run("--rounds", "0")
    assert none.returncode == 2
    assert "expected --rounds ≥ 1, actual 0" in none.stderr
