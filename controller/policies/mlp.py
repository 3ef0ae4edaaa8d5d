"""Numpy-only forward pass of an MLP actor with VecNormalize-style observation scaling.

This is the inference path of trained policies on the control loop: no torch, float64
arithmetic on float32 weights, allocation-light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

ACTIVATIONS = ("identity", "tanh", "relu", "elu", "leaky_relu", "sigmoid")


def _activate(x: FloatArray, name: str) -> FloatArray:
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "elu":
        return np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "leaky_relu":
        return np.where(x > 0.0, x, 0.01 * x)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    return x


@dataclass(frozen=True)
class Layer:
    """One affine layer followed by an activation.

    Args:
        weight: ``(out, in)`` matrix.
        bias: ``(out,)`` vector.
        activation: One of :data:`ACTIVATIONS`.
    """

    weight: FloatArray
    bias: FloatArray
    activation: str


@dataclass(frozen=True)
class ObsNormalizer:
    """``clip((obs - mean) / sqrt(var + epsilon), -clip, clip)`` as in SB3 ``VecNormalize``."""

    mean: FloatArray
    var: FloatArray
    clip_obs: float
    epsilon: float

    def __call__(self, obs: FloatArray) -> FloatArray:
        """Normalise one observation vector."""
        scaled = (obs - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs)


@dataclass(frozen=True)
class MlpActor:
    """Deterministic actor: normalise, forward the layers, then squash or clip to ``[-1, 1]``.

    Args:
        layers: The network, input first.
        normalizer: Observation scaling, or ``None``.
        output: ``tanh`` (SAC-style squashing) or ``clip`` (PPO/A2C Box clipping).
    """

    layers: Sequence[Layer]
    normalizer: ObsNormalizer | None
    output: str

    def __call__(self, obs: FloatArray) -> FloatArray:
        """Action in ``[-1, 1]`` for one observation vector."""
        x = self.normalizer(obs) if self.normalizer is not None else obs
        for layer in self.layers:
            x = _activate(layer.weight @ x + layer.bias, layer.activation)
        if self.output == "tanh":
            return np.tanh(x)
        return np.clip(x, -1.0, 1.0)
