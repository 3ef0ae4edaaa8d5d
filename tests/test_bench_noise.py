"""The noise benchmark (bench/bench_noise.py): runs, reports both sides, refuses bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "bench_noise.py")


def test_noise_bench_reports_ours_and_numpys_per_word_and_per_normal() -> None:
    out = subprocess.run(
        [sys.executable, SCRIPT, "--rows", "40", "--trials", "2"],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["rows"] == 40
    assert report["draws_per_row"] == 2000
    for group in ("ns_per_word", "ns_per_normal"):
        assert len(report[group]) == 2
        assert all(0.0 < v < 1000.0 for v in report[group].values())
    assert report["speedup_words_vs_numpy"] > 0.0
    assert report["speedup_normals_vs_numpy"] > 0.0


def test_noise_bench_names_a_bad_argument() -> None:
    bad = subprocess.run(
        [sys.executable, SCRIPT, "--rows", "0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--rows expected an integer >= 1, actual 0" in bad.stderr
