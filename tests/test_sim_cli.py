"""``neuroloop-sim``: run writes summary.json and a figure; bad input gives a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main

REQUIRED = {
    "r_pre", "r_stim", "r_tail", "latch_time_s", "weight_mv", "weight_mv_at_10s", "rate_e_hz",
    "rate_i_hz", "charge_delivered", "wall_s", "jit_s",
}  # fmt: skip


def test_run_writes_summary_and_figure(tmp_path: Path) -> None:
    out = tmp_path / "fig3"
    code = main(["run", "--experiment", "ftsts-desync", "--n-scale", "0.1", "--duration", "3",
                 "--seed", "2", "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= REQUIRED
    assert summary["n_e"] == 160
    assert summary["duration_s"] == 3.0
    assert summary["charge_delivered"] > 0
    png = (out / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 20_000


def test_protocols_lists_every_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocols"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("ftsts-desync ") for line in lines)
    assert len(lines) >= 10


def test_unknown_protocol_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--protocol", "ftsts", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Expected a protocol name from" in err
    assert "actual 'ftsts'" in err


def test_console_script_help_teaches() -> None:
    out = subprocess.run([sys.executable, "-m", "simulator.cli", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "semantics:" in out
    assert "neuroloop-sim run --experiment ftsts-desync" in out
