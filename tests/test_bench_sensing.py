"""The sensing scripts (bench/validate_sensing.py, bench/bench_sensing.py): run, report, refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALIDATE = str(ROOT / "bench" / "validate_sensing.py")
BENCH = str(ROOT / "bench" / "bench_sensing.py")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)  # fmt: skip


def test_validation_reports_correlations_for_three_runs_and_draws_the_figure(
    tmp_path: Path,
) -> None:
    fig = tmp_path / "v.png"
    out = _run(VALIDATE, "--n-scale", "0.1", "--duration-s", "3", "--json",
               str(tmp_path / "v.json"), "--figure", str(fig))  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert json.loads((tmp_path / "v.json").read_text()) == report
    assert set(report["runs"]) == {"ftsts-desync", "ftsts-sync", "none"}
    assert report["n"] == 200
    pooled = report["pooled"]["all"]
    assert pooled["windows"] == 3 * 50  # 3 s after the 2 s lead-in, three runs
    assert set(pooled["log10 lfp_band_uv2"]) == {"R (1 s)", "weight_mv"}
    assert fig.stat().st_size > 10_000


def test_sensing_bench_reports_the_sensor_and_the_kernel_sum() -> None:
    out = _run(BENCH, "--rounds", "1", "--duration-s", "0.4")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["sensor_ms_per_window"]["median"] > 0.0
    assert set(report["kernel_sum_ns_per_step"]) == {"n_e=1600", "n_e=8000"}
    assert len(report["cpu_s"]["sensor"]) == len(report["cpu_s"]["stub"]) == 1


def test_the_scripts_name_a_bad_argument() -> None:
    bad = _run(VALIDATE, "--duration-s", "1")
    assert bad.returncode == 2
    assert "--duration-s expected a number > 2 (the lead-in), actual 1.0" in bad.stderr
    bad = _run(BENCH, "--rounds", "0")
    assert bad.returncode == 2
    assert "--rounds expected an integer >= 1, actual 0" in bad.stderr
