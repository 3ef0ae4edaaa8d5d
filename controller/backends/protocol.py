"""A connection to any protocol backend, over ZeroMQ or in this process: one mapping, written once.

:class:`ProtocolConnection` speaks the protocol's session calls through a
:class:`~protocol.client.SessionClient`: :class:`~protocol.client.BackendClient` reaches a
backend over ZeroMQ (:class:`~controller.backends.zmq.ZmqConnection`);
:class:`~protocol.inprocess.InProcessClient` calls a backend object in this process
(:class:`~controller.backends.inprocess.InProcessConnection`). Either way the controller's
setpoint is mapped onto the backend's parameters here and nowhere else.

Stimulation parameters are matched by their advertised *role* (amplitude, frequency, pulse
width), so the controller works with any backend naming. Amplitude units are converted between
the envelope's unit and the backend's (``mV`` for the simulator; ``mA``/``uA`` for devices). The
envelope sent in ``configure`` uses the backend's names; parameters with role ``other`` (the
simulator's ``ei_offset_ms``) are pinned at 0 in it. The backend's echo of the wire hash is
checked before the controller's canonical hash is returned to the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from controller.backends.base import BackendInfo, BackendObservation
from core.errors import ConfigError, NeuroLoopError, ProtocolError, SafetyError
from protocol.client import SessionClient
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.wire import AMPLITUDE_UNITS, envelope_to_wire
from protocol.schema import ParamSpec

#: Amplitude units → (envelope domain, factor from envelope unit to backend unit).
#: Backend kinds that may be stepped faster than real time.
FAST_KINDS = ("sim", "loopback", "replay")
#: Backend kinds whose tissue waits for the controller (model time advances only inside
#: ``step``; docs/protocol.md, ``welcome.backend_kind``). Every other kind (``serial``: a device)
#: is treated as real-time tissue, whose deadlines protect someone.
LOCKSTEP_KINDS = ("sim", "loopback", "replay")


class ProtocolConnection:
    """A connection to a protocol backend through ``client``.

    Args:
        client: The session client (its transport decides where the backend runs).
        timeout_s: Deadline of the handshake calls (hello, configure, reset).
        options: Backend-specific ``configure`` options (e.g. network size for the simulator).
    """

    def __init__(
        self,
        client: SessionClient,
        timeout_s: float = 5.0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = client.address
        self.timeout_s = timeout_s
        self.options = dict(options or {})
        self.client = client
        self._roles: dict[str, ParamSpec] = {}
        self._pinned: dict[str, float] = {}
        self._other: list[ParamSpec] = []
        self._factor = 1.0
        self._closed = False
        self._log = structlog.get_logger("controller.backends")

    def hello(self, client_name: str) -> BackendInfo:
        """Open the session and read the capabilities."""
        welcome = self.client.hello(self.timeout_s)
        caps = welcome.capabilities
        roles: dict[str, ParamSpec] = {str(spec.role): spec for spec in caps.stim_params}
        missing = [r for r in ("amplitude", "frequency", "pulse_width") if r not in roles]
        if missing:
            raise ProtocolError(
                f"Expected stimulation parameters with roles amplitude, frequency and "
                f"pulse_width, actual {[(s.name, s.role) for s in caps.stim_params]}",
                "invalid_stimulus",
            )
        unit = roles["amplitude"].unit
        if unit not in AMPLITUDE_UNITS:
            raise ProtocolError(
                f"Expected an amplitude unit in {sorted(AMPLITUDE_UNITS)}, actual {unit!r}",
                "invalid_stimulus",
            )
        domain, self._factor = AMPLITUDE_UNITS[unit]
        self._roles = roles
        self._other = [spec for spec in caps.stim_params if spec.role == "other"]
        for spec in self._other:
            if not spec.min <= 0.0 <= spec.max:
                raise ProtocolError(
                    f"Expected extra parameter {spec.name!r} to accept 0 (the controller pins "
                    f"parameters it does not control at 0), actual [{spec.min}, {spec.max}]",
                    "invalid_stimulus",
                )
        self._pinned = {spec.name: 0.0 for spec in self._other}
        return BackendInfo(
            welcome.backend_kind,
            welcome.backend_name,
            caps.observation_fields,
            domain,
            caps.control_period_ms,
            welcome.backend_kind in FAST_KINDS,
            welcome.backend_kind in LOCKSTEP_KINDS,
            caps.supports_spikes,
            caps.max_duration_ms,
        )

    def configure(self, envelope: SafetyEnvelope, period_ms: float) -> str:
        """Send the envelope in the backend's names and units; check the echoed hash."""
        welcome = self.client.welcome
        if welcome is not None and period_ms > welcome.session_timeout_ms / 2.0:
            raise ConfigError(
                f"Expected --period-ms <= {welcome.session_timeout_ms / 2.0:g} (half the "
                f"backend's session timeout of {welcome.session_timeout_ms:g} ms), actual "
                f"{period_ms:g}"
            )
        if welcome is None:
            raise ProtocolError("Expected hello before configure, actual none", "bad_state")
        wire = envelope_to_wire(envelope, welcome.capabilities)
        configured = self.client.configure(
            wire, control_period_ms=period_ms, options=self.options, timeout_s=self.timeout_s
        )
        if configured.envelope_hash != wire.hash:
            raise SafetyError(
                f"Expected the backend to echo envelope hash {wire.hash}, actual "
                f"{configured.envelope_hash}"
            )
        return envelope.sha256()

    def reset(self, seed: int | None) -> None:
        """Start a run (stimulation off)."""
        self.client.reset(seed, timeout_s=self.timeout_s)

    def step(
        self, setpoint: Setpoint, duration_ms: float, timeout_s: float, want_spikes: bool = False
    ) -> BackendObservation:
        """One window; ``None`` stimulus when the setpoint is off."""
        stimulus: dict[str, float] | None = None
        if setpoint.is_on:
            stimulus = {
                self._roles["amplitude"].name: setpoint.amplitude * self._factor,
                self._roles["frequency"].name: setpoint.frequency_hz,
                self._roles["pulse_width"].name: setpoint.pulse_width_us,
                **self._pinned,
            }
        obs = self.client.step(stimulus, duration_ms, want_spikes=want_spikes, timeout_s=timeout_s)
        applied = None
        if obs.applied is not None:
            applied = Setpoint(
                amplitude=obs.applied.get(self._roles["amplitude"].name, 0.0) / self._factor,
                frequency_hz=obs.applied.get(self._roles["frequency"].name, setpoint.frequency_hz),
                pulse_width_us=obs.applied.get(
                    self._roles["pulse_width"].name, setpoint.pulse_width_us
                ),
            )
        if want_spikes and obs.spikes is None:
            raise ProtocolError(
                "Expected spikes in the observation (want_spikes), actual none", "no_spikes"
            )
        return BackendObservation(
            obs.seq, obs.t_model_ms, obs.duration_ms, obs.fields, applied, spikes=obs.spikes
        )

    def stop(self, reason: str) -> None:
        """Stop stimulation; a lost backend stops by itself when the session times out."""
        if self.client.welcome is None:
            return  # no session was ever opened: nothing can be stimulating
        try:
            self.client.stop(reason, timeout_s=min(self.timeout_s, 0.5))
        except NeuroLoopError as err:
            self._log.warning("stop_not_acknowledged", reason=reason, error=str(err))

    def close(self) -> None:
        """Say bye (best effort) and close the socket; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.client.welcome is not None:
                self.client.bye(timeout_s=min(self.timeout_s, 0.5))
        except NeuroLoopError as err:
            self._log.warning("bye_not_acknowledged", error=str(err))
        finally:
            self.client.close()
