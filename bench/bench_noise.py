"""Noise generation speed: our eight-lane SFC64 words and normals against numpy's own, one core.

Prints one JSON object. The network draws one standard normal per neuron per step from eight
SFC64 generators advanced side by side in AVX2 vectors (``simulator/sfc64.py``) and turned into
float32 normals by a vectorised Box–Muller transform (``simulator/noise.py``). The baselines run
in the same process on the same machine: numpy's SFC64 ``random_raw`` filling a whole block in C
(one serial stream) and numpy's ``Generator.standard_normal`` in float32 (its ziggurat, in C).
Each figure is the best of ``--trials`` timings of ``--rows`` rows of N = 2000 draws (a step of
the Fig 3 network), in nanoseconds; the ratios to numpy are what carries across machines.

    python bench/bench_noise.py [--rows 20000] [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from numba import njit

from simulator.noise import (
    fill_standard_normal,
    load_state,
    noise_generators,
    scratch_words,
    sfc64_words,
)

N_DRAWS = 2000  #: draws per row: one step of the Fig 3 network


@njit(cache=True, nogil=True)
def _words_rows(state, words, rows):  # type: ignore[no-untyped-def]
    for _ in range(rows):
        sfc64_words(state, words)


@njit(cache=True, nogil=True)
def _normal_rows(state, words, out, rows):  # type: ignore[no-untyped-def]
    for _ in range(rows):
        fill_standard_normal(state, words, out)


def _best(fn: Any, trials: int) -> float:
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(rows: int, trials: int) -> dict[str, Any]:
    """Nanoseconds per word and per normal, ours and numpy's, and their ratios."""
    state = load_state(noise_generators(1))
    words = np.empty(scratch_words(N_DRAWS), dtype=np.uint64)
    out = np.empty(N_DRAWS, dtype=np.float32)
    _words_rows(state, words, 1)  # compile (or load from the cache) outside the timing
    _normal_rows(state, words, out, 1)
    n_words = rows * words.shape[0]
    n_draws = rows * N_DRAWS
    rng = np.random.Generator(np.random.SFC64(1))
    ours_words = _best(lambda: _words_rows(state, words, rows), trials) / n_words
    numpy_words = _best(lambda: rng.bit_generator.random_raw(n_words), trials) / n_words
    ours_normal = _best(lambda: _normal_rows(state, words, out, rows), trials) / n_draws
    numpy_normal = _best(lambda: rng.standard_normal(n_draws, dtype=np.float32), trials) / n_draws
    ns = 1e9
    return {
        "draws_per_row": N_DRAWS,
        "rows": rows,
        "trials": trials,
        "ns_per_word": {
            "eight_lane_sfc64": ours_words * ns,
            "numpy_sfc64_random_raw": numpy_words * ns,
        },
        "ns_per_normal": {
            "ours_box_muller_f32": ours_normal * ns,
            "numpy_standard_normal_f32": numpy_normal * ns,
        },
        "speedup_words_vs_numpy": numpy_words / ours_words,
        "speedup_normals_vs_numpy": numpy_normal / ours_normal,
    }


def main() -> None:
    """Print the noise benchmark's JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000, help="rows of 2000 draws (≥ 1)")
    parser.add_argument("--trials", type=int, default=5, help="timings, best kept (≥ 1)")
    args = parser.parse_args()
    for name in ("rows", "trials"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} expected an integer >= 1, actual {getattr(args, name)}")
    print(json.dumps(measure(args.rows, args.trials), indent=2))


if __name__ == "__main__":
    main()
