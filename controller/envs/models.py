"""Neural models an environment can drive: the in-process network or a remote backend.

A model is anything with the :class:`NeuralModel` surface: ``bind`` (envelope and control
period, before the first reset), ``reset(seed)``, ``advance(stimulus, duration_ms,
want_spikes)`` returning a :class:`ModelWindow`, and ``close``. :class:`LocalNetworkModel` runs
:class:`simulator.network.Network` in this process; :class:`controller.envs.remote.RemoteModel`
drives any protocol backend (the simulator server now, the device bridge later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError
from protocol.envelope.config import SafetyEnvelope
from simulator.config import NetworkConfig, Semantics
from simulator.network import Network
from simulator.stimulus import Polarity, Stimulus


@dataclass(frozen=True)
class ModelWindow:
    """What one window of the model returned.

    Args:
        fields: The backend observation (``simulator.network.OBSERVATION_FIELDS``).
        t_end_ms: Model time at the end of the window.
        spike_times_ms: Spike times, or ``None`` when spikes were not asked for.
        spike_neurons: Neuron per spike (E: ``0..n_e-1``), or ``None``.
    """

    fields: Mapping[str, float]
    t_end_ms: float
    spike_times_ms: npt.NDArray[np.float64] | None = None
    spike_neurons: npt.NDArray[np.int32] | None = None


class NeuralModel(Protocol):
    """What an environment needs from a neural model."""

    #: Number of excitatory neurons (the population the order parameter is computed on).
    n_e: int
    #: Short description for logs and bundle metadata.
    description: dict[str, Any]

    def bind(self, envelope: SafetyEnvelope, control_period_ms: float) -> None:
        """Receive the safety envelope and control period before the first reset."""
        ...

    def reset(self, seed: int) -> None:
        """Start a new run whose every random draw derives from ``seed``."""
        ...

    def advance(
        self, stimulus: Stimulus | None, duration_ms: float, want_spikes: bool
    ) -> ModelWindow:
        """Integrate ``duration_ms`` under ``stimulus`` (``None`` = off)."""
        ...

    def close(self) -> None:
        """Release resources (idempotent)."""
        ...


def network_config(
    n_scale: float = 1.0, semantics: Semantics = "paper", network: Mapping[str, Any] | None = None
) -> NetworkConfig:
    """The Fig 3 network (no stimulus noise), scaled by ``n_scale``, with ``network`` overrides.

    The released code's stimulus noise is left out on purpose: the simulator switches it on for
    any non-zero amplitude, so a near-zero-charge train would buy a noise-driven
    desynchronisation that no real stimulator could (docs/rl.md).
    """
    cfg = NetworkConfig(semantics=semantics)
    if network:
        cfg = cfg.replace(**dict(network))
    return cfg.scaled(n_scale) if n_scale != 1.0 else cfg


class LocalNetworkModel:
    """The FTSTS network in this process.

    Args:
        n_scale: Population scale (1.0 = 1600 E / 400 I, the paper's N = 2000).
        semantics: ``paper`` (released-code quirks) or ``clean``.
        polarity: Pulse polarity of every stimulus (``desync``: I leads E, E→I depression).
        network: Extra :class:`~simulator.config.NetworkConfig` field overrides.
    """

    def __init__(
        self,
        n_scale: float = 1.0,
        semantics: Semantics = "paper",
        polarity: Polarity = "desync",
        network: Mapping[str, Any] | None = None,
    ) -> None:
        if polarity not in ("desync", "sync"):
            raise ConfigError(f"Expected polarity desync|sync, actual {polarity!r}")
        self.config = network_config(n_scale, semantics, network)
        self.polarity: Polarity = polarity
        self.n_e = self.config.n_e
        self.description = {
            "model": "local",
            "n_scale": n_scale,
            "semantics": semantics,
            "polarity": polarity,
            "n_e": self.config.n_e,
            "n_i": self.config.n_i,
            "network_overrides": dict(network or {}),
        }
        self._net = Network(self.config)

    @property
    def network(self) -> Network:
        """The underlying network (for tests and diagnostics)."""
        return self._net

    def bind(self, envelope: SafetyEnvelope, control_period_ms: float) -> None:
        """Nothing to configure in-process (the environment applies the envelope)."""

    def reset(self, seed: int) -> None:
        """Draw connectivity, initial state and noise streams from ``seed``."""
        self._net.reset(seed)

    def advance(
        self, stimulus: Stimulus | None, duration_ms: float, want_spikes: bool
    ) -> ModelWindow:
        """One window of the network."""
        if stimulus is not None and stimulus.polarity != self.polarity:
            stimulus = Stimulus(
                stimulus.amplitude_mv,
                frequency_hz=stimulus.frequency_hz,
                pulse_width_us=stimulus.pulse_width_us,
                polarity=self.polarity,
                ei_offset_ms=stimulus.ei_offset_ms,
            )
        stats = self._net.advance(stimulus, duration_ms)
        if want_spikes:
            return ModelWindow(
                stats.observation(), stats.t_end_ms, stats.spike_times_ms, stats.spike_neurons
            )
        return ModelWindow(stats.observation(), stats.t_end_ms)

    def close(self) -> None:
        """Nothing to release."""
