"""Codec and message validation: round trips, strict decoding, garbage never crashes."""

from __future__ import annotations

import contextlib
import math
import re

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ProtocolError
from protocol.codec import pack, peek_request_id, to_wire, unpack, unpack_reply, unpack_request
from protocol.messages import (
    ERROR_CODES,
    PROTOCOL_VERSION,
    REPLY_TYPES,
    REQUEST_TYPES,
    Bye,
    Configure,
    Configured,
    ErrorReply,
    GetStatus,
    Heartbeat,
    Hello,
    Observation,
    Reset,
    Status,
    Step,
    Stop,
    Welcome,
)
from protocol.schema import Capabilities, ParamSpec, SpikeWindow, WireEnvelope, envelope_hash

# ------------------------------------------------------------------------- strategies

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
small_finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)
session_ids = st.text("0123456789abcdef", min_size=32, max_size=32)
request_ids = st.integers(0, 2**64 - 1)
texts = st.text(max_size=200)
float_maps = st.dictionaries(names, finite, max_size=8)
options = st.dictionaries(
    names,
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        finite,
        st.text(max_size=50),
    ),
    max_size=6,
)


@st.composite
def param_specs(draw: st.DrawFn) -> ParamSpec:
    a, b = sorted([draw(small_finite), draw(small_finite)])
    role = draw(st.sampled_from(["amplitude", "frequency", "pulse_width", "other"]))
    return ParamSpec(draw(names), draw(st.sampled_from(["mV", "uA", "Hz", "us"])), role, a, b)


spec_lists = st.lists(param_specs(), min_size=1, max_size=5, unique_by=lambda s: s.name).map(tuple)


@st.composite
def capabilities(draw: st.DrawFn) -> Capabilities:
    lo = draw(st.floats(0.001, 100.0))
    hi = draw(st.floats(lo, 1e5))
    period = draw(st.floats(lo, hi))
    return Capabilities(
        draw(spec_lists),
        tuple(draw(st.lists(names, unique=True, max_size=10))),
        period,
        lo,
        hi,
        draw(st.booleans()),
        tuple(draw(st.lists(names, unique=True, max_size=5))),
    )


envelopes = st.builds(WireEnvelope.build, spec_lists, float_maps)


@st.composite
def spike_windows(draw: st.DrawFn) -> SpikeWindow:
    n = draw(st.integers(0, 50))
    times = draw(st.lists(small_finite, min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(0, 2**31 - 1), min_size=n, max_size=n))
    return SpikeWindow.from_arrays(np.array(times, dtype=float), np.array(ids, dtype=np.int64))


MESSAGES = {
    Hello: st.builds(Hello, st.text(min_size=1, max_size=64)),
    Configure: st.builds(Configure, session_ids, st.floats(1e-6, 3.6e6), envelopes, options),
    Reset: st.builds(Reset, session_ids, st.none() | st.integers(0, 2**63 - 1)),
    Step: st.builds(
        Step, session_ids, st.none() | float_maps, st.floats(1e-6, 3.6e6), st.booleans()
    ),
    GetStatus: st.builds(GetStatus, st.none() | session_ids),
    Heartbeat: st.builds(Heartbeat, session_ids),
    Stop: st.builds(Stop, session_ids, st.text(max_size=200)),
    Bye: st.builds(Bye, session_ids),
    Welcome: st.builds(
        Welcome,
        session_ids,
        st.sampled_from(["sim", "serial", "replay", "loopback"]),
        st.text(min_size=1, max_size=64),
        capabilities(),
        st.text("0123456789abcdef", min_size=64, max_size=64),
        st.just(2000.0),
        st.floats(0.1, 2000.0),
    ),
    Configured: st.builds(
        Configured,
        session_ids,
        st.text("0123456789abcdef", min_size=64, max_size=64),
        spec_lists,
        st.floats(1e-6, 3.6e6),
    ),
    Observation: st.builds(
        Observation,
        st.integers(0, 2**64 - 1),
        finite,
        st.floats(0.0, 1e9),
        float_maps,
        st.none() | float_maps,
        st.none() | spike_windows(),
    ),
    Status: st.builds(
        Status,
        st.sampled_from(["idle", "hello", "configured", "running", "stopped"]),
        st.none() | session_ids,
        st.integers(0, 2**64 - 1),
        finite,
        st.booleans(),
        st.text(max_size=200),
    ),
    ErrorReply: st.builds(ErrorReply, st.sampled_from(sorted(ERROR_CODES)), texts, st.booleans()),
}

