"""A neural model behind the NeuroLoop protocol (the simulator server, later the device bridge).

:class:`RemoteModel` opens a session with :class:`protocol.client.BackendClient`, configures it
through the controller's :class:`~controller.backends.zmq.ZmqBackend` handshake (same envelope,
same hash as the controller sends), and maps each window's stimulus onto the backend's
parameter names by role. Spikes are requested only when the environment needs them (tail and
rendering). Every call has a deadline; a backend that does not answer raises
:class:`~core.errors.TransportTimeoutError` or
:class:`~core.errors.BackendUnavailableError` and the environment stops.

Training pauses between rollouts (the policy update); start the server with a session timeout
longer than that, e.g. ``neuroloop-sim serve --session-timeout-s 600``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from controller.backends.zmq import ZmqBackend
from controller.envs.models import ModelWindow
from core.errors import ConfigError, ProtocolError
from protocol.client import BackendClient
from protocol.envelope.config import SafetyEnvelope
from simulator.stimulus import Stimulus


class RemoteModel:
    """Drive a protocol backend window by window.

    Args:
        address: Backend endpoint (``ipc://…`` or ``tcp://127.0.0.1:…``).
        n_scale: ``n_scale`` configure option (simulator: 1.0 = N 2000).
        semantics: ``semantics`` configure option (simulator: ``paper`` | ``clean``).
        polarity: ``polarity`` configure option (simulator: ``desync`` | ``sync``).
        timeout_s: Deadline of the handshake calls; a step's deadline is this plus twice the
            window length (the simulator runs faster than real time).
        n_e: Number of E neurons of the remote network (default: ``1600·n_scale`` as the
            simulator rounds it).
    """

    def __init__(
        self,
        address: str,
        n_scale: float = 1.0,
        semantics: str = "paper",
        polarity: str = "desync",
        timeout_s: float = 10.0,
        n_e: int | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.options: dict[str, Any] = {
            "n_scale": float(n_scale),
            "semantics": semantics,
            "polarity": polarity,
            # the same network the in-process model simulates (Fig 3, no stimulus noise)
            "stim_noise_e_mv": 0.0,
        }
        self.n_e = n_e if n_e is not None else max(1, round(1600 * n_scale))
        self.description = {"model": "remote", "address": address, **self.options, "n_e": self.n_e}
        self._client = BackendClient(address, timeout_s=timeout_s, client_name="neuroloop-env")
        self._backend = ZmqBackend(address, timeout_s=timeout_s, options=self.options,
                                   client=self._client)  # fmt: skip
        self._names: dict[str, str] = {}
        self._pinned: dict[str, float] = {}
        self._bound = False

    def bind(self, envelope: SafetyEnvelope, control_period_ms: float) -> None:
        """Open the session and configure the backend with the envelope and period."""
        if envelope.domain != "model":
            raise ConfigError(
                f"Expected a model-domain envelope for a model backend, actual {envelope.domain!r}"
            )
        info = self._backend.hello("neuroloop-env")
        caps = self._client.welcome.capabilities if self._client.welcome is not None else None
        if caps is None:
            raise ProtocolError("Expected a welcome after hello, actual none", "no_session")
        for spec in caps.stim_params:
            if spec.role in ("amplitude", "frequency", "pulse_width"):
                self._names[str(spec.role)] = spec.name
            else:
                self._pinned[spec.name] = 0.0
        if spec_unit(caps.stim_params, "amplitude") != "mV":
            raise ConfigError(
                "Expected a backend with amplitude in mV of model drive, actual "
                f"{spec_unit(caps.stim_params, 'amplitude')!r} ({info.kind})"
            )
        self._backend.configure(envelope, control_period_ms)
        self._bound = True

    def reset(self, seed: int) -> None:
        """Start a run on the backend from ``seed``."""
        if not self._bound:
            raise ConfigError("Expected bind(envelope, period) before reset, actual none")
        self._client.reset(seed, timeout_s=self.timeout_s)

    def advance(
        self, stimulus: Stimulus | None, duration_ms: float, want_spikes: bool
    ) -> ModelWindow:
        """One window on the backend."""
        wire: dict[str, float] | None = None
        if stimulus is not None and stimulus.is_on:
            wire = {
                self._names["amplitude"]: stimulus.amplitude_mv,
                self._names["frequency"]: stimulus.frequency_hz,
                self._names["pulse_width"]: stimulus.pulse_width_us,
                **self._pinned,
            }
        deadline_s = self.timeout_s + 2.0 * duration_ms / 1000.0
        obs = self._client.step(wire, duration_ms, want_spikes=want_spikes, timeout_s=deadline_s)
        if want_spikes:
            if obs.spikes is None:
                raise ProtocolError(
                    "Expected spikes in the observation (want_spikes), actual none", "no_spikes"
                )
            return ModelWindow(
                dict(obs.fields),
                obs.t_model_ms,
                np.asarray(obs.spikes.times(), dtype=np.float64),
                np.asarray(obs.spikes.neuron_ids(), dtype=np.int32),
            )
        return ModelWindow(dict(obs.fields), obs.t_model_ms)

    def close(self) -> None:
        """End the session (stimulation stops) and close the socket; idempotent."""
        if self._bound:
            self._bound = False
            self._backend.stop("environment closed")
        self._backend.close()


def spec_unit(specs: Any, role: str) -> str:
    """Unit of the parameter with ``role`` among ``specs`` (empty if none)."""
    for spec in specs:
        if spec.role == role:
            return str(spec.unit)
    return ""
