"""Write the controller's policy bundle from a trained model (via ``export_sb3``).

The environment scales each observation feature from its physical bounds to ``[0, 1]`` before
``VecNormalize``; the bundle format has one affine normaliser on raw observations, so the two
are folded into one: ``mean' = low + mean·span`` and ``var' = span²·(var + ε) - ε``, which gives
exactly ``(raw - mean') / sqrt(var' + ε) = (scaled - mean) / sqrt(var + ε)``.

The episode timing the policy was trained for (control period, lead-in, controlled period,
tail), the network, the reward and the training run go into ``bundle.json`` as its
``training`` object (``export_sb3(metadata=...)``); the controller reads the control period and
lead-in from there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from controller.envs.config import SimConfig
from controller.envs.dbs import action_map_for
from controller.envs.spaces import (
    ACTION_FIELDS,
    Feature,
    feature_scale,
    observation_field_specs,
    observation_set,
)
from controller.policies.bundle import (
    FieldSpec,
    PolicyBundle,
    export_sb3,
    json_default,
    load_bundle,
)
from protocol.envelope.config import SafetyEnvelope, load_envelope

#: Clip used when the policy was trained without observation normalisation (never reached).
NO_CLIP = 1e9


def action_fields_for(envelope: SafetyEnvelope) -> tuple[FieldSpec, ...]:
    """The bundle's action layout for ``envelope`` (the environment's action map).

    Model domain: :data:`~controller.envs.spaces.ACTION_FIELDS`; physical domain: the
    envelope's own ranges in its amplitude unit, so a bundle trained for a device maps its
    actions onto the settings that device accepts.
    """
    if envelope.domain == "model":
        return ACTION_FIELDS
    amap = action_map_for(envelope)
    units = (envelope.amplitude_unit, "Hz", "us")
    return tuple(
        FieldSpec(spec.name, unit, float(lo), float(hi))
        for spec, unit, lo, hi in zip(ACTION_FIELDS, units, amap.low, amap.high, strict=True)
    )


def folded_normalizer(
    vecnormalize: Any | None, features: tuple[Feature, ...] | None = None
) -> SimpleNamespace:
    """A ``VecNormalize``-like object whose statistics apply to raw observations."""
    low, span = feature_scale() if features is None else feature_scale(features)
    if vecnormalize is not None and getattr(vecnormalize, "norm_obs", False):
        mean = np.asarray(vecnormalize.obs_rms.mean, dtype=np.float64)
        var = np.asarray(vecnormalize.obs_rms.var, dtype=np.float64)
        eps = float(vecnormalize.epsilon)
        clip_obs = float(vecnormalize.clip_obs)
    else:
        mean, var, eps, clip_obs = np.zeros_like(low), np.ones_like(low), 0.0, NO_CLIP
    raw_mean = low + mean * span
    raw_var = span**2 * (var + eps) - eps
    return SimpleNamespace(
        norm_obs=True,
        obs_rms=SimpleNamespace(mean=raw_mean, var=raw_var),
        epsilon=eps,
        clip_obs=clip_obs,
    )


def episode_settings(sim_config: SimConfig) -> dict[str, Any]:
    """The episode a bundle was made for, as its ``training`` entry records it.

    The controller reads ``control_period_ms`` and ``onset_ms`` from there; ``neuroloop-eval``
    rebuilds the whole episode from it.
    """
    return {
        "env_id": "neuroloop/FTSTS-v0",
        "control_period_ms": sim_config.control_period_ms,
        "onset_ms": sim_config.onset_ms,
        "controlled_s": sim_config.controlled_s,
        "tail_s": sim_config.tail_s,
        "envelope": sim_config.envelope,
        "observations": sim_config.observations,
    }


def export_bundle(
    model: Any,
    vecnormalize: Any | None,
    path: str | Path,
    sim_config: SimConfig,
    training: Mapping[str, Any],
) -> PolicyBundle:
    """Export ``model`` as a policy bundle at ``path`` and return it loaded and checked.

    Args:
        model: Trained SB3 model (PPO or SAC).
        vecnormalize: Its ``VecNormalize`` wrapper (or ``None``).
        path: Output directory.
        sim_config: The episode configuration it was trained with.
        training: Extra facts for the ``training`` metadata (network, seeds, steps …).
    """
    envelope = load_envelope(sim_config.envelope)
    features = observation_set(sim_config.observations, envelope.domain)
    settings = {
        **episode_settings(sim_config),
        "reward": sim_config.reward.as_dict(),
        "observation_scaling": "feature bounds folded into observation.normalization",
        **dict(training),
    }
    # plain JSON types (numpy scalars, paths and other objects as text)
    plain = json.loads(json.dumps(settings, default=_jsonable))
    root = export_sb3(
        model,
        folded_normalizer(vecnormalize, features),
        path,
        observation_fields=observation_field_specs(features),
        action_fields=action_fields_for(envelope),
        envelope_hash=envelope.sha256(),
        metadata={"training": plain},
    )
    return load_bundle(root)


def _jsonable(value: Any) -> Any:
    try:
        return json_default(value)
    except TypeError:
        return str(value)
