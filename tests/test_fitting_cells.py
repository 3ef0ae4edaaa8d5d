"""Fitting a folder of cells with one policy, BluePyOpt as a method, and the solution count."""

from __future__ import annotations

import csv
import json
import shutil
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from core.errors import ConfigError, FittingError
from fitting.cells import load_cells, run_cells
from fitting.cli import EXIT_BAD_INPUT, EXIT_NO_SOLUTION, EXIT_OK, main

EXAMPLE = Path(__file__).parents[1] / "fitting" / "examples" / "paper_minus5na.yaml"


@pytest.fixture(autouse=True)
def _reset_logging() -> None:
    yield
    structlog.reset_defaults()


def lab_folder(tmp: Path) -> Path:
    """Two cells: the example and a copy whose input resistance is 10 % higher."""
    folder = tmp / "cells"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "cell_a.yaml")
    data = yaml.safe_load(EXAMPLE.read_text())
    data["targets"][0]["mean"] *= 1.1
    (folder / "cell_b.yaml").write_text(yaml.safe_dump(data))
    return folder


def run(*args: str) -> int:
    return main(["--model", "reference", "--no-progress", "--no-plot", "--log-level", "warning",
                 *args])  # fmt: skip


def test_a_folder_of_cells_is_fitted_with_one_trained_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lab"
    args = ["--measurements-dir", str(lab_folder(tmp_path)), "--out", str(out), "--method", "rl"]
    args += ["--bank-size", "6", "--train-steps", "8", "--budget", "4", "--workers", "2"]
    args += ["--k", "1000"]  # every simulation fits: this checks the plumbing, not the search
    assert run(*args) == EXIT_OK
    summary = json.loads((out / "cells.json").read_text())
    # trained once for both cells: the bank, the first simulation, the SAC steps, and the
    # training run's one fitting simulation
    assert summary["training"]["simulations"] == 6 + 1 + 8 + 1
    assert summary["lanes"] == 2
    assert summary["workers_per_lane"] == 1
    assert summary["rl_cost_per_cell"]["with_training_spread"] == (4 + 4 + 16) / 2
    assert [row["cell"] for row in summary["cells"]] == ["cell_a", "cell_b"]
    for row in summary["cells"]:
        document = json.loads((out / row["cell"] / "solutions.json").read_text())
        assert document["run"]["training_simulations"] == 0  # the shared policy was reused
        assert row["first_fit_at"] == 1
        assert row["budget_used"] == 4  # the whole budget: no --stop-after
    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert [r["cell"] for r in rows] == ["cell_a", "cell_b"]
    err = capsys.readouterr().err
    assert "2 of 2 cells fitted" in err
    assert "RL per cell 4.0 simulations, 12.0 with the training spread" in err
    # the same policy again, given: its training cost is read from its policy.json
    again = tmp_path / "again"
    args[args.index(str(out))] = str(again)
    assert run(*args, "--policy", str(out / "training-run" / "policy")) == EXIT_OK
    reused = json.loads((again / "cells.json").read_text())["training"]
    assert reused["reused"] is True
    assert reused["simulations"] == 0
    assert reused["simulations_when_trained"] == 6 + 1 + 8


def test_cells_run_in_lanes_each_as_its_own_fit_would(tmp_path: Path) -> None:
    """Two lanes of one worker: each cell as `--measurements CELL --workers 1`, at once."""
    folder = lab_folder(tmp_path)
    common = ["--method", "random", "--budget", "12", "--k", "1.0", "--seed", "3"]
    assert run("--measurements-dir", str(folder), "--out", str(tmp_path / "lab"), *common,
               "--workers", "2") in (EXIT_OK, EXIT_NO_SOLUTION)  # fmt: skip
    summary = json.loads((tmp_path / "lab" / "cells.json").read_text())
    assert summary["lanes"] == 2
    assert summary["workers_per_lane"] == 1
    a, b = summary["cells"]
    # both lanes ran at once: each cell started before the other ended
    assert a["started_unix_s"] < b["ended_unix_s"]
    assert b["started_unix_s"] < a["ended_unix_s"]
    for row in summary["cells"]:
        alone = tmp_path / f"alone_{row['cell']}"
        run("--measurements", str(folder / f"{row['cell']}.yaml"), "--out", str(alone), *common,
            "--workers", "1")  # fmt: skip
        in_folder = json.loads((tmp_path / "lab" / row["cell"] / "solutions.json").read_text())
        single = json.loads((alone / "solutions.json").read_text())
        assert in_folder["best_candidates"] == single["best_candidates"]
        assert in_folder["run"]["solutions_found"] == single["run"]["solutions_found"]
        assert row["first_fit_at"] == single["run"]["first_fit_at_simulation"]
        assert in_folder["run"]["workers"] == single["run"]["workers"] == 1  # the lane's share
    with pytest.raises(SystemExit):  # more lanes than worker processes: refused
        run("--measurements-dir", str(folder), "--out", str(tmp_path / "x"), *common,
            "--workers", "2", "--lanes", "3")  # fmt: skip


