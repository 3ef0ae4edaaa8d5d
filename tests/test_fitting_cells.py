"""Fitting a folder of cells with one policy, BluePyOpt as a method, and the solution count."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import structlog
import yaml

from core.errors import ConfigError
from fitting.cells import load_cells
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
    assert summary["training"]["simulations"] == 6 + 1 + 8  # trained once for both cells
    assert [row["cell"] for row in summary["cells"]] == ["cell_a", "cell_b"]
    for row in summary["cells"]:
        document = json.loads((out / row["cell"] / "solutions.json").read_text())
        assert document["run"]["training_simulations"] == 0  # the shared policy was reused
        assert row["first_fit_at"] == 1
        assert row["budget_used"] == 4  # the whole budget: no --stop-after
    rows = list(csv.DictReader((out / "cells.csv").open()))
    assert [r["cell"] for r in rows] == ["cell_a", "cell_b"]
    assert "2 of 2 cells fitted" in capsys.readouterr().err


def test_cells_with_other_features_are_refused_naming_the_file(tmp_path: Path) -> None:
    folder = lab_folder(tmp_path)
    data = yaml.safe_load(EXAMPLE.read_text())
    data["targets"] = data["targets"][:3]
    (folder / "cell_c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"cell_c.yaml: expected the same stimuli and features"):
        load_cells(folder)
    assert run("--measurements-dir", str(folder), "--out", str(tmp_path / "o")) == EXIT_BAD_INPUT
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"Expected measurement files .* actual none"):
        load_cells(empty)


def test_solutions_found_counts_every_solution_not_the_listed_ones(tmp_path: Path) -> None:
    out = tmp_path / "random"
    args = ["--measurements", str(EXAMPLE), "--out", str(out), "--method", "random"]
    assert run(*args, "--budget", "8", "--k", "1000", "--max-solutions", "3") == EXIT_OK
    record = json.loads((out / "solutions.json").read_text())
    assert record["run"]["solutions_found"] == 8
    assert record["run"]["solutions_listed"] == 3
    assert len(record["solutions"]) == 3
    assert record["run"]["first_fit_at_simulation"] == 1
    assert record["run"]["budget_used"] == 8


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
