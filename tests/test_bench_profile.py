"""The kernel profiler (bench/profile_kernel.py) still finds every section of the kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_profiler_reports_every_kernel_section() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile_kernel.py"), "--n-scale", "0.1",
         "--warm-windows", "3", "--windows", "1", "--trials", "1"],
        capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    ticks = report["ticks_per_neuron_step"]
    assert set(ticks) == {
        "noise", "neuron_pass", "statistics", "collect_and_prefetch", "e_spike_loop",
        "i_spike_loop", "traces_bookkeeping", "kuramoto_sample",
    }  # fmt: skip
    assert ticks["noise"] > 0
    assert ticks["neuron_pass"] > 0
    assert abs(sum(report["share"].values()) - 1.0) < 0.01
    assert report["n"] == 200
    assert report["spikes_per_step"] > 0
