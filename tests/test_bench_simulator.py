"""The simulator benchmark (bench/bench_simulator.py): median of repeated runs, bad arguments."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_simulator.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_simulator", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_case_reports_its_median_run_every_run_and_the_largest_rss() -> None:
    runs = [
        {"wall_s": 3.0, "peak_rss_mb": 300.0, "seed": 1},
        {"wall_s": 2.0, "peak_rss_mb": 320.0, "seed": 2},
        {"wall_s": 2.5, "peak_rss_mb": 310.0, "seed": 3},
    ]
    summary = _module()._median_run(runs)
    assert summary["wall_s"] == 2.5
    assert summary["seed"] == 3
    assert summary["runs_wall_s"] == [3.0, 2.0, 2.5]
    assert summary["repeats"] == 3
    assert summary["peak_rss_mb"] == 320.0


def test_bench_names_a_bad_repeat_count() -> None:
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--repeats", "0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--repeats expected an integer >= 1, actual 0" in bad.stderr