def test_bad_files_are_reported_and_the_other_cells_fitted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = lab_folder(tmp_path)
    data = yaml.safe_load(EXAMPLE.read_text())
    other = dict(data, targets=data["targets"][:3])
    (folder / "cell_c.yaml").write_text(yaml.safe_dump(other))  # other features
    zero = yaml.safe_load(EXAMPLE.read_text())
    zero["targets"][1]["std"] = 0.0
    (folder / "cell_d.yaml").write_text(yaml.safe_dump(zero))  # invalid value
    (folder / "cell_e.yaml").write_text("targets: [unclosed\n")  # not YAML
    shuffled = dict(data, targets=list(reversed(data["targets"])))
    (folder / "cell_f.yaml").write_text(yaml.safe_dump(shuffled))  # same features, other order
    bounds = dict(data, parameters=[{"name": "soma.gnabar_hh", "low": 0.03, "high": 0.6}])
    (folder / "cell_g.yaml").write_text(yaml.safe_dump(bounds))  # other parameter box
    traced = dict(data, traces=[{"stimulus": data["stimuli"][0]["name"], "file": "h_trace.csv",
                                 "features": ["input_resistance"]}])  # fmt: skip
    (folder / "cell_h.yaml").write_text(yaml.safe_dump(traced))
    (folder / "h_trace.csv").write_text("t_ms,v_mv\n0,-65\n0.1,-65\n")  # a trace, not a cell
    (folder / "cell_i.csv").write_bytes("stimulus,amplitude_na\nst\xb5p,1\n".encode("latin-1"))

    loaded = load_cells(folder)
    assert [c.name for c in loaded.cells] == ["cell_a", "cell_b", "cell_f"]
    assert [t.key for t in loaded.cells[2].measurements.targets] == [
        t.key for t in loaded.cells[0].measurements.targets
    ]  # put in the folder's order, for the policy
    reasons = {bad.name: bad.error for bad in loaded.invalid}
    assert sorted(reasons) == ["cell_c", "cell_d", "cell_e", "cell_g", "cell_h", "cell_i"]
    assert "cell_c.yaml: expected the same features as cell_a.yaml" in reasons["cell_c"]
    assert "cell_d.yaml" in reasons["cell_d"]
    assert "std" in reasons["cell_d"]
    assert "cell_e.yaml" in reasons["cell_e"]
    assert "cell_g.yaml: expected the same parameter bounds" in reasons["cell_g"]
    assert "h_trace" not in reasons  # the trace beside its cell is not taken for a cell
    assert "cell_i.csv: expected UTF-8 text, actual byte 0xb5" in reasons["cell_i"]

    out = tmp_path / "lab"
    code = run("--measurements-dir", str(folder), "--out", str(out), "--method", "random",
               "--budget", "4", "--k", "1000", "--workers", "2")  # fmt: skip
    assert code == EXIT_BAD_INPUT  # the valid cells are fitted; the exit code says not all were
    rows = {r["cell"]: r for r in csv.DictReader((out / "cells.csv").open())}
    assert {r["status"] for n, r in rows.items() if n in ("cell_a", "cell_b", "cell_f")} == {
        "fitted"
    }
    assert all(rows[n]["status"] == "invalid" and rows[n]["error"] for n in reasons)
    err = capsys.readouterr().err
    assert "3 of 9 cells fitted" in err
    assert "6 invalid" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"Expected measurement files .* actual none"):
        load_cells(empty)
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.yaml").write_text("targets: [unclosed\n")
    with pytest.raises(ConfigError, match=r"at least one valid .*only_bad/x\.yaml: expected valid"):
        load_cells(only_bad)


def test_a_failed_fit_is_reported_and_the_others_fitted(tmp_path: Path) -> None:
    """A cell whose fit raises gets a failed row with the error; the exit code says so."""
    from fitting.cells import fit_cells
    from fitting.cli import _report_folder
    from fitting.model import parse_model
    from fitting.run import FitConfig, fit

    folder = load_cells(lab_folder(tmp_path))

    def fit_one(job: FitConfig, pool: Any) -> Any:
        if job.out_dir.name == "cell_a":
            raise RuntimeError("the model's mechanism crashed")
        return fit(job, pool)

    base = FitConfig(model=parse_model("reference", []), measurements=folder.cells[0].measurements,
                     out_dir=tmp_path / "lab", method="random", budget=4, workers=2, k=1000.0,
                     progress=False, plot=False)  # fmt: skip
    document = fit_cells(base, folder, fit_one=fit_one)
    rows = {r["cell"]: r for r in document["cells"]}
    assert rows["cell_a"]["status"] == "failed"
    assert rows["cell_a"]["error"] == "RuntimeError: the model's mechanism crashed"
    assert rows["cell_b"]["status"] == "fitted"
    assert json.loads((tmp_path / "lab" / "cells.json").read_text()) == document
    assert _report_folder(document, tmp_path / "lab") == EXIT_BAD_INPUT


def test_an_interrupt_stops_the_lanes_and_keeps_what_finished(tmp_path: Path) -> None:
    """Ctrl-C: no new cell starts, the summary says which cells did not run, and the
    interrupt is not held up by a cell still running in another lane."""
    from fitting.cells import fit_cells
    from fitting.model import parse_model
    from fitting.run import FitConfig

    folder = lab_folder(tmp_path)
    for name in ("cell_c", "cell_d"):
        shutil.copy(folder / "cell_a.yaml", folder / f"{name}.yaml")
    cells = load_cells(folder)
    release = threading.Event()

    def fit_one(job: FitConfig, pool: Any) -> Any:
        if job.out_dir.name == "cell_a":
            release.wait(30.0)  # a long fit in the other lane
            raise FittingError("released")
        raise KeyboardInterrupt

    base = FitConfig(model=parse_model("reference", []), measurements=cells.cells[0].measurements,
                     out_dir=tmp_path / "lab", method="random", budget=4, workers=2,
                     progress=False, plot=False)  # fmt: skip
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            fit_cells(base, cells, fit_one=fit_one)
        assert time.monotonic() - started < 25.0  # did not wait for cell_a's lane
    finally:
        release.set()
    rows = {r["cell"]: r["status"] for r in json.loads((tmp_path / "lab" / "cells.json")
                                                        .read_text())["cells"]}  # fmt: skip
    assert rows == dict.fromkeys(["cell_a", "cell_b", "cell_c", "cell_d"], "not run")


def test_a_lost_executor_stops_the_folder_naming_the_cause(tmp_path: Path) -> None:
    """A cluster that is gone fails every cell alike: the run stops instead of waiting for it
    once per cell, and the summary says why the rest did not run."""
    from core.executor.base import ExecutorError
    from fitting.cells import fit_cells
    from fitting.model import parse_model
    from fitting.run import FitConfig

    cells = load_cells(lab_folder(tmp_path))

    def fit_one(job: FitConfig, pool: Any) -> Any:
        raise ExecutorError("Expected CPUs in the Ray cluster, actual none for 120 s")

    base = FitConfig(model=parse_model("reference", []), measurements=cells.cells[0].measurements,
                     out_dir=tmp_path / "lab", method="random", budget=4, workers=1,
                     progress=False, plot=False)  # fmt: skip
    with pytest.raises(ExecutorError, match="actual none for 120 s"):
        fit_cells(base, cells, fit_one=fit_one)
    rows = json.loads((tmp_path / "lab" / "cells.json").read_text())["cells"]
    assert [r["status"] for r in rows] == ["not run", "not run"]
    assert all("ExecutorError" in r["error"] for r in rows)


def test_a_cell_that_fails_does_not_stop_the_others(tmp_path: Path) -> None:
    """run_cells reports a failed job with its error and fits the rest, in every lane."""
    done: dict[int, Any] = {}

    def fit_one(job: int, pool: object) -> str:
        if job == 1:
            raise FittingError("the model crashed on cell 1")
        return f"fit {job}"

    def on_done(index: int, result: Any, error: str | None, t0: float, t1: float) -> None:
        assert t0 <= t1
        done[index] = (result, error)

    run_cells([0, 1, 2, 3], lambda workers: nullcontext(), 2, 1, on_done, fit_one)  # type: ignore[arg-type]
    assert done == {0: ("fit 0", None), 1: (None, "the model crashed on cell 1"),
                    2: ("fit 2", None), 3: ("fit 3", None)}  # fmt: skip


def test_solutions_found_counts_every_solution_not_the_listed_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "random"
    args = ["--measurements", str(EXAMPLE), "--out", str(out), "--method", "random"]
    assert run(*args, "--budget", "8", "--k", "1000", "--max-solutions", "3") == EXIT_OK
    record = json.loads((out / "solutions.json").read_text())
    assert record["run"]["solutions_found"] == 8
    assert record["run"]["solutions_listed"] == 3
    assert len(record["solutions"]) == 3
    assert record["run"]["first_fit_at_simulation"] == 1
    assert record["run"]["budget_used"] == 8
    # the closing line counts every solution, and says where the first was and how many are listed
    assert "8 solution(s) in 8 simulations (first at simulation 1; 3 listed)" in (
        capsys.readouterr().err
    )


def test_bluepyopt_runs_on_the_same_budget_and_objective(tmp_path: Path) -> None:
    out = tmp_path / "bpo"
    args = ["--measurements", str(EXAMPLE), "--out", str(out), "--method", "bluepyopt"]
    code = run(*args, "--budget", "30", "--workers", "2", "--k", "0.5")
    assert code in (EXIT_OK, EXIT_NO_SOLUTION)
    record = json.loads((out / "solutions.json").read_text())
    assert record["run"]["method"] == "bluepyopt"
    assert record["run"]["simulations"] == 30  # one initial population and part of the next
    archive = (out / "archive.jsonl").read_text().splitlines()
    assert len(archive) == 1 + 30