any_message = st.one_of(*MESSAGES.values())


def test_every_message_type_has_a_strategy() -> None:
    assert set(MESSAGES) == set(REQUEST_TYPES) | set(REPLY_TYPES)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda c: c.TYPE)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), request_id=request_ids)
def test_round_trip(cls: type, data: st.DataObject, request_id: int) -> None:
    message = data.draw(MESSAGES[cls])
    frame = unpack(pack(request_id, message))
    assert frame.request_id == request_id
    assert frame.message == message
    assert type(frame.message) is cls


@settings(max_examples=200, deadline=None)
@given(message=any_message)
def test_requests_and_replies_are_told_apart(message: object) -> None:
    data = pack(5, message)  # type: ignore[arg-type]
    if isinstance(message, REQUEST_TYPES):
        assert unpack_request(data)[1] == message
        with pytest.raises(ProtocolError, match="Expected a reply") as err:
            unpack_reply(data)
    else:
        assert unpack_reply(data)[1] == message
        with pytest.raises(ProtocolError, match="Expected a request") as err:
            unpack_request(data)
    assert err.value.code == "unknown_type"


def test_wire_layout_is_a_flat_map_with_header() -> None:
    step = Step("ab" * 16, {"amplitude_mv": 100.0}, 20.0, False)
    raw = msgpack.unpackb(pack(42, step), raw=False)
    assert raw == {
        "v": PROTOCOL_VERSION,
        "type": "step",
        "id": 42,
        "session_id": "ab" * 16,
        "stimulus": {"amplitude_mv": 100.0},
        "duration_ms": 20.0,
        "want_spikes": False,
    }


def test_spikes_travel_as_msgpack_bin() -> None:
    spikes = SpikeWindow.from_arrays([1.5, 2.5], [3, 7])
    obs = Observation(1, 20.0, 20.0, {"synchrony": 0.5}, None, spikes)
    raw = msgpack.unpackb(pack(1, obs), raw=False)
    assert isinstance(raw["spikes"]["times_ms"], bytes)
    decoded = unpack(pack(1, obs)).message
    assert isinstance(decoded, Observation)
    assert decoded.spikes is not None
    np.testing.assert_array_equal(decoded.spikes.times(), [1.5, 2.5])
    np.testing.assert_array_equal(decoded.spikes.neuron_ids(), [3, 7])


# ----------------------------------------------------------------------- strict decoding


def _wire(**changes: object) -> bytes:
    body = to_wire(9, Step("ab" * 16, {"amplitude_mv": 100.0}, 20.0, False))
    body.update(changes)
    return msgpack.packb(body, use_bin_type=True)


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (_wire(duration_ms=float("nan")), "non_finite", "Expected a finite step.duration_ms"),
        (_wire(duration_ms=float("inf")), "non_finite", "actual inf"),
        (_wire(stimulus={"amplitude_mv": float("nan")}), "non_finite", "amplitude_mv"),
        (_wire(stimulus={"amplitude_mv": -float("inf")}), "non_finite", "-inf"),
        (_wire(duration_ms=-1.0), "out_of_range", "Expected step.duration_ms in [1e-06"),
        (_wire(duration_ms="20"), "bad_message", "to be a number, actual str"),
        (_wire(want_spikes=1), "bad_message", "true or false"),
        (_wire(extra_field=1), "bad_message", "unknown ['extra_field']"),
        (_wire(v=2), "unsupported_version", "Expected protocol version 1, actual 2"),
        (_wire(v=True), "unsupported_version", "actual True"),
        (_wire(type="launch"), "unknown_type", "actual 'launch'"),
        (_wire(id=-1), "out_of_range", "Expected id in [0"),
        (_wire(session_id="XYZ"), "bad_message", "session_id"),
        (_wire(stimulus={"": 1.0}), "bad_message", "key"),
        (_wire(stimulus=[1.0]), "bad_message", "map of name to number"),
    ],
)
def test_decode_rejects_with_code(body: bytes, code: str, text: str) -> None:
    with pytest.raises(ProtocolError) as err:
        unpack(body)
    assert err.value.code == code
    assert text in str(err.value)


