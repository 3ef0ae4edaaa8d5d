"""The dynamics fingerprint (bench/digest_runs.py): complete, reproducible, seed-sensitive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from simulator.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "bench" / "digest_runs.py")


def _digests(*args: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, SCRIPT, "--windows", "5", *args],
        capture_output=True, text=True, timeout=600, check=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["windows"] == 5
    assert report["simulator"] == str(ROOT / "simulator" / "__init__.py")
    digests: dict[str, str] = report["digests"]
    return digests


def test_digest_covers_every_protocol_and_is_reproducible_and_seed_sensitive() -> None:
    first = _digests()
    assert set(first) == {f"{n}/{s}" for n in EXPERIMENTS for s in ("paper", "clean")}
    assert _digests() == first
    other_seed = _digests("--seed", "4")
    assert all(other_seed[key] != first[key] for key in first)
    # the variants differ from Fig 3 (Fig 6 only in clean semantics: in paper semantics the
    # released Fig 3 code already adds the stimulus noise)
    assert first["fig7-hetero-tau/paper"] != first["ftsts-desync/paper"]
    assert first["fig6-stim-noise/clean"] != first["ftsts-desync/clean"]


#: Every published result rests on these dynamics: speed work must keep them bit for bit (the
#: scalar-constant pass, Fig 3; the array pass, Fig 7 and Fig 8 with its recurrent input; the
#: symmetric STDP rule's immediate updates, Fig 12; since 2026-12-05 every protocol in both
#: semantics, the same values as the AVX2 build before, e.g. Fig 9's cross-talk drives and
#: Fig 11's plastic I→E weights). Pinned again when lazy potentiation
#: changed the rounding of the E→I weights (2026-11-30, fourth session), and when the neurons'
#: state became float32 and the noise came from eight SFC64 generators (fifth session).
#: The same on every x86-64 CPU (docs/simulator.md#reproducibility-across-cpus): the kernel
#: has no fast-math, its FMAs and sums are written out; ``.ci/run`` checks them compiled for
#: other CPUs (``NUMBA_CPU_NAME``), and so can you: ``NUMBA_CPU_NAME=generic pytest <this test>``.
FROZEN = {
    "none/paper": "448c32fc5d590d65",
    "none/clean": "7c517c8223a90cbf",
    "ftsts-desync/paper": "448c32fc5d590d65",
    "ftsts-desync/clean": "7c517c8223a90cbf",
    "ftsts-sync/paper": "f5bc87cd1dfb8758",
    "ftsts-sync/clean": "297b36c33956d640",
    "ftsts-desync-10k/paper": "9349ccdcf04c110a",
    "ftsts-desync-10k/clean": "60d6dba375ed451e",
    "fig6-stim-noise/paper": "448c32fc5d590d65",
    "fig6-stim-noise/clean": "6991703005d213b3",
    "fig7-hetero-tau/paper": "7ab8cb7fcfa5f896",
    "fig7-hetero-tau/clean": "a55e476da901ad01",
    "fig8-recurrent/paper": "b485ea355d1f2c58",
    "fig8-recurrent/clean": "78f00afbb36c0b7d",
    "fig9-crosstalk/paper": "84a2a06f66fbf70c",
    "fig9-crosstalk/clean": "6cdb87684e1d9ec6",
    "fig11-plastic-ie/paper": "2987398029bb01dc",
    "fig11-plastic-ie/clean": "982949b28e796d38",
    "fig12-symmetric-stdp/paper": "f348d70990d550ad",
    "fig12-symmetric-stdp/clean": "4661bd8e6dce4be5",
    # Figs 10 and 14 (coordinated reset on a four-contact lead), pinned when added (2026-12-06)
    "fig10-cr-ftsts/paper": "b60fd1c68d32a480",
    "fig10-cr-ftsts/clean": "aa7f0b789a2fb18c",
    "fig10-cr-only/paper": "a888b5341e3f2a91",
    "fig10-cr-only/clean": "b0f92cd4acd2be1d",
    "fig14-cr-ftsts/paper": "88fe24f2d35e4f83",
    "fig14-cr-ftsts/clean": "80fc2f8ac1de9080",
    "fig14-cr-only/paper": "19673233d07fd9ee",
    "fig14-cr-only/clean": "5c12204203f35cc4",
}


def test_dynamics_are_frozen() -> None:
    """Whatever CPU this runs on, and whichever ``NUMBA_CPU_NAME`` it is compiled for."""
    digests = _digests()
    changed = {key: digests[key] for key in FROZEN if digests[key] != FROZEN[key]}
    target = os.environ.get("NUMBA_CPU_NAME", "host")
    assert not changed, f"dynamics changed (compiled for CPU {target!r}): {changed}"


def test_digest_names_bad_arguments() -> None:
    bad = subprocess.run(
        [sys.executable, SCRIPT, "--windows", "0"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "expected --windows ≥ 1, actual 0" in bad.stderr
