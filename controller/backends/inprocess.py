"""A protocol backend object called in this process: the same session as over ZeroMQ, no socket.

:class:`InProcessConnection` is a :class:`~controller.backends.protocol.ProtocolConnection`
whose client (:class:`~protocol.inprocess.InProcessClient`) hands each request to the backend's
:meth:`~protocol.backend.Backend.handle_request`. Every backend kind is reachable this way,
exactly as over the wire: the simulator (:meth:`InProcessConnection.simulator`), the serial
bridge (:class:`drivers.bridge.SerialBackend` over a virtual or emulated device), a replay
(:class:`controller.replay.backend.ReplayBackend`) or the loopback. Fast tests, benchmarks, the
``--in-process`` controller and the gymnasium environments use it; the backend still refuses a
setpoint outside the configured envelope, so a test against it is a real test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from controller.backends.base import BackendInfo, BackendObservation
from controller.backends.protocol import ProtocolConnection
from protocol.backend import Backend
from protocol.envelope.setpoint import Setpoint
from protocol.inprocess import InProcessClient
from simulator.config import NetworkConfig
from simulator.server import SimulatorBackend

#: Session timeout of an in-process simulator: its client is this process, which may pause
#: for long (a policy update between rollouts) without being lost.
IN_PROCESS_SESSION_TIMEOUT_S = 3600.0


class InProcessConnection(ProtocolConnection):
    """Call ``backend`` in this process through the protocol's session.

    Args:
        backend: Any protocol backend, not served elsewhere at the same time.
        timeout_s: Deadline of the handshake calls (not enforced in process).
        options: Backend ``configure`` options.
        warm_up: Called once by :meth:`hello` before the session opens (the simulator compiles
            its kernels there, announced, so the first step is not seconds late).
        keep_applied: Keep every step's applied setpoint in :attr:`applied` (``None`` when
            off), for tests; it grows by one entry per step.
        client_name: Sent in ``hello``.
    """

    def __init__(
        self,
        backend: Backend,
        timeout_s: float = 5.0,
        options: Mapping[str, Any] | None = None,
        warm_up: Callable[[], float] | None = None,
        keep_applied: bool = True,
        client_name: str = "neuroloop-controller",
    ) -> None:
        client = InProcessClient(backend, timeout_s=timeout_s, client_name=client_name)
        super().__init__(client, timeout_s=timeout_s, options=options)
        self.backend = backend
        self._warm_up = warm_up
        self._keep_applied = keep_applied
        self.applied: list[Setpoint | None] = []

    @classmethod
    def simulator(
        cls,
        config: NetworkConfig | None = None,
        seed: int = 0,
        polarity: str = "desync",
        warm_up: bool = True,
        keep_applied: bool = True,
        client_name: str = "neuroloop-controller",
        threads: int | str = 1,
    ) -> InProcessConnection:
        """The simulator (:class:`simulator.server.SimulatorBackend`) on ``config``, in process.

        Args:
            config: Network parameters (default: the paper's Fig 3 network; small networks for
                tests: ``NetworkConfig(n_e=160, n_i=40)``).
            seed: Seed of :meth:`reset` when none is given.
            polarity: ``desync`` (the paper's Fig 3 waveform) or ``sync``.
            warm_up: Compile the kernels in :meth:`hello`.
            keep_applied: See the class.
            client_name: Sent in ``hello``.
            threads: Threads that integrate the network (``Network.threads``).
        """
        backend = SimulatorBackend(
            session_timeout_s=IN_PROCESS_SESSION_TIMEOUT_S,
            network_config=config if config is not None else NetworkConfig(),
            threads=threads,
        )
        return cls(
            backend,
            options={"seed": seed, "polarity": polarity},
            warm_up=backend.warm_up if warm_up else None,
            keep_applied=keep_applied,
            client_name=client_name,
        )

    def hello(self, client_name: str) -> BackendInfo:
        """Warm the backend up (once), then open the session."""
        if self._warm_up is not None:
            warm, self._warm_up = self._warm_up, None
            warm_s = warm()
            structlog.get_logger("controller.backends").info(
                "backend_warmed_up", backend=type(self.backend).__name__, warm_up_s=round(warm_s, 3)
            )
        return super().hello(client_name)

    def step(
        self, setpoint: Setpoint, duration_ms: float, timeout_s: float, want_spikes: bool = False
    ) -> BackendObservation:
        """One window of the backend, called in this thread."""
        obs = super().step(setpoint, duration_ms, timeout_s, want_spikes)
        if self._keep_applied:
            self.applied.append(obs.applied)
        return obs
