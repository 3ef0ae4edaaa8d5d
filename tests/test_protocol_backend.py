"""The Backend base class without sockets: state machine, limits, busy, timeout, faults."""

from __future__ import annotations

import math
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from core.clock import FakeClock
from protocol.codec import pack, to_wire, unpack_reply
from protocol.envelope.wire import envelope_to_wire
from protocol.loopback import LOOPBACK_CAPABILITIES, LOOPBACK_ENVELOPE, LoopbackBackend
from protocol.messages import (
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
    Status,
    Step,
    Stop,
    Welcome,
)
from protocol.schema import ParamSpec, WireEnvelope

PEER = b"controller"
OTHER = b"intruder"
ON = {"amplitude_mv": 2.0, "frequency_hz": 130.0, "pulse_width_us": 60.0}


def _narrow_envelope(amp_max: float = 5.0) -> WireEnvelope:
    envelope = replace(LOOPBACK_ENVELOPE, amplitude_max=amp_max)
    return envelope_to_wire(envelope, LOOPBACK_CAPABILITIES)


class Harness:
    """Drive a backend through handle() with real wire bytes."""

    def __init__(self, **options: int) -> None:
        self.clock = FakeClock(100.0)
        self.backend = LoopbackBackend(session_timeout_s=1.0, clock=self.clock)
        self.options = options
        self.session = ""
        self._id = 0

    def send(self, request: Request, peer: bytes = PEER) -> Reply:
        self._id += 1
        rid, reply = unpack_reply(self.backend.handle(peer, pack(self._id, request)))
        assert rid == self._id
        return reply

    def open(self) -> Welcome:
        welcome = self.send(Hello("test"))
        assert isinstance(welcome, Welcome)
        self.session = welcome.session_id
        return welcome

    def run(self, envelope: WireEnvelope | None = None) -> None:
        self.open()
        configured = self.send(
            Configure(self.session, 20.0, envelope or _narrow_envelope(), dict(self.options))
        )
        assert isinstance(configured, Configured), configured
        assert isinstance(self.send(Reset(self.session, 1)), Status)
        self.warm_up()

    def warm_up(self) -> None:
        """One 100 ms off step: the envelope's soft start then allows ``ON`` (2 of 5 mV)."""
        assert isinstance(self.step(None, 100.0), Observation)

    def step(self, stimulus: dict[str, float] | None = ON, duration_ms: float = 20.0) -> Reply:
        return self.send(Step(self.session, stimulus, duration_ms))


def _error(reply: Reply, code: str) -> ErrorReply:
    assert isinstance(reply, ErrorReply), reply
    assert reply.code == code, reply
    return reply


def test_full_session_walks_the_state_machine() -> None:
    h = Harness()
    welcome = h.open()
    assert welcome.backend_kind == "loopback"
    assert welcome.capabilities == LOOPBACK_CAPABILITIES
    assert welcome.limits_hash == LOOPBACK_CAPABILITIES.limits_hash()
    assert welcome.heartbeat_interval_ms == pytest.approx(1000.0 / 3)
    assert h.backend.state == "hello"
    env = _narrow_envelope()
    configured = h.send(Configure(h.session, 20.0, env, {}))
    assert isinstance(configured, Configured)
    assert configured.envelope_hash == env.hash
    assert configured.limits[0].max == 5.0
    assert h.backend.state == "configured"
    status = h.send(Reset(h.session, 7))
    assert isinstance(status, Status)
    assert status.state == "running"
    assert status.seq == 0
    first = h.step()  # right after reset the soft start allows nothing but off
    assert "soft_start: Expected amplitude <= 0 mV" in _error(first, "limit_exceeded").message
    assert isinstance(h.send(Reset(h.session, 7)), Status)
    h.warm_up()
    obs = h.step()
    assert isinstance(obs, Observation)
    assert (obs.seq, obs.t_model_ms, obs.applied) == (2, 120.0, ON)
    assert obs.fields["amplitude_mv"] == 2.0
    assert h.backend.stimulating
    off = h.step(None)
    assert isinstance(off, Observation)
    assert off.applied is None
    assert off.seq == 3
    assert not h.backend.stimulating
    stopped = h.send(Stop(h.session, "done"))
    assert isinstance(stopped, Status)
    assert stopped.state == "stopped"
    assert stopped.stop_reason == "client stop: done"
    _error(h.step(), "bad_state")
    assert isinstance(h.send(Reset(h.session, None)), Status)
    bye = h.send(Bye(h.session))
    assert isinstance(bye, Status)
    assert bye.state == "idle"
    assert bye.session_id is None
    assert h.backend.stop_calls[-1] == "client said bye"


