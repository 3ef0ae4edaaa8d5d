"""Running a bench case in a fresh Python process, and the statistics the benches report."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from json_out import ROOT


def run_case(
    case: str, argv: list[str], what: str, tree: Path = ROOT, timeout_s: float = 3600.0
) -> dict[str, Any]:
    """Run the script ``case`` with ``argv`` in a fresh process; return its last JSON line.

    One BLAS thread, ``tree`` (this repository, or another checkout to compare with) on the
    path and as the working directory. Exits naming ``what`` (and the process's last error
    lines) if the case fails.
    """
    env = dict(os.environ, PYTHONPATH=str(tree), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", case, *argv],
        capture_output=True, text=True, timeout=timeout_s, cwd=tree, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def median_range(values: list[float]) -> dict[str, float]:
    """Median, minimum and maximum of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
