"""``neuroloop-fit`` end to end with real NEURON workers and small budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from fitting.cli import EXIT_BAD_INPUT, EXIT_NO_SOLUTION, EXIT_OK, build_parser, main

DATA = Path(__file__).parent / "data" / "fitting"
EXAMPLE = Path(__file__).parents[1] / "fitting" / "examples" / "paper_minus5na.yaml"


@pytest.fixture(autouse=True)
def _reset_logging() -> None:
    # main() points structlog at this test's captured stderr; restore the defaults afterwards so
    # later tests do not write to a closed capture stream.
    yield
    structlog.reset_defaults()


def run(tmp: Path, *extra: str) -> int:
    return main(
        [
            "--model",
            "reference",
            "--measurements",
            str(EXAMPLE),
            "--out",
            str(tmp),
            "--no-progress",
            "--log-level",
            "warning",
            *extra,
        ]
    )


# A narrow box (±5 %) around the example's ground truth (its header), so a 20-simulation fit
# must succeed.
NARROW = [
    "--param",
    "soma.gnabar_hh=0.2601:0.2875",
    "--param",
    "soma.gkbar_hh=0.0829:0.0916",
    "--param",
    "soma.gl_hh=0.001095:0.001211",
    "--param",
    "hillock.gnabar_hh=0.6538:0.7226",
    "--param",
    "dend.g_pas=0.0003502:0.000387:lin",
]


def test_cmaes_fit_writes_ranked_solutions_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmaes"
    assert run(out, "--method", "cmaes", "--budget", "20", "--workers", "2", *NARROW) == EXIT_OK
    document = json.loads((out / "solutions.json").read_text())
    solutions = document["solutions"]
    assert solutions
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["parameter", "min", "median", "max", "fold", "box%"]
    assert [line.split()[0] for line in table[1:]] == list(document["spread"])
    assert all(max(abs(z) for z in s["z"].values()) <= 2.0 for s in solutions)
    assert [s["score"] for s in solutions] == sorted(s["score"] for s in solutions)
    assert document["run"]["simulations"] == 20
    assert document["run"]["parameters"][4] == {
        "name": "dend.g_pas",
        "low": 0.0003502,
        "high": 0.000387,
        "log": False,
    }
    assert document["run"]["method"] == "cmaes"
    assert set(document["spread"]) == {p["name"] for p in document["run"]["parameters"]}
    csv_lines = (out / "solutions.csv").read_text().splitlines()
    assert csv_lines[0].startswith("rank,score,max_abs_z,soma.gnabar_hh")
    assert len(csv_lines) == len(solutions) + 1
    assert (out / "best_traces.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert run(out, "--method", "cmaes", "--budget", "20", "--workers", "2", *NARROW) == EXIT_OK
    again = json.loads((out / "solutions.json").read_text())
    assert again["run"]["simulated_this_session"] == 0  # everything came from the checkpoint
    assert again["solutions"] == solutions


def test_no_solution_exits_3_with_best_candidates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "random"
    args = ["--model", "reference", "--measurements", "example", "--out", str(out)]
    args += ["--method", "random", "--budget", "6", "--k", "0.001", "--no-plot", "--no-progress"]
    assert main(args) == EXIT_NO_SOLUTION  # 'example' is the bundled paper measurement set
    document = json.loads((out / "solutions.json").read_text())
    assert document["solutions"] == []
    assert document["best_candidates"]
    assert "no parameter set reproduced every target within k=0.001" in capsys.readouterr().err


def test_rl_trains_then_reuses_its_policy(tmp_path: Path) -> None:
    first = tmp_path / "rl-a"
    code = run(
        first,
        "--method",
        "rl",
        "--train-steps",
        "16",
        "--bank-size",
        "6",
        "--budget",
        "6",
        "--no-plot",
    )
    assert code in (EXIT_OK, EXIT_NO_SOLUTION)
    trained = json.loads((first / "solutions.json").read_text())["run"]
    assert trained["training_simulations"] == 6 + 1 + 16
    assert (first / "policy" / "policy.zip").is_file()
    assert (first / "policy" / "bank.npz").is_file()
    assert json.loads((first / "policy" / "policy.json").read_text())["version"] == 2
    assert trained["rl"] == {"start": "bank", "parallel": None, "patience": None}
    second = tmp_path / "rl-b"
    code = run(
        second,
        *("--method", "rl", "--policy", str(first / "policy"), "--budget", "4", "--no-plot"),
        *("--rl-start", "centre", "--rl-parallel", "2", "--rl-patience", "3"),
    )
    assert code in (EXIT_OK, EXIT_NO_SOLUTION)
    reused = json.loads((second / "solutions.json").read_text())["run"]
    assert reused["training_simulations"] == 0
    assert reused["simulations"] == 4
    assert reused["rl"] == {"start": "centre", "parallel": 2, "patience": 3}
    with pytest.raises(SystemExit, match="2"):
        run(tmp_path / "c", "--method", "cmaes", "--rl-start", "centre")


def test_bad_input_exits_2_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "m.yaml"
    broken.write_text(
        "stimuli:\n  - {name: p, amplitude_na: -5}\n"
        "targets:\n  - {stimulus: p, feature: spike_count, mean: 3, std: 0}\n"
    )
    assert (
        main(["--model", "reference", "--measurements", str(broken), "--out", str(tmp_path / "o")])
        == EXIT_BAD_INPUT
    )
    assert "targets[0].std: expected a number > 0, actual 0.0" in capsys.readouterr().err
    assert (
        run(tmp_path / "o2", "--param", "soma.nothing_hh=0.1:1", "--no-plot", "--budget", "2")
        == EXIT_BAD_INPUT
    )
    assert "unknown ['soma.nothing_hh']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "reference", "--param", "soma.gnabar_hh=0.1"])
    assert "expected NAME=LOW:HIGH[:log|lin]" in capsys.readouterr().err


def test_list_params_of_a_hoc_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEUROLOOP_CACHE_DIR", str(tmp_path))
    assert (
        main(
            [
                "--model",
                f"{DATA / 'leaky_cell.hoc'}:LeakyCell",
                "--list-params",
                "--log-level",
                "warning",
            ]
        )
        == EXIT_OK
    )
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["basal.g_nlleak"]["mechanism"] == "nlleak"
    assert listed["soma.gkbar_hh"]["conductance"] is True


def test_help_teaches() -> None:
    text = build_parser().format_help()
    for needle in (
        "--model reference",
        "cell.hoc:TemplateName",
        "--policy",
        "input_resistance",
        "archive.jsonl",
    ):
        assert needle in text
