"""Every message of protocol version 1, as frozen dataclasses validated on construction.

Requests go from the controller (client) to a backend; each is answered by exactly one reply.
The ``TYPE`` class attribute is the message's ``type`` tag on the wire. ``docs/protocol.md``
§4 is the normative description of every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from core.errors import ProtocolError
from protocol._validate import (
    MAX_NAME_LEN,
    check_bool,
    check_choice,
    check_float,
    check_float_map,
    check_hex,
    check_int,
    check_known_hex,
    check_options,
    check_text,
)
from protocol.schema import (
    HASH_HEX_LEN,
    Capabilities,
    ConfigValue,
    ParamSpec,
    SpikeWindow,
    WireEnvelope,
)

#: The protocol version this package speaks (the ``v`` field of every message).
PROTOCOL_VERSION = 1

BackendKind = Literal["sim", "serial", "replay", "loopback"]
BACKEND_KINDS: tuple[str, ...] = ("sim", "serial", "replay", "loopback")

SessionState = Literal["idle", "hello", "configured", "running", "stopped"]
SESSION_STATES: tuple[str, ...] = ("idle", "hello", "configured", "running", "stopped")

#: Every error code a backend may send, with its meaning (see docs/protocol.md §6).
ERROR_CODES: dict[str, str] = {
    "bad_message": "Not msgpack, over a decode limit, not a map, a bad key or field.",
    "non_finite": "A number is NaN or Inf.",
    "out_of_range": "A number lies outside the static range of its field.",
    "unsupported_version": "v is not the integer 1 (the protocol version spoken here).",
    "unknown_type": "The type names no message, or a reply was sent as a request.",
    "busy": "Another client controls the backend.",
    "no_session": "The session id is unknown or the session has ended (timed out, bye).",
    "bad_state": "The request is not allowed in the session's current state.",
    "bad_config": "A configure option or control period is invalid for this backend.",
    "envelope_rejected": "The envelope's hash is wrong or its limits exceed the advertised ones.",
    "invalid_stimulus": "The stimulus does not name exactly the advertised parameters.",
    "limit_exceeded": "A stimulus value lies outside the advertised or configured limits.",
    "backend_fault": "The backend failed (diverged, device fault); stimulation was stopped.",
}

#: Length of a session id: 32 lower-case hex digits (128 random bits).
SESSION_ID_LEN = 32

_MAX_UINT64 = 2**64 - 1
_INF = math.inf
_isfinite = math.isfinite


def _check_session(name: str, value: object) -> str:
    return check_known_hex(name, value, SESSION_ID_LEN)


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Hello:
    """Open a session and become the controlling client.

    Args:
        client_name: Who is asking, for logs (``neuroloop-controller``).
    """

    TYPE: ClassVar[str] = "hello"
    client_name: str

    def __post_init__(self) -> None:
        check_text("hello.client_name", self.client_name, MAX_NAME_LEN, 1)


@dataclass(frozen=True)
class Configure:
    """Set the session's control period, safety envelope and backend options.

    Args:
        session_id: From the ``welcome`` reply.
        control_period_ms: Intended control period (ms), within the advertised durations.
        envelope: The controller's envelope; stimulation outside it is refused.
        options: Backend-specific options named in ``capabilities.config_options``.
    """

    TYPE: ClassVar[str] = "configure"
    session_id: str
    control_period_ms: float
    envelope: WireEnvelope
    options: dict[str, ConfigValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_session("configure.session_id", self.session_id)
        object.__setattr__(
            self,
            "control_period_ms",
            check_float("configure.control_period_ms", self.control_period_ms, 1e-6, 3.6e6),
        )
        if not isinstance(self.envelope, WireEnvelope):
            raise ProtocolError(f"Expected configure.envelope, actual {self.envelope!r}")
        object.__setattr__(self, "options", check_options("configure.options", self.options))


@dataclass(frozen=True)
class Reset:
    """Start (or restart) a run from the initial state; stimulation is off after a reset.

    Args:
        session_id: From the ``welcome`` reply.
        seed: Seed of every random draw of the backend, or ``None`` for the configured seed.
    """

    TYPE: ClassVar[str] = "reset"
    session_id: str
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_session("reset.session_id", self.session_id)
        if self.seed is not None:
            check_int("reset.seed", self.seed, 0, 2**63 - 1)


@dataclass(frozen=True)
class Step:
    """Apply a stimulus for ``duration_ms`` and return the window's observation.

    Args:
        session_id: From the ``welcome`` reply.
        stimulus: One value per advertised stimulation parameter, or ``None`` for "off".
        duration_ms: Window length (ms), within the advertised durations.
        want_spikes: Ask for the window's spikes (only if ``supports_spikes``).
    """

    TYPE: ClassVar[str] = "step"
    session_id: str
    stimulus: dict[str, float] | None
    duration_ms: float
    want_spikes: bool = False

    def __post_init__(self) -> None:
        _check_session("step.session_id", self.session_id)
        if self.stimulus is not None:
            object.__setattr__(self, "stimulus", check_float_map("step.stimulus", self.stimulus))
        duration_ms = self.duration_ms
        # Fast path for the common case (a finite float in range; NaN fails the comparison);
        # anything else goes through check_float, which converts or raises.
        if type(duration_ms) is not float or not 1e-6 <= duration_ms <= 3.6e6:
            object.__setattr__(
                self, "duration_ms", check_float("step.duration_ms", duration_ms, 1e-6, 3.6e6)
            )
        if self.want_spikes is not False and self.want_spikes is not True:
            check_bool("step.want_spikes", self.want_spikes)


@dataclass(frozen=True)
class GetStatus:
    """Ask for the backend's status; allowed from any client, with or without a session.

    Args:
        session_id: The caller's session, or ``None`` for a read-only monitor.
    """

    TYPE: ClassVar[str] = "get_status"
    session_id: str | None = None

    def __post_init__(self) -> None:
        if self.session_id is not None:
            _check_session("get_status.session_id", self.session_id)


@dataclass(frozen=True)
class Heartbeat:
    """Keep the session alive when no other request is due.

    Args:
        session_id: From the ``welcome`` reply.
    """

    TYPE: ClassVar[str] = "heartbeat"
    session_id: str

    def __post_init__(self) -> None:
        _check_session("heartbeat.session_id", self.session_id)


@dataclass(frozen=True)
class Stop:
    """Stop stimulation now (safe stop); the session stays open in state ``stopped``.

    Args:
        session_id: From the ``welcome`` reply.
        reason: Why, for the backend's log.
    """

    TYPE: ClassVar[str] = "stop"
    session_id: str
    reason: str = "client request"

    def __post_init__(self) -> None:
        _check_session("stop.session_id", self.session_id)
        check_text("stop.reason", self.reason, 200)


@dataclass(frozen=True)
class Bye:
    """Stop stimulation and close the session, freeing the backend for another client.

    Args:
        session_id: From the ``welcome`` reply.
    """

    TYPE: ClassVar[str] = "bye"
    session_id: str

    def __post_init__(self) -> None:
        _check_session("bye.session_id", self.session_id)


# ------------------------------------------------------------------------------ replies


@dataclass(frozen=True)
class Welcome:
    """Reply to ``hello``: the session and everything the backend offers.

    Args:
        session_id: The new session's id (32 hex digits).
        backend_kind: ``sim``, ``serial``, ``replay`` or ``loopback`` (test backend).
        backend_name: Free text naming the implementation (``SimulatorBackend``).
        capabilities: Parameters, observation fields, durations, options.
        limits_hash: :meth:`Capabilities.limits_hash` of the advertised limits.
        session_timeout_ms: A session with no request for this long is ended and stimulation
            stops.
        heartbeat_interval_ms: Send a request at least this often (a third of the timeout).
    """

    TYPE: ClassVar[str] = "welcome"
    session_id: str
    backend_kind: BackendKind
    backend_name: str
    capabilities: Capabilities
    limits_hash: str
    session_timeout_ms: float
    heartbeat_interval_ms: float

    def __post_init__(self) -> None:
        _check_session("welcome.session_id", self.session_id)
        check_choice("welcome.backend_kind", self.backend_kind, BACKEND_KINDS)
        check_text("welcome.backend_name", self.backend_name, MAX_NAME_LEN, 1)
        if not isinstance(self.capabilities, Capabilities):
            raise ProtocolError(f"Expected welcome.capabilities, actual {self.capabilities!r}")
        check_hex("welcome.limits_hash", self.limits_hash, HASH_HEX_LEN)
        timeout = check_float("welcome.session_timeout_ms", self.session_timeout_ms, 1.0, 3.6e6)
        beat = check_float(
            "welcome.heartbeat_interval_ms", self.heartbeat_interval_ms, 0.1, timeout
        )
        object.__setattr__(self, "session_timeout_ms", timeout)
        object.__setattr__(self, "heartbeat_interval_ms", beat)


@dataclass(frozen=True)
class Configured:
    """Reply to ``configure``: the envelope accepted and the limits now in force.

    Args:
        session_id: The session.
        envelope_hash: Echo of the accepted envelope's hash.
        limits: Effective limits: the intersection of advertised and envelope ranges.
        control_period_ms: The control period in force.
    """

    TYPE: ClassVar[str] = "configured"
    session_id: str
    envelope_hash: str
    limits: tuple[ParamSpec, ...]
    control_period_ms: float

    def __post_init__(self) -> None:
        _check_session("configured.session_id", self.session_id)
        check_hex("configured.envelope_hash", self.envelope_hash, HASH_HEX_LEN)
        if not isinstance(self.limits, tuple) or not all(
            isinstance(s, ParamSpec) for s in self.limits
        ):
            raise ProtocolError(f"Expected configured.limits as ParamSpecs, actual {self.limits!r}")
        object.__setattr__(
            self,
            "control_period_ms",
            check_float("configured.control_period_ms", self.control_period_ms, 1e-6, 3.6e6),
        )


@dataclass(frozen=True)
class Observation:
    """Reply to ``step``: the window's named observation floats.

    Args:
        seq: Step number since the last reset (the first step is 1).
        t_model_ms: Backend time at the end of the window (model time for ``sim``).
        duration_ms: The window's length.
        fields: One finite float per advertised observation field.
        applied: The stimulus actually applied, or ``None`` if stimulation was off.
        spikes: The window's spikes if asked for and supported, else ``None``.
    """

    TYPE: ClassVar[str] = "observation"
    seq: int
    t_model_ms: float
    duration_ms: float
    fields: dict[str, float]
    applied: dict[str, float] | None = None
    spikes: SpikeWindow | None = None

    def __post_init__(self) -> None:
        seq = self.seq
        if type(seq) is not int or not 0 <= seq <= _MAX_UINT64:
            check_int("observation.seq", seq)
        # Fast paths for finite floats (NaN and Inf fail isfinite or the range comparison);
        # anything else goes through check_float, which converts or raises.
        t_model_ms = self.t_model_ms
        if type(t_model_ms) is not float or not _isfinite(t_model_ms):
            object.__setattr__(
                self, "t_model_ms", check_float("observation.t_model_ms", t_model_ms)
            )
        duration_ms = self.duration_ms
        if type(duration_ms) is not float or not 0.0 <= duration_ms < _INF:
            object.__setattr__(
                self, "duration_ms", check_float("observation.duration_ms", duration_ms, 0.0)
            )
        object.__setattr__(self, "fields", check_float_map("observation.fields", self.fields))
        if self.applied is not None:
            object.__setattr__(
                self, "applied", check_float_map("observation.applied", self.applied)
            )
        if self.spikes is not None and not isinstance(self.spikes, SpikeWindow):
            raise ProtocolError(f"Expected observation.spikes, actual {self.spikes!r}")


@dataclass(frozen=True)
class Status:
    """Reply to ``reset``, ``get_status``, ``heartbeat``, ``stop`` and ``bye``.

    Args:
        state: ``idle``, ``hello``, ``configured``, ``running`` or ``stopped``.
        session_id: The controlling session, or ``None`` when idle.
        seq: Steps since the last reset.
        t_model_ms: Backend time now.
        stimulating: Whether a non-off stimulus is in force.
        stop_reason: Why stimulation last stopped (empty if it never did).
    """

    TYPE: ClassVar[str] = "status"
    state: SessionState
    session_id: str | None
    seq: int
    t_model_ms: float
    stimulating: bool
    stop_reason: str = ""

    def __post_init__(self) -> None:
        check_choice("status.state", self.state, SESSION_STATES)
        if self.session_id is not None:
            _check_session("status.session_id", self.session_id)
        check_int("status.seq", self.seq)
        object.__setattr__(self, "t_model_ms", check_float("status.t_model_ms", self.t_model_ms))
        check_bool("status.stimulating", self.stimulating)
        check_text("status.stop_reason", self.stop_reason, 200)


@dataclass(frozen=True)
class ErrorReply:
    """Reply to any request that failed.

    Args:
        code: One of :data:`ERROR_CODES`.
        message: What was expected and what arrived.
        stopped: Whether the backend stopped stimulation because of this error.
    """

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    stopped: bool = False

    def __post_init__(self) -> None:
        check_choice("error.code", self.code, tuple(ERROR_CODES))
        check_text("error.message", self.message)
        check_bool("error.stopped", self.stopped)


Request = Hello | Configure | Reset | Step | GetStatus | Heartbeat | Stop | Bye
Reply = Welcome | Configured | Observation | Status | ErrorReply
Message = Request | Reply

REQUEST_TYPES: tuple[type[Request], ...] = (
    Hello,
    Configure,
    Reset,
    Step,
    GetStatus,
    Heartbeat,
    Stop,
    Bye,
)
REPLY_TYPES: tuple[type[Reply], ...] = (Welcome, Configured, Observation, Status, ErrorReply)

__all__ = [
    "BACKEND_KINDS",
    "ERROR_CODES",
    "PROTOCOL_VERSION",
    "REPLY_TYPES",
    "REQUEST_TYPES",
    "SESSION_STATES",
    "BackendKind",
    "Bye",
    "ConfigValue",
    "Configure",
    "Configured",
    "ErrorReply",
    "GetStatus",
    "Heartbeat",
    "Hello",
    "Message",
    "Observation",
    "Reply",
    "Request",
    "Reset",
    "SessionState",
    "Status",
    "Step",
    "Welcome",
]
