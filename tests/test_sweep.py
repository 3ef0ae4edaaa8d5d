"""neuroloop-sweep on the local pool: study files, sampling, the table, resuming."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.sweep.cli import EXAMPLE
from controller.sweep.cli import main as sweep_main
from controller.sweep.study import load_study, parse_study
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
[study]
name = "tiny"
protocol = "ftsts-desync"
n_scale = 0.05
duration_s = 2.0
seeds = 2

[parameters]
amplitude_mv = [100.0, 200.0]
frequency_hz = [83.33, 130.0]

[fixed]
onset_ms = 500.0
latch_mv = 150.0
"""


def _write(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def _points(out: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines() if x]


def test_example_study_parses_to_a_5x5_grid_with_2_seeds() -> None:
    study = load_study(EXAMPLE)
    assert study.target == "ftsts-desync"
    assert len(study.parameter_sets()) == 25
    assert study.seeds_list() == [0, 1]


def test_sweep_writes_table_figures_and_resumes_without_recomputing(tmp_path: Path) -> None:
    study, out = _write(tmp_path), tmp_path / "out"
    assert sweep_main([str(study), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    first = _points(out)
    assert len(first) == 8
    assert {p["status"] for p in first} == {"ok"}
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {"amplitude_mv", "frequency_hz", "seed", "r_pre", "r_stim", "r_tail", "latch_time_s",
            "charge_delivered", "rate_e_hz", "rate_i_hz", "weight_mv"} <= set(rows[0])  # fmt: skip
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.read_table(out / "results.parquet").num_rows == 8
    assert (out / "heatmap_latch_time_s.png").stat().st_size > 0
    # A crash: the last two records lost, a partial line left behind.
    lines = (out / "points.jsonl").read_text().splitlines(keepends=True)
    (out / "points.jsonl").write_text("".join(lines[:6]) + lines[6][:25])
    assert sweep_main([str(study), "--out", str(out), "--no-progress", "--no-plot"]) == 0
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["resumed_with"] == 6
    assert manifest["computed_now"] == 2
    second = _points(out)
    assert len(second) == 8  # the partial line dropped, nothing twice
    assert [p["summary"] for p in second[:6]] == [p["summary"] for p in first[:6]]
    by_key = {p["key"]: p["summary"] for p in first}
    for p in second[6:]:  # recomputed points give the same numbers
        a, b = dict(p["summary"]), dict(by_key[p["key"]])
        for k in ("wall_s", "jit_s", "model_s_per_wall_s", "point_wall_s"):
            a.pop(k), b.pop(k)
        assert a == b


def test_resume_into_a_different_study_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.toml").write_text("something else")
    assert sweep_main([str(_write(tmp_path)), "--out", str(out)]) == 2
    assert "different study" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("amplitude_mv = [100.0, 200.0]", "amplitud_mv = [100.0]"), "Did you mean amplitude_mv"),
        (("seeds = 2", "seeds = 0"), "seeds expected an integer in"),
        (("protocol = \"ftsts-desync\"", "protocol = \"nope\""), "Expected a protocol name"),
        (("frequency_hz = [83.33, 130.0]", "frequency_hz = [83.33, 600.0]"), "is not a valid run"),
        (("[fixed]", "[fixed]\npulse_width_us = 9000.0"), "is not a valid run"),
        (("[study]", "[study]\nfoo = 1"), "expected keys from"),
    ],
)
def test_bad_study_files_name_what_was_expected(tmp_path: Path, change: tuple[str, str],
                                                message: str) -> None:  # fmt: skip
    path = _write(tmp_path, TINY.replace(*change))
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_latin_hypercube_puts_one_point_in_each_stratum() -> None:
    study = parse_study({
        "study": {"protocol": "ftsts-desync", "n_scale": 0.05},
        "sample": {"method": "lhs", "points": 10, "seed": 4},
        "parameters": {"amplitude_mv": {"low": 50.0, "high": 150.0},
                       "j_i_mv": {"low": 100.0, "high": 400.0, "log": True}},
    })  # fmt: skip
    sets = study.parameter_sets()
    assert sets == study.parameter_sets()  # seeded: the same draws every time
    amp = np.array([s["amplitude_mv"] for s in sets])
    assert sorted(np.floor((amp - 50.0) / 10.0).astype(int)) == list(range(10))
    ji = np.log([s["j_i_mv"] for s in sets])
    strata = np.floor((ji - np.log(100.0)) / (np.log(400.0) - np.log(100.0)) * 10).astype(int)
    assert sorted(strata) == list(range(10))


def test_commands_do_not_import_ray() -> None:
    code = ("import sys, controller.sweep.cli, controller.eval_cli, controller.train_cli, "
            "fitting.cli; sys.exit('ray' in sys.modules)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0


def test_policy_study_records_the_episode_metrics(tmp_path: Path) -> None:
    study = _write(tmp_path, """\
[study]
policy = "ftsts"
n_scale = 0.05
seeds = 1
onset_ms = 400.0
controlled_s = 1.0
tail_s = 0.5

[parameters]
j_i_mv = [200.0, 260.0]
""")  # fmt: skip
    out = tmp_path / "out"
    assert sweep_main([str(study), "--out", str(out), "--no-progress"]) == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["j_i_mv"]) for r in rows] == [200.0, 260.0]
    assert {"r_tail", "charge", "time_to_desync_s", "weight_end_mv", "mean_amplitude_mv"} <= set(
        rows[0]
    )
    assert all(float(r["charge"]) > 0 for r in rows)
    assert (out / "heatmap_r_tail.png").exists()


def test_failed_points_are_reported_with_parameters_and_retried_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_bundle = tmp_path / "empty"
    not_a_bundle.mkdir()
    study = _write(tmp_path, f"""\
[study]
policy = "{not_a_bundle}"
n_scale = 0.05
[parameters]
j_i_mv = [200.0, 260.0]
""")  # fmt: skip
    out = tmp_path / "out"
    assert sweep_main([str(study), "--out", str(out), "--no-progress"]) == 1
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["failed"] == 2
    assert manifest["done"] == 0
    assert sorted(f["params"]["j_i_mv"] for f in manifest["failures"]) == [200.0, 260.0]
    assert all(f["error"] and f["attempts"] == 1 for f in manifest["failures"])
    assert "failed: {'j_i_mv': 200.0}" in capsys.readouterr().err
    assert sweep_main([str(study), "--out", str(out), "--no-progress"]) == 1
    assert json.loads((out / "sweep.json").read_text())["resumed_with"] == 0  # tried again


def test_integer_network_constants_stay_integers() -> None:
    study = parse_study({
        "study": {"protocol": "ftsts-desync"},
        "sample": {"method": "random", "points": 3},
        "parameters": {"n_e": {"low": 100.0, "high": 200.0}},
    })  # fmt: skip
    assert all(isinstance(p["n_e"], int) for p in study.parameter_sets())