@pytest.mark.parametrize(
    ("request_factory", "state_code"),
    [
        (lambda s: Step(s, ON, 20.0), "bad_state"),
        (lambda s: Reset(s, None), "bad_state"),
    ],
)
def test_requests_out_of_order_are_refused(request_factory, state_code) -> None:  # type: ignore[no-untyped-def]
    h = Harness()
    h.open()
    _error(h.send(request_factory(h.session)), state_code)


def test_configure_while_running_is_refused() -> None:
    h = Harness()
    h.run()
    reply = _error(h.send(Configure(h.session, 20.0, _narrow_envelope(), {})), "bad_state")
    assert "send stop first" in reply.message


def test_second_client_is_busy_but_may_read_status() -> None:
    h = Harness()
    h.run()
    reply = _error(h.send(Hello("other"), peer=OTHER), "busy")
    assert "'test' holds session" in reply.message
    _error(h.send(Step(h.session, ON, 20.0), peer=OTHER), "busy")
    status = h.send(GetStatus(None), peer=OTHER)
    assert isinstance(status, Status)
    assert status.state == "running"


def test_unknown_session_is_refused() -> None:
    h = Harness()
    h.run()
    _error(h.send(Heartbeat("0" * 32)), "no_session")


def test_same_client_hello_again_replaces_and_stops() -> None:
    h = Harness()
    h.run()
    h.step()
    old = h.session
    h.open()
    assert h.session != old
    assert h.backend.stop_calls[-1] == "the same client sent hello again"
    reply = _error(h.send(Heartbeat(old)), "no_session")
    assert "it ended: the same client sent hello again" in reply.message


def test_silent_client_times_out_and_stimulation_stops() -> None:
    h = Harness()
    h.run()
    h.step()
    assert h.backend.stimulating
    h.clock.advance(0.9)
    assert isinstance(h.send(Heartbeat(h.session)), Status)
    h.clock.advance(0.9)  # heartbeat renewed the session
    h.backend.check_timeout()
    assert h.backend.state == "running"
    h.clock.advance(1.01)
    with capture_logs() as logs:
        h.backend.check_timeout()
    assert h.backend.state == "idle"
    assert not h.backend.stimulating
    assert h.backend.stop_calls[-1].startswith("session timed out")
    events = [entry["event"] for entry in logs]
    assert "session_timeout" in events
    assert "stimulation_stopped" in events
    reply = _error(h.step(), "no_session")
    assert "session timed out" in reply.message
    assert isinstance(h.send(Hello("other"), peer=OTHER), Welcome)


class SlowLoopback(LoopbackBackend):
    """A loopback whose every window takes ``step_wall_s`` of (fake) wall-clock time."""

    def __init__(self, clock: FakeClock, step_wall_s: float) -> None:
        super().__init__(session_timeout_s=1.0, clock=clock)
        self.fake_clock = clock
        self.step_wall_s = step_wall_s

    def _on_step(self, stimulus, duration_ms, want_spikes):  # type: ignore[no-untyped-def]
        self.fake_clock.advance(self.step_wall_s)
        return super()._on_step(stimulus, duration_ms, want_spikes)


def test_a_long_step_does_not_count_as_client_silence() -> None:
    h = Harness()
    h.backend = SlowLoopback(h.clock, step_wall_s=5.0)  # 5x the session timeout
    h.run()
    assert isinstance(h.step(), Observation)
    h.backend.check_timeout()
    assert h.backend.state == "running"
    h.clock.advance(1.01)  # silence after the reply still counts
    h.backend.check_timeout()
    assert h.backend.state == "idle"


def test_time_spent_serving_another_peer_is_not_silence_up_to_the_timeout() -> None:
    h = Harness()  # session timeout 1 s
    h.run()
    h.step()
    started = h.backend.now_s()
    h.clock.advance(1.5)  # the server was busy with another connection for 1.5 s
    h.backend.served(OTHER, started)
    h.backend.check_timeout()
    assert h.backend.state == "running"  # 1.5 s elapsed, 1 s of it not counted
    assert isinstance(h.send(Heartbeat(h.session)), Status)  # the session's own traffic
    started = h.backend.now_s()
    h.clock.advance(5.0)  # another connection keeps the server busy; the controller is gone
    h.backend.served(OTHER, started)
    h.backend.check_timeout()
    assert h.backend.state == "idle"  # at most the timeout is discounted: the lease still ends
    assert not h.backend.stimulating
    assert "1.000 s spent serving other connections not counted" in h.backend.stop_calls[-1]


