"""A dose schedule stopped at each cheaper baseline's own charge, seed by seed; prints JSON.

``neuroloop-eval`` compares methods at the charge each of them chooses. The clinical aDBS laws
spend less than the shipped dose schedule (``controller/policies/pretrained/measurable_schedule``)
and leave the network synchronised; this asks whether the schedule still does better when it
may spend no more than they do. For every method of an ``eval.json`` whose median charge is
below the schedule's, and every seed of that evaluation, the same programme is stopped for good
once it has delivered that method's charge on that seed, less ``--margin-uc`` (the envelope's
ramp down after the stop still delivers a little; the printed charges show the result stayed
at or below the method's). Same episodes, seeds and envelope as the evaluation (the bundle's
``training`` timing, device units through the emulator's tissue map).

    python bench/schedule_charge_matched.py --eval docs/results/rl/schedule/eval.json \\
        --json docs/results/rl/schedule/charge_matched.json        # about 3 minutes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from json_out import ROOT, emit, shown

from controller.policies.bundle import load_bundle
from controller.training.evaluate import bundle_sim_config
from controller.training.schedule import DoseSchedule
from controller.training.schedule_search import episode, episode_values
from core.errors import ConfigError
from core.executor import Task, make_executor, run_ordered
from drivers.tissue import TissueTransfer

BUNDLE = ROOT / "controller" / "policies" / "pretrained" / "measurable_schedule"


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print JSON."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--policy", type=Path, default=BUNDLE, help="dose-schedule bundle")
    p.add_argument("--eval", type=Path, required=True, help="eval.json of that bundle")
    p.add_argument("--margin-uc", type=float, default=100.0,
                   help="stop this much dose (µC) before the method's charge (100)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the result here")
    a = p.parse_args(argv)
    bundle = load_bundle(a.policy)
    schedule = DoseSchedule.from_dict(bundle.metadata["schedule"])
    if schedule.dose_field != "dose_uc":
        p.error(f"Expected a device-unit schedule (dose_uc), actual {schedule.dose_field}")
    ev = json.loads(a.eval.read_text("utf-8"))
    runs = ev["methods"]
    mine = float(np.median([r["charge"] for r in runs["policy"]]))
    cheaper = [m for m in runs if m != "policy" and 0.0 < np.median(
        [r["charge"] for r in runs[m]]) < mine]  # fmt: skip
    sim_config = bundle_sim_config(a.policy, float(ev["episode"]["tail_s"]))
    network = {k: ev["network"][k] for k in ("n_scale", "semantics")}
    mv_ms_per_uc = TissueTransfer().gain_mv_per_ua * 1000.0  # mV·ms per µC of device charge
    tasks, keys = [], []
    for method in cheaper:
        for r in runs[method]:
            dose = r["charge"] / mv_ms_per_uc - a.margin_uc
            cut = schedule.truncated(min(dose, schedule.stop_dose))
            tasks.append(Task(key=f"{method}/{r['seed']}", fn=episode,
                              args=("policy", r["seed"], sim_config, network, cut.as_dict()),
                              params={"method": method, "seed": r["seed"]}))  # fmt: skip
            keys.append((method, r))
    with make_executor(None, a.workers) as executor:
        try:
            values = episode_values(run_ordered(executor, tasks))
        except ConfigError as err:
            raise SystemExit(str(err)) from err
    report: dict[str, Any] = {"command": "python bench/schedule_charge_matched.py",
                              "argv": sys.argv[1:] if argv is None else list(argv),
                              "policy": shown(a.policy), "eval": shown(a.eval),
                              "margin_uc": a.margin_uc, "methods": {}}  # fmt: skip
    for method in cheaper:
        rows = [(r, v) for (m, r), v in zip(keys, values, strict=True) if m == method]
        report["methods"][method] = {
            "seeds": len(rows),
            "method_r_tail": _spread([r["r_tail"] for r, _ in rows]),
            "schedule_r_tail": _spread([v["r_tail"] for _, v in rows]),
            "method_charge_mv_ms": _spread([r["charge"] for r, _ in rows]),
            "schedule_charge_mv_ms": _spread([v["charge"] for _, v in rows]),
            "schedule_charge_at_most_methods": sum(v["charge"] <= r["charge"] for r, v in rows),
            "schedule_r_tail_lower": sum(v["r_tail"] < r["r_tail"] for r, v in rows),
            "schedule_weight_end_mv": _spread([v["weight_end_mv"] for _, v in rows]),
            "runs": [{"seed": r["seed"], "method": {"r_tail": r["r_tail"], "charge": r["charge"]},
                      "schedule": v} for r, v in rows],
        }  # fmt: skip
    emit(report, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
