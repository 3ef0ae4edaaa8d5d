"""A scripted connection for tests: observations, latencies and failures chosen per step.

It moves a :class:`~core.clock.FakeClock` by the scripted latency of each step, so a
test can make observation k arrive late, very late, time out, or make the backend vanish, and
watch what the loop does, all without waiting in real time. It checks every setpoint against
the configured envelope and keeps everything it was sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from controller.backends.base import BackendInfo, BackendObservation
from core.clock import FakeClock
from core.errors import BackendUnavailableError, SafetyLimitError, TransportTimeoutError
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint

ObservationScript = Callable[[int, Setpoint], Mapping[str, float]]
LatencyScript = Callable[[int], float]

FIELDS = ("synchrony", "weight_mv", "charge_mv_ms")


def _default_observation(seq: int, sp: Setpoint) -> Mapping[str, float]:
    return {
        "synchrony": 0.2 if sp.is_on else 0.7,
        "weight_mv": 260.0,
        "charge_mv_ms": 0.0,
    }


class ScriptedConnection:
    """A connection whose backend's behaviour per step is scripted.

    Args:
        clock: The clock the loop under test uses; each step advances it by its latency.
        latency_s: Step number (1-based) → seconds the observation takes to arrive.
        observe: ``(step number, setpoint)`` → observation fields.
        unreachable_from: From this step number on, ``step`` raises
            :class:`BackendUnavailableError`.
        fields: Advertised observation field names.
        lockstep: Describe itself as a lockstep backend (kind ``loopback``: its "tissue" waits
            for the controller, like a simulator) instead of real-time tissue (kind
            ``serial``, like a device: the default, so the deadline rules are exercised).
    """

    def __init__(
        self,
        clock: FakeClock,
        latency_s: LatencyScript = lambda seq: 0.001,
        observe: ObservationScript = _default_observation,
        unreachable_from: int | None = None,
        fields: tuple[str, ...] = FIELDS,
        lockstep: bool = False,
    ) -> None:
        self.clock = clock
        self.lockstep = lockstep
        self.latency_s = latency_s
        self.observe = observe
        self.unreachable_from = unreachable_from
        self.fields = fields
        self.envelope: SafetyEnvelope | None = None
        self.sent: list[Setpoint] = []
        self.stop_reasons: list[str] = []
        self.closed = False
        self._seq = 0
        self._t_model_ms = 0.0

    def hello(self, client_name: str) -> BackendInfo:
        """Describe the scripted backend."""
        kind = "loopback" if self.lockstep else "serial"
        return BackendInfo(
            kind, "ScriptedConnection", self.fields, "model", 20.0, True, lockstep=self.lockstep
        )

    def configure(self, envelope: SafetyEnvelope, period_ms: float) -> str:
        """Remember the envelope to check setpoints against."""
        self.envelope = envelope
        return envelope.sha256()

    def reset(self, seed: int | None) -> None:
        """Restart the step count."""
        self._seq = 0
        self._t_model_ms = 0.0

    def step(
        self, setpoint: Setpoint, duration_ms: float, timeout_s: float, want_spikes: bool = False
    ) -> BackendObservation:
        """Record the setpoint, advance the clock by the scripted latency, return the fields."""
        if self.envelope is None:
            raise BackendUnavailableError("Expected configure before step, actual none")
        env = self.envelope
        if not (
            math.isfinite(setpoint.amplitude) and 0.0 <= setpoint.amplitude <= env.amplitude_max
        ):
            raise SafetyLimitError(
                f"Expected amplitude in [0, {env.amplitude_max}], actual {setpoint.amplitude}"
            )
        self._seq += 1
        if self.unreachable_from is not None and self._seq >= self.unreachable_from:
            raise BackendUnavailableError(f"Expected a reply to step {self._seq}, actual no route")
        self.sent.append(setpoint)
        latency = self.latency_s(self._seq)
        if latency > timeout_s:
            self.clock.advance(timeout_s)
            raise TransportTimeoutError(
                f"Expected an observation within {timeout_s * 1000:.1f} ms, actual none"
            )
        self.clock.advance(latency)
        self._t_model_ms += duration_ms
        return BackendObservation(
            self._seq,
            self._t_model_ms,
            duration_ms,
            dict(self.observe(self._seq, setpoint)),
            setpoint if setpoint.is_on else None,
        )

    def stop(self, reason: str) -> None:
        """Record the stop."""
        self.stop_reasons.append(reason)

    def close(self) -> None:
        """Record the close."""
        self.closed = True
