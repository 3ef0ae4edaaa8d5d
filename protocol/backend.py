"""The base class of every backend: session state machine, validation and limit enforcement.

:class:`Backend` turns request bytes into reply bytes without touching a socket (the
:class:`~protocol.server.BackendServer` moves the bytes). Its public methods do everything a
conforming backend must do: decode and validate, admit one controlling client, walk the
session state machine, refuse stimulation outside the advertised limits and the configured
envelope, stop stimulation on every fault and when the session times out, and log each of
these with a reason. Subclasses implement only the protected hooks ``_on_configure``,
``_on_reset``, ``_on_step`` and ``_on_stop``.
"""

from __future__ import annotations

import abc
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import structlog

from core.clip import MAX_LOG_CHARS, clip_text
from core.clock import TimeSource
from core.errors import ConfigError, ProtocolError, SafetyError, did_you_mean
from protocol.codec import pack, unpack_request
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.floors import check_timing
from protocol.envelope.monitor import EnvelopeMonitor
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.wire import amplitude_scale, envelope_from_wire
from protocol.limits import RefusalError, check_envelope, check_fields, check_stimulus, is_on
from protocol.messages import (
    BackendKind,
    Bye,
    Configure,
    Configured,
    ErrorReply,
    GetStatus,
    Heartbeat,
    Hello,
    Observation,
    Reply,
    Request,
    Reset,
    SessionState,
    Status,
    Step,
    Stop,
    Welcome,
)
from protocol.schema import Capabilities, ConfigValue, ParamSpec, SpikeWindow


@dataclass(frozen=True)
class StepResult:
    """What a backend's ``_on_step`` hook returns.

    Args:
        fields: One value per advertised observation field (checked finite by the base class).
        t_model_ms: Backend time at the end of the window.
        spikes: The window's spikes, if they were asked for.
    """

    fields: Mapping[str, float]
    t_model_ms: float
    spikes: SpikeWindow | None = None


#: Longest ``message`` of an error reply (characters; the wire allows 2000).
_MAX_REPLY_MESSAGE_CHARS = 1900
#: Longest ``stop_reason`` (characters; the wire allows 200).
_MAX_STOP_REASON_CHARS = 200


