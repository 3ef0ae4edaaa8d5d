"""Whole-run speed of this tree against another git revision, alternated; prints JSON.

The machines here are shared VMs whose speed drifts by tens of percent from one minute to the
next, so two benchmark runs taken an hour apart say little about a change. This script checks
the other revision out into a temporary git worktree and runs the same cases of
``bench/bench_simulator.py`` (25 s at N = 2000, 5 s at N = 10 000; wall seconds of simulation,
JIT apart) in both trees, one after the other, swapping the order every round, so that both
see the same drift. Each run is a fresh subprocess; each tree compiles into its own Numba cache
(a warm-up run per tree and case is not counted). The report gives every run, the medians and
the ratio of the medians (other revision / this tree: above 1 means this tree is faster).

With ``--threads N`` both trees run the network on N threads (revisions from the threaded
kernel on).

    python bench/ab_simulator.py --against 96f3d97 [--rounds 3] [--case n2000 --case n10000]
        [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench_simulator import CASE
from fresh_process import run_case

ROOT = Path(__file__).resolve().parents[1]
#: case name -> (protocol, model seconds; quick model seconds)
CASES = {"n2000": ("ftsts-desync", 25.0, 1.0), "n10000": ("ftsts-desync-10k", 5.0, 0.2)}


def _run(tree: Path, protocol: str, duration_s: float, threads: int = 1) -> dict[str, Any]:
    """One run of ``protocol`` for ``duration_s`` in ``tree``, in a fresh subprocess.

    One network thread unless ``threads`` says more (the tree must have ``--threads``).
    """
    argv = [protocol, "1.0", str(duration_s)] + ([str(threads)] if threads > 1 else [])
    return run_case(CASE, argv, f"run in {tree}", tree, 1800.0)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def _revision(rev: str) -> str:
    out = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if out.returncode != 0:
        raise SystemExit(f"expected a git revision for --against, actual {rev!r}")
    return out.stdout.strip()


def _this_tree() -> dict[str, Any]:
    """This tree's commit and whether it has uncommitted changes (what "this" measured)."""
    head = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.stdout.strip(), "uncommitted_changes": bool(status.stdout.strip())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (≥ 1)")
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), help="case to run (default: both)"
    )
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="threads of the one network in both trees (default 1; above 1 both revisions "
        "need the threaded kernel)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"expected --rounds ≥ 1, actual {args.rounds}")
    if args.threads < 1:
        parser.error(f"expected --threads ≥ 1, actual {args.threads}")
    commit = _revision(args.against)
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "tree"
        added = _git("worktree", "add", "--detach", str(other), commit)
        if added.returncode != 0:
            raise SystemExit(f"git worktree add {commit} failed: {added.stderr.strip()}")
        try:
            report = _compare(
                other, args.case or sorted(CASES), args.rounds, args.quick, args.threads
            )
        finally:
            _git("worktree", "remove", "--force", str(other))
            _git("worktree", "prune")
    print(json.dumps({"against": commit, "this": _this_tree(), **report}, indent=2))


def _compare(
    other: Path, cases: list[str], rounds: int, quick: bool, threads: int = 1
) -> dict[str, Any]:
    trees = {"this": ROOT, "other": other}
    report: dict[str, Any] = {"rounds": rounds, "cpu": os.cpu_count(), "threads": threads}
    for case in cases:
        protocol, duration_s, quick_s = CASES[case]
        duration_s = quick_s if quick else duration_s
        for tree in trees.values():  # warm-up: compile into each tree's cache
            _run(tree, protocol, min(duration_s, 0.2), threads)
        walls: dict[str, list[float]] = {name: [] for name in trees}
        cpus: dict[str, list[float]] = {name: [] for name in trees}
        loads: list[float] = []
        modules: dict[str, str] = {}
        for k in range(rounds):
            order = ["other", "this"] if k % 2 == 0 else ["this", "other"]
            for name in order:
                run = _run(trees[name], protocol, duration_s, threads)
                walls[name].append(run["wall_s"])
                # CPU seconds of the process less its compile: what a loaded machine's
                # preemptions do not inflate (one thread: ≈ the wall time of a quiet machine)
                cpus[name].append(run["process_cpu_s"] - run["jit_s"])
                loads.append(run.get("load_avg_1min", float("nan")))
                modules[name] = run.get("module", "")
        medians = {name: statistics.median(w) for name, w in walls.items()}
        cpu_medians = {name: statistics.median(c) for name, c in cpus.items()}
        report[case] = {
            "protocol": protocol,
            "model_s": duration_s,
            "wall_s": walls,
            "median_wall_s": medians,
            "model_s_per_wall_s": {name: duration_s / m for name, m in medians.items()},
            "ratio_other_over_this": medians["other"] / medians["this"],
            "cpu_s": cpus,
            "median_cpu_s": cpu_medians,
            "ratio_cpu_other_over_this": cpu_medians["other"] / cpu_medians["this"],
            "load_avg_1min": loads,
            "simulator_imported_from": modules,
        }
    return report


if __name__ == "__main__":
    main()
