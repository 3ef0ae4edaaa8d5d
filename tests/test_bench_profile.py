"""The kernel profiler (bench/profile_kernel.py) still finds every section of the kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
        "i_spike_loop", "traces_bookkeeping", "kuramoto_sample", "potentiation_flush",
    }  # fmt: skip
    assert ticks["noise"] > 0
    assert ticks["neuron_pass"] > 0
    assert abs(sum(report["share"].values()) - 1.0) < 0.01
    assert report["n"] == 200
    assert report["spikes_per_step"] > 0


def test_profiler_stimulated_state_and_bad_arguments() -> None:
    """``--stimulated`` applies the protocol's train from its onset; a control has none."""
    base = [sys.executable, str(ROOT / "bench" / "profile_kernel.py"), "--n-scale", "0.1",
            "--warm-windows", "100", "--windows", "1", "--trials", "1"]  # fmt: skip
    out = subprocess.run(
        [*base, "--stimulated"], capture_output=True, text=True, timeout=300, check=True, cwd=ROOT
    )
    report = json.loads(out.stdout)
    assert report["stimulated"] is True
    assert report["state_at_ms"] == 2000.0  # past the 1980 ms onset: the train is on
    plain = subprocess.run(base, capture_output=True, text=True, timeout=300, check=True, cwd=ROOT)
    assert json.loads(plain.stdout)["spikes_per_step"] != report["spikes_per_step"]
    refused = subprocess.run(
        [*base, "--protocol", "none", "--stimulated"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "expected a protocol with a stimulus for --stimulated, actual none" in refused.stderr


def test_profiler_array_pass_gives_the_same_run() -> None:
    """``--array-pass`` only changes where the pass reads its constants: same spikes;
    ``--compare-array-pass`` times both passes from one state and reports both."""
    base = [sys.executable, str(ROOT / "bench" / "profile_kernel.py"), "--n-scale", "0.1",
            "--warm-windows", "3", "--windows", "1", "--trials", "2"]  # fmt: skip

    def run(*extra: str) -> dict[str, Any]:
        out = subprocess.run(
            [*base, *extra], capture_output=True, text=True, timeout=300, check=True, cwd=ROOT
        )
        report: dict[str, Any] = json.loads(out.stdout)
        return report

    plain, array = run(), run("--array-pass")
    assert (plain["array_pass"], array["array_pass"]) == (False, True)
    assert plain["spikes_per_step"] == array["spikes_per_step"] > 0
    both = run("--compare-array-pass")
    assert both["scalar_pass"]["spikes_per_step"] == both["array_pass"]["spikes_per_step"]
    assert both["scalar_pass"]["spikes_per_step"] == plain["spikes_per_step"]
    for variant in ("scalar_pass", "array_pass"):
        assert both[variant]["ticks_per_neuron_step"]["neuron_pass"] > 0
    clash = subprocess.run(
        [*base, "--array-pass", "--compare-array-pass"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert clash.returncode == 2
    assert "not allowed with argument" in clash.stderr


def test_profiler_whole_run_reports_the_time_outside_the_kernel() -> None:
    base = [sys.executable, str(ROOT / "bench" / "profile_kernel.py"), "--n-scale", "0.1"]
    out = subprocess.run(
        [*base, "--whole-run", "0.4"], capture_output=True, text=True, timeout=300, check=True,
        cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["n"] == 200
    assert report["whole_run_model_s"] == 0.4
    assert 0.0 < report["kernel_s"] < report["wall_s"]
    assert 0.0 < report["outside_kernel_share"] < 1.0
    assert report["total_ticks_per_neuron_step"] > 0
    assert report["ticks_per_neuron_step"]["noise"] > 0
    bad = subprocess.run(
        [*base, "--whole-run", "0"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert bad.returncode == 2
    assert "expected --whole-run > 0, actual 0.0" in bad.stderr


def test_profiler_against_a_revision() -> None:
    """``--against REV`` times this tree's kernel and REV's from one state: the same spikes
    (HEAD's kernel is this one or an earlier one with the same dynamics), both reported."""
    base = [sys.executable, str(ROOT / "bench" / "profile_kernel.py"), "--n-scale", "0.1",
            "--warm-windows", "3", "--windows", "1", "--trials", "1"]  # fmt: skip
    out = subprocess.run(
        [*base, "--against", "HEAD"], capture_output=True, text=True, timeout=300, check=True,
        cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["this"]["spikes_per_step"] == report["HEAD"]["spikes_per_step"] > 0
    assert report["HEAD"]["ticks_per_neuron_step"]["e_spike_loop"] > 0
    ratio = report["total_ratio_this_over_HEAD"]
    assert ratio == round(
        report["this"]["total_ticks_per_neuron_step"]
        / report["HEAD"]["total_ticks_per_neuron_step"],
        4,
    )
    bad = subprocess.run(
        [*base, "--against", "no-such-revision"], capture_output=True, text=True, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "expected a git revision with simulator/kernel.py, actual no-such-revision" in bad.stderr