def test_missing_field_is_named() -> None:
    body = to_wire(1, Heartbeat("ab" * 16))
    del body["session_id"]
    with pytest.raises(ProtocolError, match=re.escape("missing ['session_id']")):
        unpack(msgpack.packb(body))


def test_construction_validates_like_decoding() -> None:
    with pytest.raises(
        ProtocolError, match=re.escape("Expected a finite step.duration_ms, actual nan")
    ):
        Step("ab" * 16, None, math.nan)
    with pytest.raises(ProtocolError, match=r"min <= max"):
        ParamSpec("amp", "mV", "amplitude", 2.0, 1.0)
    with pytest.raises(ProtocolError, match=re.escape("finite observation.fields")):
        Observation(1, 0.0, 20.0, {"synchrony": math.inf})
    with pytest.raises(ProtocolError, match=re.escape("error.code")):
        ErrorReply("oops", "x")


def test_envelope_hash_is_canonical() -> None:
    a = ParamSpec("amplitude_mv", "mV", "amplitude", 0.0, 200.0)
    b = ParamSpec("frequency_hz", "Hz", "frequency", 10.0, 100.0)
    assert envelope_hash([a, b], {"q": 1}) == envelope_hash([b, a], {"q": 1.0})
    assert envelope_hash([a, b], {}) != envelope_hash([a], {})
    env = WireEnvelope.build([a, b], {"q_max_uc": 1.8})
    assert env.hash_matches()
    assert len(env.hash) == 64


# ------------------------------------------------------------------ garbage and mutation


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_protocol_error_only(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        unpack(data)
    assert isinstance(peek_request_id(data), int)


@settings(max_examples=500, deadline=None)
@given(message=any_message, position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_mutated_bytes_raise_protocol_error_or_decode_valid(
    message: object, position: int, byte: int
) -> None:
    data = bytearray(pack(3, message))  # type: ignore[arg-type]
    data[position % len(data)] = byte
    try:
        frame = unpack(bytes(data))
    except ProtocolError as err:
        code = err.code
    else:  # a mutation that still decodes must give a valid, re-encodable message
        assert unpack(pack(frame.request_id, frame.message)) == frame
        code = "bad_message"
    assert code in ERROR_CODES


@settings(max_examples=300, deadline=None)
@given(message=any_message, cut=st.integers(0, 10_000))
def test_truncated_bytes_raise_protocol_error(message: object, cut: int) -> None:
    data = pack(3, message)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        unpack(data[: cut % len(data)])


@settings(max_examples=300, deadline=None)
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
)
def test_arbitrary_msgpack_objects_raise_protocol_error(obj: object) -> None:
    try:
        data = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError):
        return
    with pytest.raises(ProtocolError):
        unpack(data)


def test_ext_types_and_timestamps_are_refused() -> None:
    body = to_wire(1, Reset("ab" * 16, None))
    body["seed"] = msgpack.ExtType(5, b"xx")
    with pytest.raises(ProtocolError, match=re.escape("reset.seed")):
        unpack(msgpack.packb(body))
    body["seed"] = msgpack.Timestamp(1, 0)
    with pytest.raises(ProtocolError, match=re.escape("reset.seed")):
        unpack(msgpack.packb(body, datetime=False))


# ------------------------------------------------------------------- hot-path fast paths
# The decoder and the hot message classes take shortcuts for the common case (a known
# session id, plain finite floats); these pin that every shortcut refuses what the full
# check refuses and converts what it converts.


