"""The options the grid searches share with the dose schedule search (same networks, same cost)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_grid_options(p: argparse.ArgumentParser) -> None:
    """Training networks, the search's cost, workers and ``--json``."""
    p.add_argument("--first-seed", type=int, default=100, help="training seeds from (100)")
    p.add_argument("--train-seeds", type=int, default=3, help="training networks (3)")
    p.add_argument("--tail-margin", type=float, default=0.002, help="as the search's (0.002)")
    p.add_argument("--tail-penalty", type=float, default=30.0, help="as the search's (30)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the result to this file")


def training_seeds(p: argparse.ArgumentParser, a: argparse.Namespace) -> list[int]:
    """The training network seeds, or the parser's error naming the range that arrived."""
    seeds = list(range(a.first_seed, a.first_seed + a.train_seeds))
    if not seeds or seeds[0] < 0 or seeds[-1] >= 2**31:
        p.error(f"Expected training seeds in [0, 2**31), actual {seeds[:1]} ... {seeds[-1:]}")
    return seeds