def test_time_serving_the_controller_itself_is_not_discounted() -> None:
    h = Harness()
    h.run()
    started = h.backend.now_s()
    h.clock.advance(1.5)
    h.backend.served(PEER, started)  # the controlling connection's own message
    h.backend.check_timeout()
    assert h.backend.state == "idle"


def test_a_malformed_request_from_the_controller_is_still_a_sign_of_life() -> None:
    h = Harness()
    h.open()
    assert isinstance(h.send(Configure(h.session, 20.0, _narrow_envelope())), Configured)
    h.clock.advance(0.9)
    _, reply = unpack_reply(h.backend.handle(PEER, b"\xc1not msgpack"))
    assert _error(reply, "bad_message")
    h.clock.advance(0.9)
    h.backend.check_timeout()
    assert h.backend.state == "configured"


@pytest.mark.parametrize(
    ("stimulus", "code", "text"),
    [
        ({**ON, "amplitude_mv": 10.5}, "limit_exceeded", "[0, 10] mV (advertised), actual 10.5"),
        ({**ON, "amplitude_mv": 6.0}, "limit_exceeded", "[0, 5] mV (configured envelope)"),
        ({**ON, "frequency_hz": 0.5}, "limit_exceeded", "frequency_hz in [1, 250]"),
        ({"amplitude_mv": 1.0}, "invalid_stimulus", "Expected stimulus parameters"),
        ({**ON, "extra": 1.0}, "invalid_stimulus", "actual ['amplitude_mv', 'extra'"),
    ],
)
def test_stimulus_outside_limits_is_refused_and_stops(
    stimulus: dict[str, float], code: str, text: str
) -> None:
    h = Harness()
    h.run()
    h.step()
    with capture_logs() as logs:
        reply = _error(h.step(stimulus), code)
    assert text in reply.message
    assert reply.stopped
    assert h.backend.state == "stopped"
    assert not h.backend.stimulating
    assert any(e["event"] == "request_rejected" and e["code"] == code for e in logs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_stimulus_bytes_stop_stimulation(bad: float) -> None:
    h = Harness()
    h.run()
    h.step()
    body = to_wire(77, Step(h.session, ON, 20.0))
    body["stimulus"] = {**ON, "amplitude_mv": bad}
    rid, reply = unpack_reply(h.backend.handle(PEER, msgpack.packb(body)))
    assert rid == 77
    error = _error(reply, "non_finite")
    assert error.stopped
    assert h.backend.state == "stopped"
    assert "malformed request" in h.backend.stop_calls[-1]


def test_garbage_from_another_peer_changes_nothing() -> None:
    h = Harness()
    h.run()
    h.step()
    rid, reply = unpack_reply(h.backend.handle(OTHER, b"\xff\x00garbage"))
    assert rid == 0
    assert not _error(reply, "bad_message").stopped
    assert h.backend.state == "running"
    assert h.backend.stimulating


def test_nan_observation_is_a_backend_fault() -> None:
    h = Harness(nan_after_steps=3)  # the warm-up is step 1
    h.run()
    assert isinstance(h.step(), Observation)
    reply = _error(h.step(), "backend_fault")
    assert "Expected a finite observation field 'amplitude_mv', actual nan" in reply.message
    assert reply.stopped
    assert h.backend.state == "stopped"


def test_duration_outside_capabilities_is_refused() -> None:
    h = Harness()
    h.run()
    reply = _error(h.step(ON, 20_000.0), "out_of_range")
    assert "Expected step.duration_ms in [0.1, 10000], actual 20000.0" in reply.message


@pytest.mark.parametrize(
    ("envelope", "text"),
    [
        (
            WireEnvelope(_narrow_envelope().limits, {}, "0" * 64),
            "Expected envelope.hash to be the SHA-256",
        ),
        (
            WireEnvelope.build(LOOPBACK_CAPABILITIES.stim_params[:2]),
            "Expected envelope limits for exactly",
        ),
        (_narrow_envelope(amp_max=20.0), "inside [0, 10] mV, actual [0, 20]"),
        (
            WireEnvelope.build(
                (
                    ParamSpec("amplitude_mv", "mA", "amplitude", 0.0, 1.0),
                    *LOOPBACK_CAPABILITIES.stim_params[1:],
                )
            ),
            "Expected amplitude_mv in mV (amplitude), actual mA (amplitude)",
        ),
    ],
)
def test_bad_envelopes_are_refused(envelope: WireEnvelope, text: str) -> None:
    h = Harness()
    h.open()
    reply = _error(h.send(Configure(h.session, 20.0, envelope, {})), "envelope_rejected")
    assert text in reply.message
    assert h.backend.state == "hello"


def test_bad_options_are_refused() -> None:
    h = Harness()
    h.open()
    env = _narrow_envelope()
    reply = _error(h.send(Configure(h.session, 20.0, env, {"warp": 9})), "bad_config")
    assert "unknown ['warp']" in reply.message
    reply = _error(h.send(Configure(h.session, 20.0, env, {"seed": -1})), "bad_config")
    assert "Expected option seed" in reply.message
    reply = _error(h.send(Configure(h.session, 1e5, env, {})), "bad_config")
    assert "control_period_ms" in reply.message


def test_close_stops_stimulation_once_more() -> None:
    h = Harness()
    h.run()
    h.step()
    h.backend.close()
    assert h.backend.state == "idle"
    assert not h.backend.stimulating
    assert h.backend.stop_calls[-1] == "backend closing"


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=200), from_controller=st.booleans())
def test_random_bytes_always_get_an_error_reply(junk: bytes, from_controller: bool) -> None:
    h = Harness()
    h.run()
    rid, reply = unpack_reply(h.backend.handle(PEER if from_controller else OTHER, junk))
    assert isinstance(reply, ErrorReply | Status | Welcome | Observation | Configured)
    assert isinstance(rid, int)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_mutated_steps_get_a_valid_reply_and_never_exceed_limits(position: int, byte: int) -> None:
    h = Harness()
    h.run()
    data = bytearray(pack(50, Step(h.session, ON, 20.0)))
    data[position % len(data)] = byte
    _, reply = unpack_reply(h.backend.handle(PEER, bytes(data)))
    if isinstance(reply, Observation) and reply.applied is not None:
        for spec in _narrow_envelope().limits:
            assert spec.contains(reply.applied[spec.name])
    else:
        assert isinstance(reply, ErrorReply | Status)


