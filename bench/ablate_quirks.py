"""Effect of each quirk of the released code on the Fig 3 reproduction; prints JSON.

Runs the Fig 3 protocol (N = 2000, 25 s) in paper semantics with all quirks, then with each
quirk switched off alone (``NetworkConfig.paper_quirks``), then in clean semantics, for a few
seeds. The stimulus noise of the released Fig 3 file is a protocol setting and is kept on in
every paper-semantics variant.

    python bench/ablate_quirks.py [--seeds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

from simulator.config import PAPER_QUIRKS
from simulator.experiments import get_experiment
from simulator.run import run_experiment

KEYS = ("r_pre", "r_stim", "r_tail", "latch_time_s", "weight_mv", "rate_e_pre_hz", "rate_i_pre_hz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    base = get_experiment("ftsts-desync")
    variants: dict[str, tuple[str, tuple[str, ...] | None]] = {
        "paper (all quirks)": ("paper", None)
    }
    for quirk in PAPER_QUIRKS:
        variants[f"paper without {quirk}"] = ("paper", tuple(q for q in PAPER_QUIRKS if q != quirk))
    variants["clean"] = ("clean", None)
    report = {}
    for label, (semantics, quirks) in variants.items():
        proto = dataclasses.replace(base, network={**base.network, "paper_quirks": quirks})
        rows = [run_experiment(proto, semantics=semantics, seed=s).summary  # type: ignore[arg-type]
                for s in range(1, args.seeds + 1)]  # fmt: skip
        report[label] = {
            key: statistics.fmean(r[key] for r in rows if r[key] is not None) for key in KEYS
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
