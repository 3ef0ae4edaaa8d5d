"""How the controller calls a backend: the :class:`BackendConnection` protocol and its data.

A backend *serves* the protocol (:class:`protocol.backend.Backend`: the simulator, the serial
bridge, a replay, the loopback); a connection *calls* one. A connection is opened (``hello``),
given the envelope and control period (``configure``), reset, then stepped: every ``step``
applies a setpoint for one window and returns the window's observation. ``stop`` ends
stimulation at once; ``close`` ends the session. Implementations:
:class:`~controller.backends.protocol.ProtocolConnection` (any protocol backend, over ZeroMQ as
:class:`~controller.backends.zmq.ZmqConnection` or in this process as
:class:`~controller.backends.inprocess.InProcessConnection`) and the scripted test connection
:class:`~controller.backends.scripted.ScriptedConnection`. The control loop and the gymnasium
environments use the same connections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint
from protocol.schema import SpikeWindow


@dataclass(frozen=True)
class BackendInfo:
    """What a backend said in its handshake.

    Args:
        kind: ``sim``, ``serial``, ``replay`` or ``loopback``.
        name: Implementation name, for logs.
        observation_fields: Names of the observation floats, in order.
        domain: SafetyEnvelope domain the backend's stimulation units belong to.
        control_period_ms: The backend's natural control period.
        supports_fast_pace: Whether the backend may be stepped faster than real time.
        lockstep: Whether the backend's tissue waits for the controller: model time advances
            only inside ``step`` (a simulator, a replay), so a late step delays nobody. ``False``
            (the safe default) for a device, whose tissue lives on in real time; see
            ``docs/controller.md`` (Deadlines).
        supports_spikes: Whether ``step(..., want_spikes=True)`` returns the window's spikes.
        max_step_ms: Longest window one ``step`` may cover (an environment splits its longer
            unstimulated lead-in and tail into windows no longer than this).
    """

    kind: str
    name: str
    observation_fields: tuple[str, ...]
    domain: str
    control_period_ms: float
    supports_fast_pace: bool
    lockstep: bool = False
    supports_spikes: bool = False
    max_step_ms: float = math.inf


@dataclass(frozen=True)
class BackendObservation:
    """One window's observation.

    Args:
        seq: Step number since the last reset (first step is 1).
        t_model_ms: Backend time at the end of the window.
        duration_ms: Window length.
        fields: Named observation floats (may hold NaN/Inf from a faulty source; the envelope
            decides what to do with them).
        applied: The setpoint the backend actually applied, ``None`` when off.
        extra: Backend-specific extra values.
        spikes: The window's spikes when they were asked for (``want_spikes``).
    """

    seq: int
    t_model_ms: float
    duration_ms: float
    fields: Mapping[str, float]
    applied: Setpoint | None = None
    extra: Mapping[str, float] = field(default_factory=dict)
    spikes: SpikeWindow | None = None


@runtime_checkable
class BackendConnection(Protocol):
    """The controller's connection to a backend (simulator, stimulator, replay, loopback)."""

    def hello(self, client_name: str) -> BackendInfo:
        """Open a session and return the backend's description."""
        ...

    def configure(self, envelope: SafetyEnvelope, period_ms: float) -> str:
        """Send the envelope and control period; return the hash the backend accepted."""
        ...

    def reset(self, seed: int | None) -> None:
        """Start a run from the initial state, stimulation off."""
        ...

    def step(
        self, setpoint: Setpoint, duration_ms: float, timeout_s: float, want_spikes: bool = False
    ) -> BackendObservation:
        """Apply ``setpoint`` for ``duration_ms`` and return the window's observation.

        ``want_spikes`` asks for the window's spikes (backends with ``supports_spikes``).

        Raises:
            TransportTimeoutError: No observation arrived within ``timeout_s``.
            BackendUnavailableError: The backend cannot be reached any more.
        """
        ...

    def stop(self, reason: str) -> None:
        """Stop stimulation now (safe stop). Must not raise when the backend is gone."""
        ...

    def close(self) -> None:
        """End the session and release resources; idempotent."""
        ...
