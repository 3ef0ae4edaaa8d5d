"""Neural models an environment can drive: each one is a controller backend connection.

A model is a :class:`~controller.backends.base.BackendConnection` (``hello``, ``configure``,
``reset``, ``step``, ``stop``, ``close``): the environment opens it, then runs each control
period through the controller's own tick (:class:`controller.tick.ControlTick`).
:class:`LocalNetworkModel` is the simulator (:class:`simulator.server.SimulatorBackend`) in this
process; :class:`controller.envs.remote.RemoteModel` is any simulator server over ZeroMQ; and
any other connection works as it is (``model_class=InProcessConnection`` with a serial bridge,
a replay …; see docs/rl.md). A model may say how many excitatory neurons it has (``n_e``: the
population the spike-based tail synchrony is computed on) and describe itself
(``description``, for logs and bundle metadata).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.backends.base import BackendConnection, BackendObservation
from controller.backends.inprocess import IN_PROCESS_SESSION_TIMEOUT_S, InProcessConnection
from controller.tick import open_session
from core.errors import ConfigError
from drivers.tissue import TissueTransfer
from drivers.tissue_backend import TissueBackend
from protocol.envelope.config import SafetyEnvelope
from simulator.config import NetworkConfig, Semantics
from simulator.network import Network
from simulator.server import SimulatorBackend
from simulator.stimulus import Polarity

#: Name an environment sends in ``hello``.
ENV_CLIENT_NAME = "neuroloop-env"

#: What an environment needs from a neural model: a backend connection.
NeuralModel = BackendConnection


@dataclass(frozen=True)
class ModelWindow:
    """What one window of the model returned, as the environment's trace keeps it.

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

    @classmethod
    def of(cls, obs: BackendObservation) -> ModelWindow:
        """The window of a backend observation (its spikes, if it carries them)."""
        if obs.spikes is None:
            return cls(obs.fields, obs.t_model_ms)
        return cls(
            obs.fields,
            obs.t_model_ms,
            np.asarray(obs.spikes.times(), dtype=np.float64),
            np.asarray(obs.spikes.neuron_ids(), dtype=np.int32),
        )


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


#: Keyword arguments of :class:`LocalNetworkModel` that set how fast, not what, it simulates
RUN_SETTINGS = ("threads",)


def network_params(model_params: Mapping[str, Any]) -> dict[str, Any]:
    """``model_params`` without :data:`RUN_SETTINGS`: what a result records of its network."""
    return {k: v for k, v in model_params.items() if k not in RUN_SETTINGS}


def bind_model(
    model: BackendConnection,
    envelope: SafetyEnvelope,
    control_period_ms: float,
    domain: str = "model",
) -> None:
    """Open ``model``'s session with an envelope of ``domain`` and the control period."""
    if envelope.domain != domain:
        raise ConfigError(
            f"Expected a {domain}-domain envelope for this model backend, actual "
            f"{envelope.domain!r}"
        )
    open_session(model, envelope, control_period_ms, client_name=ENV_CLIENT_NAME,
                 user="the environment")  # fmt: skip


class LocalNetworkModel(InProcessConnection):
    """The FTSTS network in this process: the simulator backend, called without a socket.

    Args:
        n_scale: Population scale (1.0 = 1600 E / 400 I, the paper's N = 2000).
        semantics: ``paper`` (released-code quirks) or ``clean``.
        polarity: Pulse polarity of every stimulus (``desync``: I leads E, E→I depression).
        network: Extra :class:`~simulator.config.NetworkConfig` field overrides.
        device_units: Speak the device's units (mA, µs, Hz) through the device emulator's
            tissue map (:class:`drivers.tissue_backend.TissueBackend`), so that a policy is
            trained against a physical envelope, the one it will meet on a stimulator.
        threads: Threads that integrate the network (a speed setting, not in
            :attr:`description`: every count gives the same episode).
    """

    def __init__(
        self,
        n_scale: float = 1.0,
        semantics: Semantics = "paper",
        polarity: Polarity = "desync",
        network: Mapping[str, Any] | None = None,
        device_units: bool = False,
        threads: int | str = 1,
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
            "units": "device" if device_units else "model",
        }
        self.domain = "physical" if device_units else "model"
        self.sim_backend: SimulatorBackend
        if device_units:
            self.sim_backend = TissueBackend(
                transfer=TissueTransfer(polarity=polarity),
                session_timeout_s=IN_PROCESS_SESSION_TIMEOUT_S,
                network_config=self.config,
                threads=threads,
            )
            options: dict[str, Any] = {}
        else:
            self.sim_backend = SimulatorBackend(
                session_timeout_s=IN_PROCESS_SESSION_TIMEOUT_S,
                network_config=self.config,
                threads=threads,
            )
            options = {"polarity": polarity}
        super().__init__(self.sim_backend, options=options, keep_applied=False,
                         client_name=ENV_CLIENT_NAME)  # fmt: skip

    @property
    def network(self) -> Network:
        """The underlying network (for tests and diagnostics; after the session opened)."""
        net = self.sim_backend.network
        if net is None:
            raise ConfigError("Expected an opened model (bind or an environment), actual none")
        return net

    def bind(self, envelope: SafetyEnvelope, control_period_ms: float) -> None:
        """Open the session with the envelope and control period (:func:`bind_model`)."""
        bind_model(self, envelope, control_period_ms, self.domain)
