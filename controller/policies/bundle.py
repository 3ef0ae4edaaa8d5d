"""Policy bundles: a trained SB3 actor as plain numpy arrays plus checked JSON metadata.

A bundle is a directory with two files:

* ``bundle.json``: format and versions, the algorithm, the envelope hash the policy was trained
  against, the observation fields in order (name, unit, low, high), the observation
  normalisation (SB3 ``VecNormalize``: ``clip_obs``, ``epsilon``; mean and var live in the npz),
  the action fields (name, unit, physical low/high for ``a = -1``/``+1``), fixed values for the
  quantities the policy does not control, the output squashing, the layers (array names and
  activations) and the SHA-256 of ``weights.npz``;
* ``weights.npz``: every layer's weight and bias, and ``obs_mean``/``obs_var`` if normalised.

:func:`export_sb3` writes one from a stable-baselines3 model (torch is imported there only);
:func:`load_bundle` checks every field and array and returns a :class:`PolicyBundle` whose
inference is numpy only. ``docs/controller.md`` documents the format.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.envelope.action import ACTION_NAMES, ActionMap
from controller.policies.mlp import ACTIVATIONS, Layer, MlpActor, ObsNormalizer
from core.errors import ConfigError
from protocol.envelope.setpoint import Setpoint

FORMAT = "neuroloop.policy_bundle"
FORMAT_VERSION = 1
META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.npz"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FieldSpec:
    """One observation or action quantity.

    Args:
        name: Field name (observation key, or one of ``amplitude``/``frequency_hz``/
            ``pulse_width_us`` for actions).
        unit: Unit text (``mV``, ``Hz``, ``us``, ``1``).
        low: Lowest value (for actions: the physical value at ``a = -1``).
        high: Highest value (for actions: the physical value at ``a = +1``).
    """

    name: str
    unit: str
    low: float
    high: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "unit": self.unit, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PolicyBundle:
    """A loaded, checked bundle.

    Args:
        path: Where it was loaded from.
        metadata: The parsed ``bundle.json``.
        observation_fields: Observation names in input order.
        action_map: How the ``[-1, 1]`` outputs become a setpoint.
        actor: The numpy actor.
        envelope_hash: Hash of the envelope the policy was trained against.
    """

    path: Path
    metadata: Mapping[str, Any]
    observation_fields: tuple[str, ...]
    action_map: ActionMap
    actor: MlpActor
    envelope_hash: str


class BundlePolicy:
    """Runs a :class:`PolicyBundle` on the control loop (numpy only).

    Args:
        bundle: The loaded bundle.
    """

    name = "bundle"

    def __init__(self, bundle: PolicyBundle, onset_ms: float = 0.0) -> None:
        self.bundle = bundle
        self.required_fields = bundle.observation_fields
        self.action_map: ActionMap | None = bundle.action_map
        self.onset_ms = float(onset_ms)
        self._obs = np.zeros(len(bundle.observation_fields))
        amap = bundle.action_map
        lowest = dict(zip(amap.names, amap.low, strict=True)) | dict(amap.fixed)
        # Before the onset nothing is delivered: amplitude 0 at the action box's lowest rate
        # and width (inside the envelope the bundle was trained against).
        self._off = Setpoint(
            amplitude=0.0,
            frequency_hz=float(lowest.get("frequency_hz", 5.0)),
            pulse_width_us=float(lowest.get("pulse_width_us", 50.0)),
        )

    def reset(self) -> None:
        """Stateless (a feed-forward actor)."""

    def act(
        self, fields: Mapping[str, float], t_model_ms: float
    ) -> np.ndarray[Any, Any] | Setpoint:
        """Normalised action for the observation (off before ``onset_ms``)."""
        if t_model_ms < self.onset_ms:
            return self._off
        obs = self._obs
        for i, name in enumerate(self.bundle.observation_fields):
            obs[i] = fields[name]
        return self.bundle.actor(obs)


def training_setting(bundle: PolicyBundle, key: str) -> float | None:
    """A numeric setting of the episode the bundle was trained on (``training.<key>``).

    Returns:
        The value (e.g. ``control_period_ms``, ``onset_ms``), or ``None`` if not recorded.
    """
    training = bundle.metadata.get("training")
    value = training.get(key) if isinstance(training, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for metadata: numpy scalars and arrays become plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _fail(path: Path, what: str, actual: Any) -> ConfigError:
    return ConfigError(f"Policy bundle {path}: expected {what}, actual {actual!r}")


def _get(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in meta:
        raise _fail(path, f"field {key!r}", "missing")
    value = meta[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        label = kind.__name__ if isinstance(kind, type) else "number"
        raise _fail(path, f"{key!r} as {label}", value)
    return value


def _num(meta: Mapping[str, Any], key: str, path: Path, where: str) -> float:
    value = _get(meta, key, (int, float), path)
    if not math.isfinite(float(value)):
        raise _fail(path, f"a finite {where}.{key}", value)
    return float(value)


def _fields(raw: Any, path: Path, where: str) -> tuple[FieldSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(path, f"{where}.fields as a non-empty list", raw)
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _fail(path, f"{where}.fields[{i}] as an object", item)
        name = _get(item, "name", str, path)
        unit = _get(item, "unit", str, path)
        low = _num(item, "low", path, f"{where}.fields[{i}]")
        high = _num(item, "high", path, f"{where}.fields[{i}]")
        if not low < high:
            raise _fail(path, f"{where}.fields[{i}] low < high", (low, high))
        out.append(FieldSpec(name, unit, low, high))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise _fail(path, f"distinct {where} field names", names)
    return tuple(out)


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def load_bundle(path: str | Path) -> PolicyBundle:
    """Load and check a policy bundle directory (or its ``bundle.json``).

    Raises:
        ConfigError: Naming the first field, array or shape that is wrong.
    """
    root = Path(path)
    if root.is_file() and root.name == META_FILE:
        root = root.parent
    meta_file, weights_file = root / META_FILE, root / WEIGHTS_FILE
    if not meta_file.is_file() or not weights_file.is_file():
        raise _fail(root, f"a directory with {META_FILE} and {WEIGHTS_FILE}", "not found")
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(root, f"JSON in {META_FILE}", str(err)) from err
    if not isinstance(meta, dict):
        raise _fail(root, f"a JSON object in {META_FILE}", type(meta).__name__)
    if meta.get("format") != FORMAT:
        raise _fail(root, f"format {FORMAT!r}", meta.get("format"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise _fail(root, f"format_version {FORMAT_VERSION}", meta.get("format_version"))
    _get(meta, "algorithm", str, root)
    versions = _get(meta, "versions", dict, root)
    for key in ("neuroloop", "numpy"):
        _get(versions, key, str, root)
    envelope_hash = _get(meta, "envelope_hash", str, root)
    if not _HEX64.match(envelope_hash):
        raise _fail(root, "envelope_hash as 64 lower-case hex digits", envelope_hash)
    digest = _get(meta, "weights_sha256", str, root)
    if digest != _sha256(weights_file):
        raise _fail(root, f"{WEIGHTS_FILE} with sha256 {digest}", _sha256(weights_file))
    obs_meta = _get(meta, "observation", dict, root)
    obs_fields = _fields(obs_meta.get("fields"), root, "observation")
    act_meta = _get(meta, "action", dict, root)
    act_fields = _fields(act_meta.get("fields"), root, "action")
    for f in act_fields:
        if f.name not in ACTION_NAMES:
            raise _fail(root, f"action field names from {ACTION_NAMES}", f.name)
    fixed_raw = _get(act_meta, "fixed", dict, root)
    fixed = {str(k): _num(fixed_raw, k, root, "action.fixed") for k in fixed_raw}
    output = _get(act_meta, "output", str, root)
    if output not in ("tanh", "clip"):
        raise _fail(root, "action.output 'tanh' or 'clip'", output)
    action_map = ActionMap(
        tuple(f.name for f in act_fields),
        tuple(f.low for f in act_fields),
        tuple(f.high for f in act_fields),
        fixed,
    )
    with np.load(weights_file, allow_pickle=False) as npz:
        arrays = {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise _fail(root, f"finite values in array {name!r}", "NaN or Inf")
    layers = _layers(_get(_get(meta, "network", dict, root), "layers", list, root), arrays, root)
    n_obs, n_act = len(obs_fields), len(act_fields)
    if layers[0].weight.shape[1] != n_obs:
        raise _fail(
            root, f"first layer input size {n_obs} (observation fields)", layers[0].weight.shape
        )
    if layers[-1].weight.shape[0] != n_act:
        raise _fail(
            root, f"last layer output size {n_act} (action fields)", layers[-1].weight.shape
        )
    normalizer = _normalizer(obs_meta.get("normalization"), arrays, n_obs, root)
    actor = MlpActor(tuple(layers), normalizer, output)
    return PolicyBundle(
        root, meta, tuple(f.name for f in obs_fields), action_map, actor, envelope_hash
    )


def _layers(raw: list[Any], arrays: Mapping[str, Any], root: Path) -> list[Layer]:
    if not raw:
        raise _fail(root, "network.layers as a non-empty list", raw)
    layers: list[Layer] = []
    width: int | None = None
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _fail(root, f"network.layers[{i}] as an object", item)
        w_name = _get(item, "weight", str, root)
        b_name = _get(item, "bias", str, root)
        act = _get(item, "activation", str, root)
        if act not in ACTIVATIONS:
            raise _fail(root, f"network.layers[{i}].activation in {ACTIVATIONS}", act)
        for name in (w_name, b_name):
            if name not in arrays:
                raise _fail(root, f"array {name!r} in {WEIGHTS_FILE}", sorted(arrays))
        weight, bias = arrays[w_name], arrays[b_name]
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise _fail(
                root, f"layer {i}: weight (out, in) and bias (out,)", (weight.shape, bias.shape)
            )
        if width is not None and weight.shape[1] != width:
            raise _fail(root, f"layer {i} input size {width}", weight.shape[1])
        width = weight.shape[0]
        layers.append(Layer(weight, bias, act))
    return layers


def _normalizer(
    raw: Any, arrays: Mapping[str, Any], n_obs: int, root: Path
) -> ObsNormalizer | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(root, "observation.normalization as an object or null", raw)
    clip_obs = _num(raw, "clip_obs", root, "observation.normalization")
    epsilon = _num(raw, "epsilon", root, "observation.normalization")
    if not (clip_obs > 0.0 and epsilon >= 0.0):
        raise _fail(root, "clip_obs > 0 and epsilon >= 0", (clip_obs, epsilon))
    for name in ("obs_mean", "obs_var"):
        if name not in arrays or arrays[name].shape != (n_obs,):
            shape = arrays[name].shape if name in arrays else "missing"
            raise _fail(root, f"array {name!r} of shape ({n_obs},)", shape)
    if np.any(arrays["obs_var"] < 0.0):
        raise _fail(root, "obs_var >= 0", "a negative variance")
    return ObsNormalizer(arrays["obs_mean"], arrays["obs_var"], clip_obs, epsilon)


def export_sb3(
    model: Any,
    vecnormalize: Any | None,
    path: str | Path,
    *,
    observation_fields: Sequence[FieldSpec],
    action_fields: Sequence[FieldSpec],
    envelope_hash: str,
    fixed: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle from a stable-baselines3 model with an MLP actor.

    Supports ``ActorCriticPolicy`` (PPO, A2C: ``mlp_extractor.policy_net`` + ``action_net``,
    clipped) and SAC/TD3 actors (``latent_pi`` + ``mu`` squashed by tanh, or a ``mu`` that ends
    in ``Tanh``). The model's action space must be ``Box(-1, 1)``; ``action_fields`` give the
    physical range each dimension maps to.

    Args:
        model: The trained model (``PPO``, ``A2C``, ``SAC``, ``TD3``).
        vecnormalize: The ``VecNormalize`` wrapper used in training, or ``None``.
        path: Output directory (created; existing bundle files are replaced).
        observation_fields: Observation quantities in the order the policy was trained on.
        action_fields: Action quantities in action order.
        envelope_hash: ``SafetyEnvelope.sha256()`` of the envelope used in training.
        fixed: Values of the setpoint quantities the policy does not control.
        metadata: Extra top-level ``bundle.json`` entries (JSON-serialisable), e.g.
            ``{"training": {"control_period_ms": 500.0, "onset_ms": 2000.0, ...}}``: the
            controller runs a bundle at its ``training.control_period_ms`` and holds it off
            until ``training.onset_ms`` unless told otherwise. They cannot replace the entries
            the format defines.

    Returns:
        The bundle directory.

    Raises:
        ConfigError: The model, spaces or fields do not fit the bundle format.
    """
    import stable_baselines3
    import torch

    root = Path(path)
    policy = model.policy
    obs_space, act_space = model.observation_space, model.action_space
    if len(getattr(obs_space, "shape", ())) != 1 or obs_space.shape[0] != len(observation_fields):
        raise _fail(root, f"a flat observation space of {len(observation_fields)}", obs_space)
    if (
        len(getattr(act_space, "shape", ())) != 1
        or act_space.shape[0] != len(action_fields)
        or not np.allclose(act_space.low, -1.0)
        or not np.allclose(act_space.high, 1.0)
    ):
        raise _fail(root, f"action space Box(-1, 1, ({len(action_fields)},))", act_space)
    modules: list[Any]
    if hasattr(policy, "mlp_extractor"):
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        output = "tanh" if policy.squash_output else "clip"
    elif hasattr(policy, "actor") and hasattr(policy.actor, "latent_pi"):
        modules = [*policy.actor.latent_pi, policy.actor.mu]
        output = "tanh"
    elif hasattr(policy, "actor") and isinstance(policy.actor.mu, torch.nn.Sequential):
        modules = list(policy.actor.mu)
        output = "clip"
    else:
        raise _fail(root, "an SB3 MLP actor (ActorCriticPolicy, SAC or TD3)", type(policy).__name__)
    names = {
        torch.nn.Tanh: "tanh",
        torch.nn.ReLU: "relu",
        torch.nn.ELU: "elu",
        torch.nn.LeakyReLU: "leaky_relu",
        torch.nn.Sigmoid: "sigmoid",
        torch.nn.Identity: "identity",
    }
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    layers: list[dict[str, str]] = []
    for module in modules:
        if isinstance(module, torch.nn.Linear):
            i = len(layers)
            arrays[f"layer{i}.weight"] = module.weight.detach().cpu().numpy().astype(np.float32)
            arrays[f"layer{i}.bias"] = module.bias.detach().cpu().numpy().astype(np.float32)
            layers.append(
                {"weight": f"layer{i}.weight", "bias": f"layer{i}.bias", "activation": "identity"}
            )
        elif type(module) in names and layers:
            if isinstance(module, torch.nn.LeakyReLU) and module.negative_slope != 0.01:
                raise _fail(root, "LeakyReLU slope 0.01", module.negative_slope)
            layers[-1]["activation"] = names[type(module)]
        else:
            raise _fail(root, "Linear layers and tanh/relu/elu/leaky_relu/sigmoid", module)
    normalization = None
    if vecnormalize is not None and getattr(vecnormalize, "norm_obs", False):
        arrays["obs_mean"] = np.asarray(vecnormalize.obs_rms.mean, dtype=np.float64)
        arrays["obs_var"] = np.asarray(vecnormalize.obs_rms.var, dtype=np.float64)
        normalization = {
            "clip_obs": float(vecnormalize.clip_obs),
            "epsilon": float(vecnormalize.epsilon),
        }
    return write_bundle(
        root,
        arrays=arrays,
        layers=layers,
        normalization=normalization,
        output=output,
        algorithm=type(model).__name__,
        versions={"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__},
        observation_fields=observation_fields,
        action_fields=action_fields,
        envelope_hash=envelope_hash,
        fixed=fixed,
        metadata=metadata,
    )


def write_bundle(
    path: str | Path,
    *,
    arrays: Mapping[str, np.ndarray[Any, Any]],
    layers: Sequence[Mapping[str, str]],
    normalization: Mapping[str, float] | None,
    output: str,
    algorithm: str,
    versions: Mapping[str, str],
    observation_fields: Sequence[FieldSpec],
    action_fields: Sequence[FieldSpec],
    envelope_hash: str,
    fixed: Mapping[str, float] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle from its arrays and layer list, then load it back to check it.

    The one writer of the format: :func:`export_sb3` (trained SB3 actors) and
    :func:`controller.training.schedule.write_schedule_bundle` (dose schedules) call it.

    Args:
        path: Output directory (created; existing bundle files are replaced).
        arrays: Every layer's ``weight``/``bias`` (and ``obs_mean``/``obs_var`` with a
            normalisation), stored as given.
        layers: ``{"weight": name, "bias": name, "activation": name}`` per layer, input first.
        normalization: ``{"clip_obs": …, "epsilon": …}`` or ``None``.
        output: ``clip`` or ``tanh``.
        algorithm: What made the weights (``PPO``, ``SAC``, ``CMA-ES dose schedule`` …).
        versions: Versions of the packages that made it, besides neuroloop and numpy.
        observation_fields: Observation quantities in input order.
        action_fields: Action quantities in output order.
        envelope_hash: ``SafetyEnvelope.sha256()`` of the envelope it was made for.
        fixed: Values of the setpoint quantities the policy does not control.
        metadata: Extra top-level entries (see :func:`export_sb3`).

    Returns:
        The bundle directory.

    Raises:
        ConfigError: The metadata clash with the format's own keys or are not JSON, or the
            written bundle does not load.
    """
    from importlib.metadata import version

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / WEIGHTS_FILE, **arrays)  # type: ignore[arg-type]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": algorithm,
        "versions": {"neuroloop": version("neuroloop"), "numpy": np.__version__, **versions},
        "envelope_hash": envelope_hash,
        "observation": {
            "fields": [f.as_dict() for f in observation_fields],
            "normalization": None if normalization is None else dict(normalization),
        },
        "action": {
            "fields": [f.as_dict() for f in action_fields],
            "fixed": dict(fixed or {}),
            "output": output,
        },
        "network": {"layers": [dict(layer) for layer in layers]},
        "weights_sha256": _sha256(root / WEIGHTS_FILE),
    }
    clash = sorted(set(metadata or {}) & set(meta))
    if clash:
        raise ConfigError(f"Expected metadata keys other than the format's own, actual {clash}")
    meta.update(metadata or {})
    try:
        text = json.dumps(meta, indent=2, default=json_default)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Expected JSON-serialisable bundle metadata, actual: {err}") from err
    (root / META_FILE).write_text(text + "\n", "utf-8")
    load_bundle(root)
    return root
