"""Device wire codec: COBS, CRC-16, frames, payload structs and the streaming decoder."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ProtocolError, SafetyLimitError
from drivers.cobs import cobs_decode, cobs_encode
from drivers.envelope import DeviceEnvelope, check_envelope, setpoint_problem, shannon_q_max_nc
from drivers.framing import (
    MAX_ENCODED_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    Frame,
    FrameDecoder,
    FrameFlags,
    crc16_ccitt,
    decode_block,
    encode_frame,
)
from drivers.messages import (
    Arm,
    Caps,
    MsgType,
    Nack,
    SetStim,
    Status,
    decode_message,
)

frames_strategy = st.builds(
    Frame,
    msg_type=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    ack=st.integers(0, 0xFFFF),
    t_us=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=MAX_PAYLOAD_BYTES),
    flags=st.sampled_from(list(FrameFlags)),
)


def test_crc16_ccitt_false_check_value() -> None:
    # The catalogued check value of CRC-16/CCITT-FALSE.
    assert crc16_ccitt(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("raw", "stuffed"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
    ],
)
def test_cobs_known_vectors(raw: bytes, stuffed: bytes) -> None:
    assert cobs_encode(raw) == stuffed
    assert cobs_decode(stuffed) == raw


@given(st.binary(max_size=600))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


def test_cobs_rejects_code_past_end() -> None:
    with pytest.raises(ProtocolError, match="to fit in a block of 2 bytes") as info:
        cobs_decode(b"\x05\x11")
    assert info.value.code == "bad_cobs"


@given(frames_strategy)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire.endswith(b"\x00")
    assert wire.count(0) == 1
    assert decode_block(wire[:-1]) == frame


def test_frame_size_matches_spec() -> None:
    cmd = SetStim(0, 2500, 90, 1300, 0, 250)
    wire = encode_frame(Frame(MsgType.SET_STIM, 7, 3, 123, cmd.pack()))
    # 12-byte header + 11-byte payload + 2-byte CRC, COBS overhead, 1 delimiter.
    assert 12 + 11 + 2 + 2 <= len(wire) <= 12 + 11 + 2 + 2 + 1


def test_frame_rejects_out_of_range_fields() -> None:
    with pytest.raises(ProtocolError, match=re.escape("Expected seq in [0, 65535], actual 70000")):
        Frame(MsgType.HELLO, 70000)
    with pytest.raises(ProtocolError, match="payload of at most 200 bytes, actual 201"):
        Frame(MsgType.HELLO, 1, payload=bytes(201))


@given(frames_strategy, st.data())
@settings(max_examples=300)
def test_any_single_bit_flip_is_detected(frame: Frame, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(frame))
    bit = data.draw(st.integers(0, (len(wire) - 1) * 8 - 1))  # any bit but the delimiter's
    wire[bit // 8] ^= 1 << (bit % 8)
    frames, bad = FrameDecoder().feed(bytes(wire))
    # CRC-16 catches every single-bit error (a flip may also split the block at a new 0x00).
    assert frames == []
    assert bad


def test_decoder_reports_each_bad_frame_with_reason() -> None:
    good = encode_frame(Frame(MsgType.HEARTBEAT, 5, payload=b"\xfa\x00"))
    corrupt = bytearray(good)
    corrupt[2] ^= 0x40  # the type byte (offset 0 is a COBS code byte)
    wrong_version = encode_frame(Frame(MsgType.HELLO, 1, version=2))
    decoder = FrameDecoder()
    frames, bad = decoder.feed(bytes(corrupt) + b"\x03\x05\x06\x00" + wrong_version + good)
    assert [f.seq for f in frames] == [5]
    assert [b.code for b in bad] == ["bad_crc", "bad_len", "bad_version"]
    assert "Expected CRC-16" in bad[0].detail
    assert "Expected protocol version 1, actual 2" in bad[2].detail
    assert decoder.frames_ok == 1
    assert decoder.frames_bad == 3


def test_decoder_any_chunking_gives_same_frames() -> None:
    rng = np.random.default_rng(7)
    wires = [encode_frame(Frame(MsgType.STATUS, i, payload=bytes([i]) * i)) for i in range(30)]
    stream = b"".join(wires)
    decoder = FrameDecoder()
    got: list[Frame] = []
    pos = 0
    while pos < len(stream):
        step = int(rng.integers(1, 40))
        frames, bad = decoder.feed(stream[pos : pos + step])
        assert bad == []
        got += frames
        pos += step
    assert [f.seq for f in got] == list(range(30))


@given(st.binary(max_size=2000))
@settings(max_examples=200)
def test_decoder_never_crashes_and_resyncs_after_garbage(garbage: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(garbage)
    assert decoder.pending_bytes <= MAX_ENCODED_FRAME_BYTES
    good = Frame(MsgType.HEARTBEAT, 9, payload=b"\x10\x01")
    # One delimiter flushes whatever partial frame the garbage left; the next frame is clean.
    frames, _ = decoder.feed(b"\x00" + encode_frame(good))
    assert frames[-1] == good


def test_oversized_frame_is_discarded_with_bounded_buffer() -> None:
    decoder = FrameDecoder()
    frames, bad = decoder.feed(b"\x07" * 1000)
    assert frames == []
    assert bad == []
    assert decoder.pending_bytes == 0  # bytes past the bound are skipped, not stored
    good = Frame(MsgType.STOP, 2, payload=b"\x00")
    frames, bad = decoder.feed(b"\x00" + encode_frame(good))
    assert [b.code for b in bad] == ["oversized"]
    assert "within 256 bytes, actual 1000" in bad[0].detail
    assert frames == [good]


def test_truncated_and_length_mismatch_frames_are_bad_len() -> None:
    wire = encode_frame(Frame(MsgType.SET_STIM, 3, payload=bytes(11)))
    frames, bad = FrameDecoder().feed(wire[:5] + b"\x00")
    assert frames == []
    assert bad[0].code in ("bad_len", "bad_cobs")
    # A header whose len field disagrees with the bytes present (CRC recomputed to isolate it).
    body = struct.pack("<BBBHHIB", 1, MsgType.SET_STIM, 0, 3, 0, 0, 50) + bytes(11)
    raw = body + struct.pack("<H", crc16_ccitt(body))
    frames, bad = FrameDecoder().feed(cobs_encode(raw) + b"\x00")
    assert frames == []
    assert bad[0].code == "bad_len"
    assert "Expected a payload of 50 bytes (header len field), actual 11" in bad[0].detail


def test_payload_structs_round_trip_and_reject_wrong_length() -> None:
    env = DeviceEnvelope()
    arm = Arm(env, env.hash())
    assert Arm.unpack(arm.pack()) == arm
    # state, faults, amp, pw, freq, target, charge, impedance, lease, seq, boot_id, valid,
    # t_tissue, then the sensed block of version 2.
    status = Status(3, 0, 100, 90, 1300, 200, 9, 1000, 200, 4, 77, 1, 20,
                    125_000, 300_000, 34_250, 80_000, 4_200, 40_000, 1234)  # fmt: skip
    frame = Frame(MsgType.STATUS, 1, payload=status.pack())
    assert len(frame.payload) == 56
    assert decode_message(frame) == status
    assert status.features() == {
        "lfp_beta_uv2": 12.5, "lfp_band_uv2": 30.0, "lfp_peak_hz": 34.25, "lfp_peak_uv2": 8.0,
        "units_synchrony": 0.42, "units_rate_hz": 40.0, "charge_mv_ms": 1.234,
    }  # fmt: skip
    with pytest.raises(ProtocolError, match="Expected a NACK payload of 4 bytes, actual 3") as info:
        decode_message(Frame(MsgType.NACK, 1, payload=b"\x01\x02\x03"))
    assert info.value.code == "bad_len"
    with pytest.raises(ProtocolError, match="actual 0x77") as info:
        decode_message(Frame(0x77, 1))
    assert info.value.code == "unknown_type"
    with pytest.raises(ProtocolError, match="fit its integer width"):
        Nack(70000, 1, 0).pack()
    caps = Caps(1, 0, 5, 1, 0, 10000, 20, 450, 20, 2500, 600, 50, 2000, 50, 2000)
    assert Caps.unpack(caps.pack()) == caps


def test_a_version_1_status_is_refused_as_bad_version_naming_both_versions() -> None:
    # Version 1's 66-byte STATUS (its sensed block held synchrony, chi, voltages, the weight).
    v1 = struct.pack(
        "<BIHHHHHHHHIBIHHiIiIiIII", 3, 0, 100, 90, 1300, 200, 9, 1000, 200, 4, 77, 1, 20,
        5000, 4000, -65000, 2000, -60000, 1500, 260000, 40000, 60000, 1234,
    )  # fmt: skip
    with pytest.raises(ProtocolError) as info:
        decode_message(Frame(MsgType.STATUS, 1, payload=v1))
    assert info.value.code == "bad_version"
    assert "Expected a STATUS of device-protocol version 2 (56 bytes), actual 66 bytes" in str(
        info.value
    )
    with pytest.raises(ProtocolError, match="Expected a STATUS payload of 56 bytes, actual 55"):
        decode_message(Frame(MsgType.STATUS, 1, payload=bytes(55)))


def test_default_envelope_matches_spec_and_hash_is_stable() -> None:
    env = DeviceEnvelope()
    check_envelope(env)
    assert shannon_q_max_nc(600) == 1836  # k = 1.75, 0.06 cm²
    assert env.hash() == DeviceEnvelope().hash()
    assert env.hash() != DeviceEnvelope(amp_max_ua=3400).hash()


def test_envelope_beyond_absolute_caps_is_rejected_with_every_reason() -> None:
    with pytest.raises(SafetyLimitError) as info:
        check_envelope(DeviceEnvelope(amp_max_ua=12_000, pw_max_us=500, q_max_nc=2500))
    msg = str(info.value)
    assert "Expected amp_max_ua in [0, 10000], actual 12000" in msg
    assert "Expected pw_max_us in [60, 450], actual 500" in msg
    assert "Expected q_max_nc in [1, 1800], actual 2500" in msg


@pytest.mark.parametrize(
    ("amp", "pw", "freq", "current", "kind", "text"),
    [
        (3600, 90, 1300, None, "out_of_range", "Expected amp_ua in [1, 3500], actual 3600"),
        (1000, 200, 1300, None, "out_of_range", "Expected pw_us in [60, 120], actual 200"),
        (1000, 90, 2000, None, "out_of_range", "Expected freq_dhz in [600, 1850], actual 2000"),
        (1000, 90, 1300, (60, 1300), "slew_limit", "pulse-width step in [0, 10] µs, actual 30"),
        (1000, 90, 1600, (90, 1300), "slew_limit", "frequency step in [0, 200] dHz, actual 300"),
    ],
)
def test_setpoint_problems(
    amp: int, pw: int, freq: int, current: tuple[int, int] | None, kind: str, text: str
) -> None:
    found = setpoint_problem(
        DeviceEnvelope(),
        amp,
        pw,
        freq,
        current_pw_us=current[0] if current else None,
        current_freq_dhz=current[1] if current else None,
    )
    assert found is not None
    assert found[0] == kind
    assert text in found[1]


def test_charge_limit_checks_the_ramp_start_too() -> None:
    env = DeviceEnvelope(amp_max_ua=10_000, pw_max_us=200, q_max_nc=1000)
    assert setpoint_problem(env, 4000, 200, 1000) is None  # 800 nC
    # Amplitude is ramping down from 6 mA: the new 200 µs width at 6 mA would be 1200 nC.
    found = setpoint_problem(env, 4000, 200, 1000, actual_amp_ua=6000)
    assert found is not None
    assert found[0] == "charge_limit"
    assert "Expected charge per phase in [0, 1000] nC, actual 1200" in found[1]
    assert setpoint_problem(env, 0, 0, 0) is None  # off is always allowed
