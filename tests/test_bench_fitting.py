"""The fitting benchmark's summary (bench/bench_fitting.py): the success rule, spread and goal."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_fitting.py"


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fitting", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit(method: str, target: int, seed: int, first: int | None, used: int) -> dict[str, Any]:
    return {"kind": "fit", "problem": "l5_active", "recipe": "anywhere", "method": method,
            "target": target, "seed": seed, "first_fit_at": first, "budget_used": used,
            "best_max_abs_z": 1.0, "wall_s": 1.0}  # fmt: skip


RECORDS = [
    fit("rl", 0, 0, 4, 4), fit("rl", 0, 1, 10, 10), fit("rl", 1, 0, None, 200),
    fit("rl", 1, 1, 6, 6),
    fit("cmaes", 0, 0, 50, 50), fit("cmaes", 0, 1, 70, 70), fit("cmaes", 1, 0, 90, 90),
    fit("cmaes", 1, 1, None, 200),
    fit("random", 0, 0, None, 200), fit("random", 0, 1, None, 200), fit("random", 1, 0, 30, 30),
    fit("random", 1, 1, None, 200),
]  # fmt: skip


def test_summary_counts_first_fits_spread_and_the_goal() -> None:
    bench = load_bench()
    cell = bench.summarise(RECORDS, 200)["l5_active/anywhere"]
    rl, cmaes = cell["rl"], cell["cmaes"]
    assert (rl["successes"], rl["runs"], rl["targets"], rl["seeds_per_target"]) == (3, 4, 2, 2)
    assert rl["simulations_to_first_fit"] == {"median": 6.0, "mean": 6.7, "min": 4.0, "max": 10.0}
    assert rl["median_spread_over_seeds"] == 6.0  # only target 0 fitted with both seeds
    assert rl["mean_budget_used"] == 55.0  # an unfitted run costs its whole budget
    # The best peer has the highest success rate (CMA-ES 3/4 beats random's quicker 1/4).
    assert rl["vs_best_peer"] == {"peer": "cmaes", "median_ratio": 0.086, "goal_met": True}
    training = {"l5_active": {"simulations": 400}}
    saving = bench.amortisation({"l5_active/anywhere": cell}, training)["l5_active/anywhere"]
    assert saving["cells_to_break_even"] == 9  # 400 / (102.5 - 55) = 8.4, rounded up
    assert cmaes["first_fit_per_target_and_seed"] == {"0": [50, 70], "1": [90, None]}


def test_summarise_only_prints_the_table_from_runs_jsonl(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in RECORDS]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--summarise-only", "--markdown"],
        capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
    )  # fmt: skip
    rows = out.stdout.splitlines()
    assert rows[0].startswith("| problem / targets | method | fitted |")
    assert "| l5_active/anywhere (2 × 2 seeds) | CMA-ES (IPOP) | 3/4 | 70 |" in out.stdout
    assert "0.09× of cmaes: goal met" in out.stdout


def test_every_rl_variant_is_compared_and_passes_its_start_to_the_fit(tmp_path: Path) -> None:
    bench = load_bench()
    centre = [{**r, "method": "rl_centre"} for r in RECORDS if r["method"] == "rl"]
    cell = bench.summarise(RECORDS + centre, 200)["l5_active/anywhere"]
    assert cell["rl_centre"]["vs_best_peer"] == cell["rl"]["vs_best_peer"]
    assert bench.RL_STARTS == {"rl": "bank", "rl_centre": "centre", "rl_no_centre": "random"}
    args = bench.parse_args(["--rl-parallel", "2", "--rl-patience", "3", "--out", str(tmp_path)])
    assert (args.rl_parallel, args.rl_patience) == (2, 3)