class Backend(abc.ABC):
    """A protocol backend (simulator, serial stimulator, replay, loopback).

    A session's silence is measured from its own traffic: the time since the later of its
    last request's arrival and its reply, minus the time the server spent serving other
    connections meanwhile (reported through :meth:`served`), of which at most
    ``session_timeout_s`` is discounted. Another peer keeping the server busy therefore cannot
    end the session, and a session whose controller fell silent still ends within
    ``2 * session_timeout_s`` whatever other peers send (docs/protocol.md §7.2).

    Args:
        session_timeout_s: A session silent for this long ends and stimulation stops.
        clock: Monotonic clock in seconds (the convention of :mod:`core.clock`; a
            :class:`core.clock.FakeClock` in tests).
    """

    #: The ``backend_kind`` sent in ``welcome``.
    kind: ClassVar[BackendKind]

    def __init__(
        self, *, session_timeout_s: float = 2.0, clock: TimeSource = time.monotonic
    ) -> None:
        if not (math.isfinite(session_timeout_s) and 0.01 <= session_timeout_s <= 3600.0):
            raise ConfigError(
                f"Expected session_timeout_s in [0.01, 3600], actual {session_timeout_s!r}"
            )
        self.session_timeout_s = session_timeout_s
        self._clock = clock
        self._log = structlog.get_logger().bind(backend=type(self).__name__, kind=self.kind)
        self._state: SessionState = "idle"
        self._session_id: str | None = None
        self._peer: bytes | None = None
        self._client_name = ""
        self._last_seen_s = 0.0
        self._excused_s = 0.0
        self._ended_sessions: dict[str, str] = {}
        self._limits: dict[str, ParamSpec] = {}
        self._envelope_hash = ""
        self._monitor: EnvelopeMonitor | None = None
        self._envelope: SafetyEnvelope | None = None
        self._roles: dict[str, str] = {}
        self._amplitude_per_unit = 1.0
        self._seq = 0
        self._t_model_ms = 0.0
        self._stimulating = False
        self._stop_reason = ""

    # ------------------------------------------------------------------ hooks (subclasses)

    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend offers (the same object every call)."""

    @abc.abstractmethod
    def _on_configure(self, options: Mapping[str, ConfigValue], control_period_ms: float) -> None:
        """Apply backend options. Raise :class:`ConfigError` naming a bad option."""

    @abc.abstractmethod
    def _on_reset(self, seed: int | None) -> float:
        """Return to the initial state with stimulation off; return the backend time (ms)."""

    @abc.abstractmethod
    def _on_step(
        self, stimulus: Mapping[str, float] | None, duration_ms: float, want_spikes: bool
    ) -> StepResult:
        """Apply ``stimulus`` (already checked against every limit) for ``duration_ms``.

        Raise :class:`SafetyLimitError` for a stimulus the backend cannot deliver safely
        (reply ``limit_exceeded``), :class:`ConfigError` for a request value it cannot honour
        (``out_of_range``); any other exception is a ``backend_fault``. All three stop
        stimulation.
        """

    @abc.abstractmethod
    def _on_stop(self, reason: str) -> None:
        """Stop stimulation now. Called on every stop path; must be idempotent."""

    def _on_close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources; called once by :meth:`close` after a final safe stop."""

    def _stimulation_lost(self) -> str | None:
        """Why stimulation stopped on its own since the last step, or ``None`` if it did not.

        Called while a stimulus is in force, before each ``status`` reply. A real-time backend
        whose output can stop between steps (a device's lease lapsed, a latched fault, a lost
        link) returns the reason; the base class then records the safe stop and moves
        ``running`` to ``stopped``, so ``status`` never reports stimulation that is not there
        (docs/protocol.md §4.2 ``status``, §7.3).
        """
        return None

    # --------------------------------------------------------------------- public API

    @property
    def state(self) -> SessionState:
        """The session state (``idle`` when no client controls the backend)."""
        return self._state

    @property
    def envelope(self) -> SafetyEnvelope | None:
        """The envelope of the current ``configure`` (validated, in envelope units)."""
        return self._envelope

    @property
    def session_id(self) -> str | None:
        """The controlling session's id, or ``None``."""
        return self._session_id

    @property
    def stimulating(self) -> bool:
        """Whether a non-off stimulus is in force."""
        return self._stimulating

    def now_s(self) -> float:
        """The backend's monotonic clock (seconds), for :meth:`served`."""
        return self._clock()

    def served(self, peer: bytes, started_s: float) -> None:
        """Record that the server was busy with one message of ``peer`` since ``started_s``.

        The server calls it after answering (or dropping) each message, with the
        :meth:`now_s` read when the message was received. Time spent on a connection other
        than the controlling one does not count as the session's silence, up to
        ``session_timeout_s`` in all between two messages of the session.

        Args:
            peer: Transport identity of the sender.
            started_s: :meth:`now_s` when the server took the message.
        """
        if self._session_id is None or peer == self._peer:
            return
        busy_s = self._clock() - started_s
        if busy_s > 0.0:
            self._excused_s = min(self.session_timeout_s, self._excused_s + busy_s)

    def handle(self, peer: bytes, data: bytes) -> bytes:
        """Answer one request.

        Decoding is bounded by :mod:`protocol.wire_limits`, and every error message and log
        field is clipped, so no request costs more than a bounded amount of time and text.

        Args:
            peer: Transport identity of the sender (the ROUTER routing id).
            data: The request bytes.

        Returns:
            The reply bytes (always exactly one reply, an ``error`` if the request failed).
        """
        self.check_timeout()
        try:
            request_id, request = unpack_request(data)
        except ProtocolError as err:
            stopped = False
            if peer == self._peer and self._state == "running":
                self._safe_stop(f"malformed request from the controlling client: {err}")
                self._state = "stopped"
                stopped = True
            if self._session_id is not None and peer == self._peer:
                self._seen()  # a malformed request is still a sign of life of its client
            reason = str(err)
            self._log.warning(
                "request_rejected",
                code=err.code,
                reason=clip_text(reason, MAX_LOG_CHARS),
                stopped=stopped,
                bytes=len(data),
            )
            message = clip_text(reason, _MAX_REPLY_MESSAGE_CHARS)
            reply: Reply = ErrorReply(err.code, message, stopped)
            return pack(err.request_id or 0, reply)
        return pack(request_id, self.handle_request(peer, request))

    def handle_request(self, peer: bytes, request: Request) -> Reply:
        """Answer one decoded request (the socket-free core of :meth:`handle`)."""
        try:
            return self._dispatch(peer, request)
        except RefusalError as refusal:
            return self._refuse(request, refusal)
        finally:
            # The session's silence is measured from the last reply too, so time the backend
            # spends working (a long simulation window) never counts against its client.
            if self._session_id is not None and peer == self._peer:
                self._seen()

    def _refuse(self, request: Request, refusal: RefusalError) -> ErrorReply:
        stopped = False
        if refusal.stop and self._state == "running":
            self._safe_stop(f"{refusal.code}: {refusal}")
            self._state = "stopped"
            stopped = True
        self._log.warning(
            "request_rejected",
            request=request.TYPE,
            code=refusal.code,
            reason=clip_text(str(refusal), MAX_LOG_CHARS),
            stopped=stopped,
        )
        return ErrorReply(
            refusal.code, clip_text(str(refusal), _MAX_REPLY_MESSAGE_CHARS), stopped
        )

    def check_timeout(self) -> None:
        """End the session (and stop stimulation) if its client went silent too long.

        Silence is the time since the session's last request or reply, minus the time spent
        serving other connections meanwhile (see :meth:`served`).
        """
        if self._session_id is None:
            return
        elapsed_s = self._clock() - self._last_seen_s
        silent_s = elapsed_s - self._excused_s
        if silent_s > self.session_timeout_s:
            reason = (
                f"session timed out: no request for {silent_s:.3f} s "
                f"(limit {self.session_timeout_s:.3f} s"
                + (
                    f"; {self._excused_s:.3f} s spent serving other connections not counted)"
                    if self._excused_s > 0.0
                    else ")"
                )
            )
            self._log.warning(
                "session_timeout",
                session_id=self._session_id,
                silent_s=silent_s,
                excused_s=self._excused_s,
            )
            self._end_session(reason)

    def close(self) -> None:
        """Stop stimulation, end any session and release resources (idempotent)."""
        if self._session_id is not None:
            self._end_session("backend closing")
        else:
            self._safe_stop("backend closing")
        self._on_close()

    # ------------------------------------------------------------------- internals

    def _seen(self) -> None:
        """The controlling client was heard from now: its silence starts again."""
        self._last_seen_s = self._clock()
        self._excused_s = 0.0

    def _safe_stop(self, reason: str, requested: bool = False) -> None:
        try:
            self._on_stop(reason)
        except Exception as err:  # a failing stop hook must not hide the stop itself
            self._log.error(
                "stop_hook_failed",
                reason=clip_text(reason, MAX_LOG_CHARS),
                error=clip_text(repr(err), MAX_LOG_CHARS),
            )
        logged = clip_text(reason, MAX_LOG_CHARS)
        if self._stimulating:
            # The client asking for a stop is routine (info); any other stop of live
            # stimulation (timeout, refusal, malformed request) is a warning.
            log = self._log.info if requested else self._log.warning
            log("stimulation_stopped", reason=logged, was_on=True)
        else:
            self._log.debug("safe_stop", reason=logged, was_on=False)
        self._stimulating = False
        self._stop_reason = clip_text(reason, _MAX_STOP_REASON_CHARS)
        if self._monitor is not None:
            self._monitor.restart()

    def _end_session(self, reason: str) -> None:
        if self._session_id is not None:
            self._ended_sessions[self._session_id] = reason
            while len(self._ended_sessions) > 16:
                del self._ended_sessions[next(iter(self._ended_sessions))]
            self._log.info("session_closed", session_id=self._session_id, reason=reason)
        self._safe_stop(reason)
        self._session_id = None
        self._peer = None
        self._state = "idle"
        self._limits = {}
        self._envelope_hash = ""

    def _status(self) -> Status:
        if self._stimulating:
            lost = self._stimulation_lost()
            if lost is not None:
                self._safe_stop(lost)
                if self._state == "running":
                    self._state = "stopped"
        return Status(
            self._state,
            self._session_id,
            self._seq,
            self._t_model_ms,
            self._stimulating,
            self._stop_reason,
        )

    def _dispatch(self, peer: bytes, request: Request) -> Reply:
        if type(request) is Step:  # the hot path, tested first
            self._require_session(peer, request.session_id)
            return self._step(request)
        if isinstance(request, GetStatus):
            if request.session_id is not None and request.session_id == self._session_id:
                self._require_session(peer, request.session_id)
            return self._status()
        if isinstance(request, Hello):
            return self._hello(peer, request)
        self._require_session(peer, request.session_id)
        if isinstance(request, Configure):
            return self._configure(request)
        if isinstance(request, Reset):
            return self._reset(request)
        if isinstance(request, Step):
            return self._step(request)
        if isinstance(request, Stop):
            self._safe_stop(f"client stop: {request.reason}", requested=True)
            if self._state == "running":
                self._state = "stopped"
            return self._status()
        if isinstance(request, Heartbeat):
            return self._status()
        if isinstance(request, Bye):
            self._end_session("client said bye")
            return self._status()
        raise RefusalError("unknown_type", f"Expected a request, actual {request.TYPE}")

    def _require_session(self, peer: bytes, session_id: str) -> None:
        if session_id != self._session_id:
            ended = self._ended_sessions.get(session_id)
            detail = f" (it ended: {ended})" if ended else ""
            raise RefusalError(
                "no_session",
                f"Expected the active session id, actual {session_id!r}{detail}; send hello",
            )
        if peer != self._peer:
            raise RefusalError(
                "busy",
                "Expected requests of this session from the connection "
                "that opened it, actual another connection",
            )
        self._seen()

    def _hello(self, peer: bytes, request: Hello) -> Welcome:
        if self._session_id is not None:
            if peer != self._peer:
                raise RefusalError(
                    "busy",
                    f"Expected no controlling client, actual {self._client_name!r} holds "
                    f"session {self._session_id} in state {self._state}",
                )
            self._end_session("the same client sent hello again")
        self._session_id = secrets.token_hex(16)
        self._peer = peer
        self._client_name = request.client_name
        self._seen()
        self._state = "hello"
        self._log.info("session_opened", session_id=self._session_id, client=request.client_name)
        caps = self.capabilities()
        timeout_ms = self.session_timeout_s * 1000.0
        return Welcome(
            self._session_id,
            self.kind,
            type(self).__name__,
            caps,
            caps.limits_hash(),
            timeout_ms,
            timeout_ms / 3.0,
        )

    def _configure(self, request: Configure) -> Configured:
        if self._state not in ("hello", "configured", "stopped"):
            raise RefusalError(
                "bad_state",
                f"Expected configure in hello|configured|stopped, "
                f"actual state {self._state}; send stop first",
            )
        caps = self.capabilities()
        if not caps.min_duration_ms <= request.control_period_ms <= caps.max_duration_ms:
            raise RefusalError(
                "bad_config",
                f"Expected control_period_ms in [{caps.min_duration_ms:g}, "
                f"{caps.max_duration_ms:g}], actual {request.control_period_ms!r}",
            )
        limits = check_envelope(caps, request.envelope)
        try:
            envelope = envelope_from_wire(request.envelope)
            check_timing(
                envelope.domain,
                envelope.lease_periods,
                envelope.watchdog_periods,
                request.control_period_ms,
                "configure.envelope",
            )
            _, per_unit = amplitude_scale(request.envelope.limits)
        except ConfigError as err:
            raise RefusalError("envelope_rejected", str(err)) from err
        unknown = sorted(set(request.options) - set(caps.config_options))
        if unknown:
            hints = "".join(did_you_mean(name, caps.config_options) for name in unknown)
            raise RefusalError(
                "bad_config",
                f"Expected options among {list(caps.config_options)}, actual unknown "
                f"{unknown}.{hints}",
            )
        self._envelope = envelope  # for hooks that pass the envelope on (a device's ARM)
        try:
            self._on_configure(request.options, request.control_period_ms)
        except (ConfigError, ValueError) as err:
            raise RefusalError("bad_config", str(err)) from err
        except Exception as err:
            raise RefusalError("backend_fault", f"configure failed: {err!r}", stop=True) from err
        self._limits = {spec.name: spec for spec in limits}
        self._envelope_hash = request.envelope.hash
        self._monitor = EnvelopeMonitor(envelope)
        self._roles = {str(s.role): s.name for s in limits if s.role != "other"}
        self._amplitude_per_unit = per_unit
        self._state = "configured"
        self._seq = 0
        self._log.info(
            "session_configured",
            envelope_hash=request.envelope.hash,
            control_period_ms=request.control_period_ms,
            options=request.options,
        )
        return Configured(
            request.session_id, request.envelope.hash, limits, request.control_period_ms
        )

    def _reset(self, request: Reset) -> Status:
        if self._state not in ("configured", "running", "stopped"):
            raise RefusalError(
                "bad_state",
                f"Expected reset in configured|running|stopped, "
                f"actual state {self._state}; send configure first",
            )
        self._safe_stop("reset")
        try:
            t_ms = self._on_reset(request.seed)
        except Exception as err:
            self._state = "stopped"
            raise RefusalError("backend_fault", f"reset failed: {err!r}") from err
        self._t_model_ms = float(t_ms)
        self._seq = 0
        self._state = "running"
        return self._status()

    def _step(self, request: Step) -> Observation:
        if self._state != "running":
            raise RefusalError(
                "bad_state",
                f"Expected step in state running, actual {self._state}; send reset first",
            )
        caps = self.capabilities()
        if not caps.min_duration_ms <= request.duration_ms <= caps.max_duration_ms:
            raise RefusalError(
                "out_of_range",
                f"Expected step.duration_ms in "
                f"[{caps.min_duration_ms:g}, {caps.max_duration_ms:g}], actual "
                f"{request.duration_ms!r}",
                stop=True,
            )
        if request.want_spikes and not caps.supports_spikes:
            raise RefusalError(
                "bad_message",
                "Expected want_spikes false: this backend does not report spikes",
                stop=True,
            )
        stimulus = request.stimulus
        if stimulus is not None:
            check_stimulus(caps, self._limits, stimulus)
        monitor = self._monitor
        if monitor is None:  # configure always sets it; a subclass that bypasses it is unsafe
            raise RefusalError("bad_state", "Expected a configured envelope before step", stop=True)
        setpoint = self._check_envelope_rules(monitor, stimulus)
        try:
            result = self._on_step(stimulus, request.duration_ms, request.want_spikes)
        except SafetyError as err:
            raise RefusalError("limit_exceeded", str(err), stop=True) from err
        except ConfigError as err:
            raise RefusalError("out_of_range", str(err), stop=True) from err
        except Exception as err:
            raise RefusalError("backend_fault", f"step failed: {err!r}", stop=True) from err
        fields = check_fields(caps, result.fields)
        monitor.accept(setpoint, request.duration_ms / 1000.0)
        self._seq += 1
        self._t_model_ms = float(result.t_model_ms)
        self._stimulating = stimulus is not None and is_on(caps, stimulus)
        return Observation(
            self._seq,
            self._t_model_ms,
            request.duration_ms,
            fields,
            stimulus,  # copied (and checked) by the Observation, like every map field
            result.spikes if request.want_spikes else None,
        )

    def _check_envelope_rules(
        self, monitor: EnvelopeMonitor, stimulus: Mapping[str, float] | None
    ) -> Setpoint:
        """Refuse a stimulus that breaks any rule of the configured envelope (``limit_exceeded``).

        Ranges were checked by :func:`check_stimulus`; this runs the whole envelope (charge,
        density, duty, slew, frequency and width steps, soft start) with
        :class:`~protocol.envelope.monitor.EnvelopeMonitor`, the same check the controller
        runs on its own output.
        """
        if stimulus is None:
            previous = monitor.previous
            return Setpoint(
                amplitude=0.0,
                frequency_hz=previous.frequency_hz,
                pulse_width_us=previous.pulse_width_us,
            )
        roles = self._roles
        setpoint = Setpoint(
            amplitude=stimulus[roles["amplitude"]] / self._amplitude_per_unit,
            frequency_hz=stimulus[roles["frequency"]],
            pulse_width_us=stimulus[roles["pulse_width"]],
        )
        breaches = monitor.breaches(setpoint)
        if breaches:
            raise RefusalError(
                "limit_exceeded",
                "Expected a stimulus inside the configured envelope, actual "
                + "; ".join(map(str, breaches)),
                stop=True,
            )
        return setpoint
