"""Decode limits (docs/protocol.md §2.1) and bounded error text: what one body may cost."""

from __future__ import annotations

import contextlib
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clip import MAX_ERROR_CHARS, clip_repr, clip_text
from core.errors import ProtocolError
from protocol.codec import pack, to_wire, unpack, unpack_request
from protocol.messages import Configure, Heartbeat, Observation, Step, Welcome
from protocol.schema import Capabilities, ParamSpec, SpikeWindow, WireEnvelope
from protocol.wire_limits import (
    MAX_ARRAY_ITEMS,
    MAX_BIN_BYTES,
    MAX_DEPTH,
    MAX_MAP_ENTRIES,
    MAX_OBJECTS,
    MAX_STR_BYTES,
    SCAN_ABOVE_BYTES,
    check_structure,
    unpack_limited,
)

SESSION = "ab" * 16
PAD = b"\x00" * (SCAN_ABOVE_BYTES + 1)  # a bin that pushes a body onto the walked path


def _heartbeat(**extra: object) -> bytes:
    body = to_wire(3, Heartbeat(SESSION))
    body.update(extra)
    return msgpack.packb(body, use_bin_type=True)


def _refused(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        unpack(data)
    assert info.value.code == "bad_message"
    assert len(str(info.value)) <= MAX_ERROR_CHARS
    return info.value


def _nested(depth: int) -> object:
    """A value of a message-map key whose innermost array is at ``depth`` (the map is 1)."""
    value: object = 0
    for _ in range(depth - 1):
        value = [value]
    return value


# ------------------------------------------------------------------ each limit, both paths


@pytest.mark.parametrize("pad", [False, True], ids=["small body", "walked body"])
@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({f"k{i}": None for i in range(MAX_MAP_ENTRIES)}, "64"),  # 68 entries in the message map
        ({"x": list(range(MAX_ARRAY_ITEMS + 1))}, "65"),
        ({"x": {f"k{i}": 0 for i in range(MAX_MAP_ENTRIES + 1)}}, "65"),
        ({"x": "é" * (MAX_STR_BYTES // 2 + 1)}, "8002"),
        ({"x": msgpack.ExtType(1, b"\x00" * (MAX_STR_BYTES + 1))}, "8001"),
    ],
    ids=["message map", "array", "nested map", "str bytes", "ext bytes"],
)
def test_each_container_and_string_limit_is_refused(
    extra: dict[str, object], text: str, pad: bool
) -> None:
    if pad:
        extra = {**extra, "pad": PAD}
    error = _refused(_heartbeat(**extra))
    assert text in str(error)
    assert "limit" in str(error) or "exceeds" in str(error)


def test_a_body_at_every_limit_decodes() -> None:
    """The limits leave room: a map and an array at their maximum, nested to the maximum."""
    data = msgpack.packb(
        {
            **{f"k{i:02d}": None for i in range(MAX_MAP_ENTRIES - 3)},
            "deep": _nested(MAX_DEPTH),
            "items": list(range(MAX_ARRAY_ITEMS)),
            "pad": PAD,
        },
        use_bin_type=True,
    )
    assert len(data) > SCAN_ABOVE_BYTES
    raw = unpack_limited(data)
    assert isinstance(raw, dict)
    assert len(raw) == MAX_MAP_ENTRIES
    assert check_structure(data) == 1 + 2 * MAX_MAP_ENTRIES + (MAX_DEPTH - 1) + MAX_ARRAY_ITEMS


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    assert check_structure(msgpack.packb({"pad": PAD, "x": _nested(MAX_DEPTH)})) > 0
    error = _refused(_heartbeat(x=_nested(MAX_DEPTH + 1), pad=PAD))
    assert f"nesting deeper than {MAX_DEPTH}" in str(error)
    # a small body is refused too (here by the message's own shape: no field nests so deep)
    _refused(_heartbeat(x=_nested(MAX_DEPTH + 2)))
    _refused(b"\x91" * 3000 + b"\x00")  # far deeper than msgpack's own stack


def test_more_objects_than_the_limit_are_refused() -> None:
    chunk = [[None] * MAX_ARRAY_ITEMS] * MAX_ARRAY_ITEMS  # 4161 objects
    error = _refused(_heartbeat(x=chunk))
    assert f"more than {MAX_OBJECTS} objects" in str(error)


def test_bin_limit_is_the_largest_spike_window() -> None:
    """4 000 000 spikes (the protocol's maximum) fit; one byte more of bin does not."""
    n = MAX_BIN_BYTES // 8
    spikes = SpikeWindow.from_arrays(np.arange(n, dtype=np.float64), np.zeros(n, np.int32))
    obs = Observation(1, 20.0, 20.0, {"synchrony": 0.5}, None, spikes)
    decoded = unpack(pack(1, obs)).message
    assert isinstance(decoded, Observation)
    assert decoded.spikes is not None
    assert decoded.spikes.times().size == n
    error = _refused(_heartbeat(x=b"\x00" * (MAX_BIN_BYTES + 1)))
    assert f"a bin of {MAX_BIN_BYTES + 1} bytes (limit {MAX_BIN_BYTES})" in str(error)


def test_largest_valid_requests_and_replies_decode() -> None:
    """64 parameters with 64-character names, 64 extra values and 64 options of 256 chars."""
    specs = [
        ParamSpec(f"p{i:02d}_" + "x" * 60, "u" * 32, "other", -1.0, 1.0) for i in range(64)
    ]
    extra = {f"e{i:02d}_" + "y" * 60: float(i) for i in range(64)}
    options: dict[str, str | int | float | bool] = {
        f"o{i:02d}_" + "z" * 60: "é" * 256 for i in range(64)
    }
    configure = Configure(SESSION, 20.0, WireEnvelope.build(specs, extra), options)
    data = pack(1, configure)
    assert len(data) > SCAN_ABOVE_BYTES
    assert check_structure(data) < MAX_OBJECTS
    assert unpack_request(data)[1] == configure
    caps = Capabilities(tuple(specs), tuple(f"f{i}" for i in range(64)), 20.0, 1.0, 100.0, True,
                        tuple(f"o{i}" for i in range(64)))  # fmt: skip
    welcome = Welcome(SESSION, "sim", "x" * 64, caps, caps.limits_hash(), 2000.0, 666.0)
    assert unpack(pack(2, welcome)).message == welcome


def test_the_issues_flood_is_refused_at_its_first_header() -> None:
    """Millions of keys: refused from the map header, with a short message naming the limit."""
    n_keys = 3_000_000
    data = b"\xdf" + struct.pack(">I", n_keys) + b"\xa1k\xc0" * n_keys
    error = _refused(data)
    assert f"a map of {n_keys} entries (limit {MAX_MAP_ENTRIES}) at byte 0" in str(error)


def test_repeated_keys_are_refused() -> None:
    step = to_wire(4, Step(SESSION, {"amplitude_mv": 1.0}, 20.0, False))
    packer = msgpack.Packer(use_bin_type=True)
    # {"...step...", "stimulus": {"amplitude_mv": 0.0, "amplitude_mv": 400.0}} by hand
    stimulus = b"\x82" + packer.pack("amplitude_mv") + packer.pack(0.0)
    stimulus += packer.pack("amplitude_mv") + packer.pack(400.0)
    fields = {k: v for k, v in step.items() if k != "stimulus"}
    data = packer.pack_map_header(len(fields) + 1) + b"".join(
        packer.pack(k) + packer.pack(v) for k, v in fields.items()
    )
    data += packer.pack("stimulus") + stimulus
    error = _refused(data)
    assert "Expected distinct keys in every map, actual 'amplitude_mv' twice" in str(error)
    top = packer.pack_map_header(len(fields) + 1) + b"".join(
        packer.pack(k) + packer.pack(v) for k, v in fields.items()
    )
    _refused(top + packer.pack("id") + packer.pack(5))


def test_truncated_and_trailing_bytes_are_refused_on_both_paths() -> None:
    data = _heartbeat(pad=PAD)
    for cut in (1, 5, len(PAD) // 2, len(data) - 1):
        with pytest.raises(ProtocolError, match="truncated"):
            check_structure(data[:cut])
        _refused(data[:cut])
    with pytest.raises(ProtocolError, match="3 bytes after the message"):
        check_structure(data + b"\x00\x00\x00")
    _refused(data + b"\x00")
    _refused(_heartbeat() + b"\x00")
    with pytest.raises(ProtocolError, match="reserved type byte 0xc1"):
        check_structure(b"\x81\xa1a\xc1" + PAD)


# ------------------------------------------------- the walk agrees with msgpack itself


def _count(obj: object) -> tuple[int, int]:
    """(objects, container depth) of a decoded msgpack value."""
    if isinstance(obj, dict):
        inner = [_count(k) for k in obj] + [_count(v) for v in obj.values()]
    elif isinstance(obj, list):
        inner = [_count(v) for v in obj]
    else:
        return 1, 0
    return 1 + sum(n for n, _ in inner), 1 + max((d for _, d in inner), default=0)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=70)
    | st.dictionaries(st.text(max_size=8), children, max_size=70),
    max_leaves=300,
)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_the_walk_counts_and_limits_like_the_decoded_value(value: object) -> None:
    data = msgpack.packb({"pad": PAD, "value": value}, use_bin_type=True)
    decoded = msgpack.unpackb(data, raw=False, strict_map_key=False)
    objects, depth = _count(decoded)
    lengths_ok = _within_lengths(decoded)
    within = objects <= MAX_OBJECTS and depth <= MAX_DEPTH and lengths_ok
    try:
        counted = check_structure(data)
    except ProtocolError:
        assert not within
    else:
        assert within
        assert counted == objects
        assert unpack_limited(data) == decoded


def _within_lengths(obj: object) -> bool:
    if isinstance(obj, dict):
        return len(obj) <= MAX_MAP_ENTRIES and all(
            _within_lengths(k) and _within_lengths(v) for k, v in obj.items()
        )
    if isinstance(obj, list):
        return len(obj) <= MAX_ARRAY_ITEMS and all(_within_lengths(v) for v in obj)
    if isinstance(obj, str):
        return len(obj.encode()) <= MAX_STR_BYTES
    return True


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 10_000), byte=st.integers(0, 255), value=values)
def test_mutated_walked_bodies_raise_protocol_error_only(
    position: int, byte: int, value: object
) -> None:
    data = bytearray(msgpack.packb({"value": value, "pad": PAD}, use_bin_type=True))
    data[position % len(data)] = byte
    with contextlib.suppress(ProtocolError):
        check_structure(bytes(data))
    with contextlib.suppress(ProtocolError):
        unpack(bytes(data))


