"""A fingerprint of every protocol's dynamics, both semantics; prints JSON.

Speed work on the kernel should leave the dynamics bit for bit unchanged unless it says
otherwise. This script runs every open-loop protocol in both semantics for ``--windows`` windows
of 20 ms (the protocol's stimulus, or the Fig 3 train for the control, from the fifth window on)
and hashes every window's spikes and observations and the final weights, membrane potentials
and synaptic variables, and reports which tree's ``simulator`` it ran (its own: the script puts
its tree first on the import path). Run it before and after a change, or in two worktrees:

    python bench/digest_runs.py > before.json   # ... change the kernel ...
    python bench/digest_runs.py | diff before.json -

Fig 5's network is run at 0.3 of its size (N = 3000) to keep the script short.

The digests do not depend on the CPU (docs/simulator.md, "Reproducibility across CPUs"): runs on
two machines, or compiled for another CPU, compare the same way:

    NUMBA_CPU_NAME=generic python bench/digest_runs.py | diff before.json -   # SSE2, no FMA
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# this tree's packages, not an installed (or editable-installed) copy from another tree
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import simulator  # noqa: E402
from simulator.experiments import EXPERIMENTS  # noqa: E402
from simulator.network import Network  # noqa: E402
from simulator.stimulus import Stimulus  # noqa: E402

OBSERVATIONS = (
    "synchrony", "mean_v_e_mv", "sd_v_e_mv", "mean_v_i_mv", "sd_v_i_mv", "weight_mv",
    "weight_ie_mv", "rate_e_hz", "rate_i_hz", "chi", "charge_mv_ms",
)  # fmt: skip


def digest(name: str, semantics: str, windows: int, seed: int, threads: int = 1) -> str:
    """SHA-256 (first 16 hex digits) of one protocol's run."""
    protocol = EXPERIMENTS[name]
    scale = 0.3 if name == "ftsts-desync-10k" else 1.0
    net = Network(protocol.network_config(semantics, scale), threads=threads)  # type: ignore[arg-type]
    net.reset(seed=seed)
    stimulus = protocol.stimulus or Stimulus(100.0)
    h = hashlib.sha256()
    for w in range(windows):
        stats = net.advance(stimulus if w >= 4 else None, 20.0)
        h.update(np.ascontiguousarray(stats.spike_times_ms).tobytes())
        h.update(np.ascontiguousarray(stats.spike_neurons).tobytes())
        h.update(np.array([getattr(stats, f) for f in OBSERVATIONS], dtype=np.float64).tobytes())
    state = (
        net._ei.weight, net._ie.weight, net.v, net._ref, net._x_cross, net._s_cross,
        net._hist_cross, net._tr_e, net._tr_i, net._last_spike,
    )  # fmt: skip
    for array in state:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--windows", type=int, default=30, help="20 ms windows per run (≥ 1)")
    parser.add_argument("--seed", type=int, default=3, help="network seed (≥ 0)")
    parser.add_argument("--threads", type=int, default=1, help="kernel threads (≥ 1)")
    args = parser.parse_args()
    if args.windows < 1:
        parser.error(f"expected --windows ≥ 1, actual {args.windows}")
    if args.seed < 0:
        parser.error(f"expected --seed ≥ 0, actual {args.seed}")
    if args.threads < 1:
        parser.error(f"expected --threads ≥ 1, actual {args.threads}")
    report = {
        f"{name}/{semantics}": digest(name, semantics, args.windows, args.seed, args.threads)
        for name in EXPERIMENTS
        for semantics in ("paper", "clean")
    }
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=60
    ).stdout.strip()
    print(json.dumps({
        "windows": args.windows, "seed": args.seed, "threads": args.threads,
        "commit": head or None,
        "simulator": simulator.__file__, "digests": report,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
