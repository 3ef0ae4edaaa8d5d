"""Session recordings: round trip, torn and corrupted tails, versions, durability policy."""

from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import CorruptRecordingError, RecordingError
from protocol.client import BackendClient
from protocol.loopback import LOOPBACK_WIRE_ENVELOPE
from protocol.messages import Observation
from protocol.process import spawn_local_backend
from protocol.recording import (
    FORMAT_VERSION,
    Record,
    RecordingReader,
    RecordingWriter,
    read_recording,
)
from protocol.recording._format import PREAMBLE_LEN
from protocol.schema import SpikeWindow


def _keys(records: list[Record]) -> list[tuple[int, str, int, int, bytes]]:
    """Comparable form of records (NaN payloads compare by their msgpack bytes)."""
    return [(r.index, r.kind, r.offset, r.mono_ns, msgpack.packb(r.payload)) for r in records]


META = {"git_sha": "abc123", "envelope_hash": "f" * 64, "seeds": [1, 2], "config": {"n": 3}}


def _write_session(path: Path, ticks: int = 5) -> None:
    with RecordingWriter(path, META) as writer:
        for tick in range(ticks):
            obs = Observation(tick + 1, 20.0 * (tick + 1), 20.0, {"synchrony": 0.1 * tick})
            writer.record_observation(obs)
            writer.record_action([0.5, math.nan, -1.0], policy_id="ppo-7")
            writer.record_command({"amplitude_mv": 100.0}, clamped=True, reasons=["amp>max"])
            writer.record_envelope_event(
                "clamp", "amplitude above max", param="amplitude_mv", requested=120.0, applied=100.0
            )
            writer.record_timing(step_ms=1.5, policy_ms=0.25)


def test_round_trip_with_typed_helpers(tmp_path: Path) -> None:
    path = tmp_path / "session.nlrec"
    _write_session(path, ticks=3)
    rec = read_recording(path)
    assert rec.header.format_version == FORMAT_VERSION
    assert rec.header.meta == META
    assert rec.tail.clean
    assert str(rec.tail).startswith("clean end at byte")
    assert [r.kind for r in rec.records[:5]] == [
        "observation",
        "action",
        "command",
        "envelope_event",
        "timing",
    ]
    assert [r.index for r in rec.records] == list(range(15))
    obs = rec.records[0].payload
    assert obs["type"] == "observation"
    assert obs["fields"] == {"synchrony": 0.0}
    action = rec.records[1].payload["action"]
    assert action[0] == 0.5
    assert math.isnan(action[1])  # NaN is a recorded fact, never cleaned
    assert rec.records[2].payload == {
        "stimulus": {"amplitude_mv": 100.0},
        "clamped": True,
        "rejected": False,
        "reasons": ["amp>max"],
    }
    monos = [r.mono_ns for r in rec.records]
    assert monos == sorted(monos)
    assert rec.header.created_mono_ns <= monos[0]


def test_spikes_are_recorded_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "s.nlrec"
    spikes = SpikeWindow.from_arrays([1.0, 2.0, 3.0], [4, 5, 6])
    with RecordingWriter(path, {}) as writer:
        writer.record_observation(Observation(1, 20.0, 20.0, {"x": 1.0}, None, spikes))
    payload = read_recording(path).records[0].payload
    assert payload["spikes"]["times_ms"] == spikes.times_ms


def test_cut_at_every_byte_of_the_last_frame(tmp_path: Path) -> None:
    path = tmp_path / "full.nlrec"
    _write_session(path, ticks=4)
    full = read_recording(path)
    data = path.read_bytes()
    last = full.records[-1]
    expected = full.records[:-1]
    cut_path = tmp_path / "cut.nlrec"
    for cut in range(last.offset, len(data)):
        cut_path.write_bytes(data[:cut])
        rec = read_recording(cut_path)
        assert _keys(rec.records) == _keys(expected), f"cut at {cut}"
        assert rec.tail.records == len(expected)
        assert rec.tail.offset == last.offset
        if cut == last.offset:
            assert rec.tail.clean
        else:
            assert rec.tail.damage == "torn"
            assert rec.tail.torn_tail
            assert str(rec.tail).startswith(
                f"torn tail at byte {last.offset} after {len(expected)} records"
            )
            with pytest.raises(CorruptRecordingError) as err:
                list(RecordingReader(cut_path, strict=True))
            assert (err.value.good_frames, err.value.offset) == (len(expected), last.offset)


