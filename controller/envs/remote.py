"""A neural model behind the NeuroLoop protocol over ZeroMQ (a simulator server).

:class:`RemoteModel` is a :class:`~controller.backends.zmq.ZmqConnection` with the simulator's
``configure`` options: the environment opens it with the same handshake as the controller
(same envelope, same hash) and maps each setpoint onto the backend's parameter names by role,
in the one place the controller does. Spikes are requested only when the environment needs
them (tail and rendering). Every call has a deadline; a backend that does not answer raises
:class:`~core.errors.TransportTimeoutError` or
:class:`~core.errors.BackendUnavailableError` and the environment stops.

Training pauses between rollouts (the policy update); start the server with a session timeout
longer than that, e.g. ``neuroloop-sim serve --session-timeout-s 600``.
"""

from __future__ import annotations

from controller.backends.zmq import ZmqConnection
from controller.envs.models import ENV_CLIENT_NAME, bind_model
from core.errors import ConfigError
from protocol.envelope.config import SafetyEnvelope


class RemoteModel(ZmqConnection):
    """Drive a simulator server window by window.

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
        options = {
            "n_scale": float(n_scale),
            "semantics": semantics,
            "polarity": polarity,
            # the same network the in-process model simulates (Fig 3, no stimulus noise)
            "stim_noise_e_mv": 0.0,
        }
        super().__init__(address, timeout_s=timeout_s, options=options,
                         client_name=ENV_CLIENT_NAME)  # fmt: skip
        self.n_e = n_e if n_e is not None else max(1, round(1600 * n_scale))
        self.description = {"model": "remote", "address": address, **self.options, "n_e": self.n_e}

    def bind(self, envelope: SafetyEnvelope, control_period_ms: float) -> None:
        """Open the session and configure the backend with the envelope and period."""
        bind_model(self, envelope, control_period_ms)

    def reset(self, seed: int | None) -> None:
        """Start a run on the backend from ``seed`` (after :meth:`bind`)."""
        if self.client.configured is None:
            raise ConfigError("Expected bind(envelope, period) before reset, actual none")
        super().reset(seed)
