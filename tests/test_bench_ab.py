"""The alternated A/B benchmark (bench/ab_simulator.py) against a git revision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "ab_simulator.py")


def _in_git_checkout() -> bool:
    out = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )  # fmt: skip
    return out.returncode == 0


def _worktrees() -> set[str]:
    """The paths of the checkout's worktrees (not their commits, which other work may move)."""
    out = subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    ).stdout
    return {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")}


@pytest.mark.skipif(not _in_git_checkout(), reason="needs a git checkout to compare against")
def test_ab_runs_both_trees_alternately_and_removes_the_worktree() -> None:
    before = _worktrees()
    out = subprocess.run(
        [sys.executable, SCRIPT, "--against", "HEAD", "--rounds", "2", "--case", "n2000",
         "--quick"],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    case = report["n2000"]
    assert case["protocol"] == "ftsts-desync"
    assert case["model_s"] == 1.0
    assert len(case["wall_s"]["this"]) == len(case["wall_s"]["other"]) == 2
    assert all(w > 0 for w in case["wall_s"]["this"] + case["wall_s"]["other"])
    ratio = case["median_wall_s"]["other"] / case["median_wall_s"]["this"]
    assert case["ratio_other_over_this"] == pytest.approx(ratio)
    assert len(report["against"]) == 40
    assert report["this"]["commit"] == report["against"]
    assert "n10000" not in report
    # each tree ran its own code: the other one from the temporary worktree
    imported = case["simulator_imported_from"]
    assert imported["this"] == str(ROOT / "simulator" / "__init__.py")
    assert imported["other"].endswith("/tree/simulator/__init__.py")
    assert not imported["other"].startswith(str(ROOT))
    assert _worktrees() == before  # the temporary worktree is gone


def test_ab_names_a_bad_revision_and_bad_rounds() -> None:
    bad = subprocess.run(
        [sys.executable, SCRIPT, "--against", "no-such-revision-xyz", "--case", "n2000"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "expected a git revision for --against, actual 'no-such-revision-xyz'" in bad.stderr
    rounds = subprocess.run(
        [sys.executable, SCRIPT, "--against", "HEAD", "--rounds", "0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert rounds.returncode == 2
    assert "expected --rounds ≥ 1, actual 0" in rounds.stderr
    threads = subprocess.run(
        [sys.executable, SCRIPT, "--against", "HEAD", "--threads", "0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert threads.returncode == 2
    assert "expected --threads ≥ 1, actual 0" in threads.stderr