# ------------------------------------------------------------------------- bounded text


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=3000), max_chars=st.integers(1, 2000))
def test_clip_text_keeps_a_prefix_within_the_limit_and_says_what_was_cut(
    text: str, max_chars: int
) -> None:
    clipped = clip_text(text, max_chars)
    assert len(clipped) <= max_chars
    if len(text) <= max_chars:
        assert clipped == text
    elif clipped.endswith(" more characters cut]"):
        kept = clipped[: clipped.rindex("... [")]
        assert text.startswith(kept)
        cut = int(clipped[clipped.rindex("... [") + 5 :].split()[0])
        assert len(kept) + cut == len(text)
    else:  # a limit too small for the note: a plain prefix
        assert text.startswith(clipped)


def test_clip_repr_never_copies_a_huge_value_whole() -> None:
    shown = clip_repr("x" * 10_000_000, 80)
    assert len(shown) <= 80
    assert shown.endswith("[10000000 characters in all]")
    assert clip_repr(b"\x00" * 100, 60).endswith("[100 bytes in all]")
    assert clip_repr(12, 80) == "12"


def test_protocol_error_messages_are_clipped() -> None:
    error = ProtocolError("y" * 1_000_000)
    assert len(str(error)) <= MAX_ERROR_CHARS
    assert str(error).endswith("more characters cut]")


def test_unknown_keys_are_listed_up_to_eight_each_shortened() -> None:
    extra: dict[str, object] = {f"unknown_{i:02d}": None for i in range(19)}
    extra["z" * 5000] = None
    error = _refused(_heartbeat(**extra))
    text = str(error)
    assert "'unknown_00', 'unknown_01'" in text
    assert "'unknown_07', ... and 12 more]" in text
    assert "zzzz" not in text  # sorted after the first eight, and never copied whole
    assert len(text) < 600


def test_unknown_keys_of_mixed_types_in_a_nested_map_are_named() -> None:
    envelope = WireEnvelope.build([ParamSpec("a_mv", "mV", "amplitude", 0.0, 1.0)])
    body = to_wire(2, Configure(SESSION, 20.0, envelope))
    body["envelope"]["limits"][0][7] = 1  # type: ignore[index]
    body["envelope"]["limits"][0]["x"] = 1  # type: ignore[index]
    with pytest.raises(ProtocolError) as info:
        unpack(msgpack.packb(body, use_bin_type=True))
    assert info.value.code == "bad_message"
    assert "unknown ['x', 7]" in str(info.value)
    assert info.value.request_id == 2