def test_limit_checks_follow_each_capabilities_object() -> None:
    from dataclasses import replace

    from protocol.limits import RefusalError, check_fields, check_stimulus, is_on

    caps = LOOPBACK_CAPABILITIES
    limits = {spec.name: spec for spec in caps.stim_params}
    stim = {"amplitude_mv": 0.0, "frequency_hz": 130.0, "pulse_width_us": 60.0}
    check_stimulus(caps, limits, stim)
    assert not is_on(caps, stim)
    narrow = replace(
        caps,
        stim_params=(ParamSpec("frequency_hz", "Hz", "frequency", 1.0, 100.0),),
        observation_fields=("x",),
    )
    with pytest.raises(RefusalError) as err:  # the cached index of `caps` is not reused
        check_stimulus(narrow, limits, stim)
    assert err.value.code == "invalid_stimulus"
    with pytest.raises(RefusalError, match="advertised") as err:
        check_stimulus(narrow, limits, {"frequency_hz": 130.0})
    assert err.value.code == "limit_exceeded"
    assert is_on(narrow, {"frequency_hz": 50.0})  # no amplitude parameter: always on
    tight = {**limits, "frequency_hz": ParamSpec("frequency_hz", "Hz", "frequency", 1.0, 50.0)}
    with pytest.raises(RefusalError, match="configured envelope"):
        check_stimulus(caps, tight, stim)
    for bad in [math.nan, math.inf]:
        with pytest.raises(RefusalError, match="advertised"):
            check_stimulus(caps, limits, {**stim, "pulse_width_us": bad})
    assert check_fields(narrow, {"x": 1}) == {"x": 1.0}
    for fields in [{"x": math.nan}, {"x": 1.0, "y": 2.0}, {}]:
        with pytest.raises(RefusalError) as err:
            check_fields(narrow, fields)
        assert err.value.code == "backend_fault"
