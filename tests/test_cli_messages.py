"""What the command-line tools print: help texts, errors, log lines and progress (issue 19.6-7).

Every command runs in a subprocess, as a user would run it, with its output captured.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from structlog.testing import capture_logs

from drivers.device_caps import FirmwareConfig
from drivers.envelope import DeviceEnvelope
from drivers.firmware import DeviceFirmware
from drivers.framing import Frame
from drivers.messages import Arm, Hello, Stop, StopReason

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "fitting" / "examples" / "paper_minus5na.yaml"
FAST = DeviceEnvelope(
    ramp_up_ua_per_s=2000, ramp_down_ua_per_s=4000, soft_start_ms=500, lease_max_ms=500,
    watchdog_ms=300, safe_stop_ms=200,
)  # fmt: skip


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
    )  # fmt: skip


def test_driver_help_has_examples_for_every_command() -> None:
    top = _cli("-m", "drivers.cli", "--help").stdout
    assert "examples:" in top
    assert "neuroloop-driver probe --port" in top
    assert "neuroloop-driver serve --port" in top
    assert "examples:" in _cli("-m", "drivers.cli", "probe", "--help").stdout


def test_controller_help_says_replay_takes_pace_fast() -> None:
    out = _cli("-m", "controller.cli", "--help").stdout
    pace = " ".join(out.split("--pace {realtime,fast}")[-1].split("--connect")[0].split())
    assert "simulator only" not in pace
    assert "simulator and replay" in pace


def test_sim_run_help_shows_no_none_defaults() -> None:
    out = _cli("-m", "simulator.cli", "run", "--help").stdout
    assert "(default: None)" not in out
    assert "(default: False)" not in out
    assert "(default: 0)" in out  # --seed: real defaults are still shown
    assert out.count("default: the experiment's own") == 1


def test_sim_run_bad_n_scale_is_one_error_line_without_a_progress_bar(tmp_path: Path) -> None:
    out_dir = tmp_path / "never"
    res = _cli("-m", "simulator.cli", "run", "--protocol", "ftsts-desync", "--n-scale", "-1",
               "--out", str(out_dir))  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip() == "neuroloop-sim: error: Expected --n-scale > 0, actual -1.0"
    assert not out_dir.exists()


def test_device_stop_logs_the_reason_by_name() -> None:
    fw = DeviceFirmware(FirmwareConfig(), seed=1, now_s=0.0)
    fw.handle(Frame(Hello.TYPE, 1, payload=Hello().pack()), 0.0)
    fw.handle(Frame(Arm.TYPE, 2, payload=Arm(FAST, FAST.hash()).pack()), 0.0)
    with capture_logs() as logs:
        for seq, reason in ((3, StopReason.HOST_DEADLINE), (4, 200)):
            fw.handle(Frame(Stop.TYPE, seq, payload=Stop(int(reason)).pack()), 0.01)
    stops = [e["reason"] for e in logs if e["event"] == "device_stop"]
    assert stops == ["host_deadline", "unknown (200)"]


def test_importing_the_fitting_package_silences_neurons_display_warning() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "NEURON_MODULE_OPTIONS")}
    code = "import fitting, neuron; from neuron import h; h('1')"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=dict(env, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "DISPLAY" not in res.stderr + res.stdout


def test_fit_reports_one_best_max_z_in_bar_log_and_closing_line(tmp_path: Path) -> None:
    out = tmp_path / "fit"
    res = _cli(
        "-m", "fitting.cli", "--model", "reference", "--measurements", str(EXAMPLE),
        "--out", str(out), "--method", "random", "--budget", "12", "--workers", "2",
        "--k", "0.001", "--no-plot", "--log-format", "json",
        env={"DISPLAY": ""},
    )  # fmt: skip
    assert res.returncode == 3, res.stderr[-2000:]
    evaluations = [json.loads(line) for line in (out / "archive.jsonl").read_text().splitlines()]
    lowest = min(e["evaluation"]["max_abs_z"] for e in evaluations if "evaluation" in e)
    expected = f"{lowest:.3g}"
    bar = re.findall(r"best max\|z\| = ([0-9.e+-]+)\]", res.stderr)
    assert bar
    assert bar[-1] == expected
    closing = re.findall(r"\(best max\|z\| = ([0-9.e+-]+)\)", res.stderr)
    assert closing == [expected]
    done = [json.loads(line) for line in res.stderr.splitlines() if '"fit_done"' in line]
    assert [d["best_max_abs_z"] for d in done] == [float(expected)]
    document = json.loads((out / "solutions.json").read_text())
    assert document["run"]["best_max_abs_z"] == lowest
    assert document["best_candidates"][0]["max_abs_z"] == lowest