def test_known_session_id_cache_never_admits_a_bad_id() -> None:
    good = "ab" * 16
    Step(good, None, 20.0)  # now cached
    for bad in [good.upper(), good[:-1], good + "a", 0, None, b"ab" * 16]:
        with pytest.raises(ProtocolError, match="session_id"):
            Step(bad, None, 20.0)  # type: ignore[arg-type]
        with pytest.raises(ProtocolError, match="session_id"):
            unpack(_wire(session_id=bad))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (math.nan, "non_finite"),
        (math.inf, "non_finite"),
        (-math.inf, "non_finite"),
        (0.0, "out_of_range"),
        (3.6e6 + 1.0, "out_of_range"),
        (True, "bad_message"),
        ("20", "bad_message"),
    ],
)
def test_step_duration_fast_path_refuses_like_check_float(value: object, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        Step("ab" * 16, None, value)  # type: ignore[arg-type]
    assert err.value.code == code


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"seq": -1}, "out_of_range"),
        ({"seq": 2**64}, "out_of_range"),
        ({"seq": True}, "bad_message"),
        ({"seq": 1.0}, "bad_message"),
        ({"t_model_ms": math.nan}, "non_finite"),
        ({"t_model_ms": -math.inf}, "non_finite"),
        ({"duration_ms": math.inf}, "non_finite"),
        ({"duration_ms": -1.0}, "out_of_range"),
        ({"duration_ms": False}, "bad_message"),
    ],
)
def test_observation_fast_paths_refuse_like_the_checks(
    changes: dict[str, object], code: str
) -> None:
    args: dict[str, object] = {"seq": 1, "t_model_ms": 0.0, "duration_ms": 20.0, "fields": {}}
    args.update(changes)
    with pytest.raises(ProtocolError) as err:
        Observation(**args)  # type: ignore[arg-type]
    assert err.value.code == code
    if changes.get("seq") == 2**64:
        return  # msgpack itself cannot encode it
    body = to_wire(3, Observation(1, 0.0, 20.0, {}))
    body.update(changes)
    with pytest.raises(ProtocolError) as err:
        unpack(msgpack.packb(body))
    assert err.value.code == code


def test_integers_in_float_fields_still_become_floats() -> None:
    step = Step("ab" * 16, {"amplitude_mv": 1}, 20)
    assert type(step.duration_ms) is float
    assert type(step.stimulus["amplitude_mv"]) is float  # type: ignore[index]
    obs = unpack(msgpack.packb(to_wire(1, Observation(1, 0.0, 20.0, {})) | {"t_model_ms": 5}))
    assert isinstance(obs.message, Observation)
    assert type(obs.message.t_model_ms) is float


def test_bad_request_ids_are_refused_on_encode() -> None:
    for bad in [-1, 2**64, True, 1.0]:
        with pytest.raises(ProtocolError, match="id"):
            pack(bad, Heartbeat("ab" * 16))  # type: ignore[arg-type]


def test_a_failed_pack_leaves_the_packer_clean() -> None:
    class Weird(float):
        pass

    step = Step("ab" * 16, None, 20.0)
    # Maps go to msgpack as they are; strict_types refuses the float subclass mid-message.
    object.__setattr__(step, "stimulus", {"a": 1.0, "b": Weird(2.0)})
    with pytest.raises(ProtocolError, match="packable"):
        pack(1, step)
    good = pack(2, Heartbeat("ab" * 16))
    assert unpack(good).message == Heartbeat("ab" * 16)


def test_a_big_message_does_not_pin_the_packer_buffer() -> None:
    from protocol import codec

    before = codec._LOCAL.packer
    spikes = SpikeWindow.from_arrays(np.arange(100_000, dtype=float), np.zeros(100_000))
    big = pack(1, Observation(1, 0.0, 20.0, {}, None, spikes))
    assert len(big) > codec._PACKER_KEEP_BYTES
    assert codec._LOCAL.packer is not before  # a fresh packer, the big buffer released
    decoded = unpack(big).message
    assert isinstance(decoded, Observation)
    assert decoded.spikes == spikes
    assert unpack(pack(2, Heartbeat("ab" * 16))).message == Heartbeat("ab" * 16)