def test_corrupted_byte_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.nlrec"
    _write_session(path, ticks=2)
    full = read_recording(path)
    victim, after = full.records[4], full.records[5]
    data = bytearray(path.read_bytes())
    data[victim.offset + 20] ^= 0x40  # inside the payload
    path.write_bytes(bytes(data))
    rec = read_recording(path)
    assert _keys(rec.records) == _keys(full.records[:4] + full.records[5:])
    assert rec.tail.damage == "corrupt"
    assert rec.tail.offset == victim.offset
    assert "payload CRC-32" in rec.tail.reason
    (region,) = rec.tail.regions
    assert (region.start, region.end, region.lost) == (victim.offset, after.offset, (4, 4))
    with pytest.raises(CorruptRecordingError) as err:
        list(RecordingReader(path, strict=True))
    assert (err.value.good_frames, err.value.offset) == (4, victim.offset)


def test_corrupted_length_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "l.nlrec"
    _write_session(path, ticks=2)
    full = read_recording(path)
    victim = full.records[3]
    data = bytearray(path.read_bytes())
    data[victim.offset + 4] ^= 0x01  # length field: the head CRC covers it
    path.write_bytes(bytes(data))
    rec = read_recording(path)
    assert _keys(rec.records) == _keys(full.records[:3] + full.records[4:])
    assert not rec.tail.clean
    assert not rec.tail.torn_tail
    assert "head CRC-32" in rec.tail.reason


def test_not_a_recording_and_newer_versions_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world, not a recording")
    with pytest.raises(RecordingError, match="Expected a NeuroLoop recording"):
        RecordingReader(junk)
    path = tmp_path / "v.nlrec"
    _write_session(path, ticks=1)
    data = bytearray(path.read_bytes())
    data[PREAMBLE_LEN - 2 : PREAMBLE_LEN] = struct.pack("<H", 99)
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="actual 99 \\(written by a newer NeuroLoop"):
        RecordingReader(path)


def test_damaged_header_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "h.nlrec"
    _write_session(path, ticks=1)
    path.write_bytes(path.read_bytes()[: PREAMBLE_LEN + 10])
    with pytest.raises(CorruptRecordingError) as err:
        RecordingReader(path)
    assert (err.value.good_frames, err.value.offset) == (0, PREAMBLE_LEN)


def test_writer_never_overwrites_and_rejects_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "w.nlrec"
    writer = RecordingWriter(path, {})
    writer.record("note", {"text": "kept"})
    with pytest.raises(RecordingError, match="Expected to create a new recording"):
        RecordingWriter(path, {})
    with pytest.raises(RecordingError, match="record kind"):
        writer.record("Bad Kind!", {})
    with pytest.raises(RecordingError, match="msgpack-able note record"):
        writer.record("note", {"obj": object()})
    writer.record("note", {"text": "also kept"})
    # crash: no close(); every record already reached the OS
    rec = read_recording(path)
    assert [r.payload["text"] for r in rec.records] == ["kept", "also kept"]
    assert rec.tail.clean
    writer.close()
    writer.close()
    with pytest.raises(RecordingError, match="is closed"):
        writer.record("note", {})


def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    now = [0]
    writer = RecordingWriter(
        tmp_path / "f.nlrec", {}, fsync_interval_s=1.0, mono_clock_ns=lambda: now[0]
    )
    assert len(synced) == 1  # header
    for _ in range(10):
        now[0] += 50_000_000  # 50 ms per record
        writer.record("tick", {})
    assert len(synced) == 1  # 0.5 s: flushed, not yet synced
    now[0] += 600_000_000
    writer.record("tick", {})
    assert len(synced) == 2  # 1.1 s since the last sync
    writer.close()
    assert len(synced) == 3  # and on close


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(
        st.dictionaries(
            st.text(max_size=10),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(2**63), 2**64 - 1),
                st.floats(allow_nan=False),
                st.text(max_size=20),
                st.binary(max_size=20),
            ),
            max_size=5,
        ),
        max_size=10,
    )
)
def test_any_msgpack_payload_round_trips(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[dict[str, object]]
) -> None:
    path = tmp_path_factory.mktemp("h") / "p.nlrec"
    with RecordingWriter(path, {"n": len(payloads)}) as writer:
        for payload in payloads:
            writer.record("p", payload)
    assert [r.payload for r in read_recording(path).records] == payloads


def test_client_records_every_message(tmp_path: Path) -> None:
    path = tmp_path / "wire.nlrec"
    cmd = [sys.executable, "-m", "protocol.loopback", "--log-level", "warning"]
    with (
        spawn_local_backend(cmd, "ipc", ready_timeout_s=60.0) as proc,
        RecordingWriter(path, {"what": "wire"}) as writer,
        BackendClient(proc.address, timeout_s=5.0, recorder=writer) as client,
    ):
        client.hello()
        client.configure(LOOPBACK_WIRE_ENVELOPE)
        client.reset()
        client.step(None)
        client.bye()
    records = read_recording(path).records
    assert [r.payload["direction"] for r in records] == ["tx", "rx"] * 5
    types = [r.payload["message"]["type"] for r in records]
    assert types == [
        "hello",
        "welcome",
        "configure",
        "configured",
        "reset",
        "status",
        "step",
        "observation",
        "bye",
        "status",
    ]
