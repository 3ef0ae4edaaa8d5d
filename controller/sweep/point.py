"""Run one point of a study (in a worker process) and return its summary row.

A protocol point runs :func:`simulator.run.run_experiment` and keeps the simulator's own run
summary (:func:`simulator.run.summarise`: R before, during and after stimulation, latch time,
charge, rates, final weight). A policy point runs one episode the way ``neuroloop-eval`` does
(:func:`controller.training.evaluate.run_one`) and keeps that episode's metrics.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from controller.sweep.study import NETWORK_PARAMS, PROTOCOL_PARAMS, STIMULUS_PARAMS
from simulator.experiments import Experiment, get_experiment

#: Summary fields that measure this machine, not the model (excluded when comparing runs).
TIMING_FIELDS = ("wall_s", "jit_s", "model_s_per_wall_s", "point_wall_s")


def protocol_for(name: str, values: Mapping[str, Any]) -> Experiment:
    """The named protocol with a point's stimulus, protocol and network values applied."""
    base = get_experiment(name)
    stim = {k: v for k, v in values.items() if k in STIMULUS_PARAMS}
    changes: dict[str, Any] = {k: v for k, v in values.items() if k in PROTOCOL_PARAMS}
    net = {k: v for k, v in values.items() if k in NETWORK_PARAMS}
    if stim:
        if base.stimulus is None:
            from core.errors import ConfigError

            raise ConfigError(
                f"Expected a stimulated protocol for {sorted(stim)}, actual {name!r} (no stimulus)"
            )
        changes["stimulus"] = dataclasses.replace(base.stimulus, **stim)
    if net:
        changes["network"] = {**base.network, **net}
    return dataclasses.replace(base, **changes) if changes else base


def run_point(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run one (parameter set, seed) pair described by ``spec``; return its summary row.

    Args:
        spec: ``kind``, ``target``, ``semantics``, ``n_scale``, ``duration_s``, ``episode``,
            ``values`` (the point's parameters and the study's fixed ones), ``seed`` and
            ``threads`` (optional, default 1: each network's threads).
    """
    t0 = time.perf_counter()
    values = dict(spec["values"])
    if spec["kind"] == "protocol":
        from simulator.run import run_experiment

        proto = protocol_for(spec["target"], values)
        result = run_experiment(
            proto,
            semantics=spec["semantics"],
            n_scale=spec["n_scale"],
            duration_s=spec["duration_s"],
            seed=int(spec["seed"]),
            threads=spec.get("threads", 1),
        )
        row = dict(result.summary)
    else:
        row = _policy_point(spec, values)
    row["point_wall_s"] = time.perf_counter() - t0
    return row


def _policy_point(spec: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    from controller.envs.config import SimConfig
    from controller.training.evaluate import bundle_sim_config, run_one

    target = str(spec["target"])
    episode = dict(spec.get("episode", {}))
    if target in ("ftsts", "latched", "off"):
        method, bundle = target, None
        cfg = SimConfig(
            onset_ms=episode.get("onset_ms", 2000.0),
            controlled_s=episode.get("controlled_s", 20.0),
            tail_s=episode.get("tail_s", 5.0),
        )
    else:
        method, bundle = "policy", target
        base = bundle_sim_config(target, episode.get("tail_s", 5.0))
        cfg = dataclasses.replace(base, **{k: v for k, v in episode.items() if k != "tail_s"})
    model_params = {
        "n_scale": spec["n_scale"],
        "semantics": spec["semantics"],
        "network": {k: v for k, v in values.items() if k in NETWORK_PARAMS},
        "threads": spec.get("threads", 1),
    }
    record = run_one(method, int(spec["seed"]), cfg, model_params, bundle)
    row = dict(record.metrics())
    for k, v in row.pop("mean_setpoint").items():
        row[f"mean_{k}"] = v
    row["method"] = method
    return row
