"""Damaged recordings: every intact record is recovered, every damaged region is reported.

A real recording written by :class:`RecordingWriter` is damaged byte by byte (every position,
including the sync marker, the length, both checksums and the payload of every frame) and
cut at every byte of its last frame; the reader must resynchronise on the next intact frame,
report each damaged region with its byte offsets and the record indices it swallowed, and
tell a torn tail (the writer stopped mid-record) from damage.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import CorruptRecordingError
from protocol.messages import Observation
from protocol.recording import FORMAT_VERSION, Record, RecordingWriter, read_recording
from protocol.recording._format import FRAME_HEAD_V2, SYNC, encode_frame

TICKS = 3


def _write(path: Path, ticks: int = TICKS) -> Path:
    with RecordingWriter(path, {"config": {"period_ms": 20.0}}) as writer:
        for tick in range(ticks):
            writer.record_command({"amplitude_mv": 10.0 * tick}, reasons=["soft_start"])
            writer.record_observation(
                Observation(tick + 1, 20.0 * (tick + 1), 20.0, {"synchrony": 0.1 * tick})
            )
            writer.record_action([0.5, math.nan], policy_id="ppo")
            writer.record_timing(step_ms=1.5, policy_ms=0.25)
    return path


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[Record]]:
    path = _write(tmp_path_factory.mktemp("orig") / "s.nlrec")
    rec = read_recording(path)
    assert rec.tail.clean
    assert path.read_bytes()[6] == FORMAT_VERSION == 2
    return path.read_bytes(), rec.records


def _key(r: Record) -> tuple[int, str, int, int, bytes]:
    return (r.index, r.kind, r.offset, r.mono_ns, msgpack.packb(r.payload))


def _frames(data: bytes, records: list[Record]) -> list[tuple[int, int]]:
    """Byte span ``[start, end)`` of each record's frame."""
    starts = [r.offset for r in records] + [len(data)]
    return list(itertools.pairwise(starts))


def _damaged_spans(spans: list[tuple[int, int]], hit: set[int]) -> list[tuple[int, int]]:
    """Merged byte spans of the frames in ``hit`` (adjacent damaged frames form one region)."""
    merged: list[tuple[int, int]] = []
    for i in sorted(hit):
        start, end = spans[i]
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _check(
    path: Path, data: bytes, records: list[Record], positions: set[int], where: str
) -> None:
    spans = _frames(data, records)
    hit = {i for i, (a, b) in enumerate(spans) if any(a <= p < b for p in positions)}
    rec = read_recording(path)
    assert [_key(r) for r in rec.records] == [
        _key(r) for i, r in enumerate(records) if i not in hit
    ], where
    regions = [(g.start, g.end) for g in rec.tail.regions]
    assert regions == _damaged_spans(spans, hit), where
    assert all(g.kind == "corrupt" for g in rec.tail.regions), where
    assert not rec.tail.torn_tail, where
    for g in rec.tail.regions:
        if g.end < len(data):  # the next intact record tells which indices were lost
            first = next(i for i, (a, _) in enumerate(spans) if a == g.start)
            last = next(i for i, (_, b) in enumerate(spans) if b == g.end)
            assert g.lost == (first, last), where
        else:
            assert g.lost is None, where
    assert rec.tail.records == len(records) - len(hit)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_a_flipped_byte_anywhere_loses_only_its_own_frame(
    tmp_path: Path, original: tuple[bytes, list[Record]], mask: int
) -> None:
    data, records = original
    path = tmp_path / "flip.nlrec"
    for pos in range(records[0].offset, len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= mask
        path.write_bytes(bytes(damaged))
        _check(path, data, records, {pos}, f"byte {pos} ^ {mask:#x}")


def test_a_damaged_length_is_damage_not_a_torn_tail(
    tmp_path: Path, original: tuple[bytes, list[Record]]
) -> None:
    data, records = original
    path = tmp_path / "len.nlrec"
    for victim in (records[3], records[-1]):  # mid-file, and the last frame
        length_at = victim.offset + len(SYNC)
        for pos in range(length_at, length_at + 4):
            for value in (0x00, 0xFF):  # shorter, and longer than the rest of the file
                damaged = bytearray(data)
                damaged[pos] = value if data[pos] != value else value ^ 0x10
                path.write_bytes(bytes(damaged))
                rec = read_recording(path)
                assert not rec.tail.torn_tail
                assert rec.tail.damage == "corrupt"
                assert "head CRC-32" in rec.tail.reason
                assert rec.tail.offset == victim.offset
                assert len(rec.records) == len(records) - 1


def test_a_cut_inside_the_last_frame_is_a_torn_tail(
    tmp_path: Path, original: tuple[bytes, list[Record]]
) -> None:
    data, records = original
    path = tmp_path / "cut.nlrec"
    last = records[-1]
    for cut in range(last.offset + 1, len(data)):
        path.write_bytes(data[:cut])
        rec = read_recording(path)
        assert rec.tail.torn_tail, cut
        (region,) = rec.tail.regions
        assert (region.start, region.end, region.kind) == (last.offset, cut, "torn")
        assert [_key(r) for r in rec.records] == [_key(r) for r in records[:-1]]


def test_mid_file_damage_and_a_torn_tail_are_both_reported(
    tmp_path: Path, original: tuple[bytes, list[Record]]
) -> None:
    data, records = original
    damaged = bytearray(data[: records[-1].offset + 10])
    damaged[records[5].offset + 20] ^= 0x04
    path = tmp_path / "both.nlrec"
    path.write_bytes(bytes(damaged))
    rec = read_recording(path)
    assert [g.kind for g in rec.tail.regions] == ["corrupt", "torn"]
    assert not rec.tail.torn_tail
    assert rec.tail.damage == "corrupt"
    assert str(rec.tail).startswith("damaged: 2 region(s), ")
    assert len(rec.records) == len(records) - 2


def test_garbage_after_the_last_frame_is_corrupt_not_torn(
    tmp_path: Path, original: tuple[bytes, list[Record]]
) -> None:
    data, records = original
    path = tmp_path / "junk.nlrec"
    path.write_bytes(data + b"\x00" * 40)  # e.g. a zero-filled block after a power loss
    rec = read_recording(path)
    assert [(g.kind, g.start, g.end) for g in rec.tail.regions] == [
        ("corrupt", len(data), len(data) + 40)
    ]
    assert len(rec.records) == len(records)


def test_a_removed_frame_is_reported_as_missing_records(
    tmp_path: Path, original: tuple[bytes, list[Record]]
) -> None:
    data, records = original
    spans = _frames(data, records)
    a, b = spans[7]
    path = tmp_path / "gap.nlrec"
    path.write_bytes(data[:a] + data[b:])
    rec = read_recording(path)
    (region,) = rec.tail.regions
    assert (region.kind, region.start, region.end, region.lost) == ("missing", a, a, (7, 7))
    assert [r.index for r in rec.records] == [i for i in range(len(records)) if i != 7]
    with pytest.raises(CorruptRecordingError) as err:
        read_recording(path, strict=True)
    assert (err.value.good_frames, err.value.offset) == (7, a)


def test_a_repeated_frame_is_damage(tmp_path: Path, original: tuple[bytes, list[Record]]) -> None:
    data, records = original
    a, b = _frames(data, records)[4]
    path = tmp_path / "dup.nlrec"
    path.write_bytes(data[:b] + data[a:b] + data[b:])
    rec = read_recording(path)
    (region,) = rec.tail.regions
    assert (region.kind, region.start, region.end) == ("corrupt", b, b + (b - a))
    assert "repeated or out-of-order" in region.reason
    assert [r.index for r in rec.records] == list(range(len(records)))


def test_a_sync_marker_inside_a_payload_does_not_fool_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "sync.nlrec"
    fake = encode_frame(msgpack.packb({"i": 1, "kind": "x", "mono_ns": 0, "wall_ns": 0}))
    with RecordingWriter(path, {}) as writer:
        for i in range(5):
            writer.record("blob", {"bytes": SYNC * 3 + fake, "n": i})
    data = path.read_bytes()
    records = read_recording(path).records
    spans = _frames(data, records)
    damaged = bytearray(data)
    damaged[spans[1][0] + FRAME_HEAD_V2.size - 1] ^= 0x20  # head CRC of record 1
    path.write_bytes(bytes(damaged))
    rec = read_recording(path)
    assert [r.payload["n"] for r in rec.records] == [0, 2, 3, 4]
    assert [(g.start, g.end) for g in rec.tail.regions] == [spans[1]]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_any_set_of_damaged_bytes_loses_only_the_frames_it_touches(
    tmp_path_factory: pytest.TempPathFactory,
    original: tuple[bytes, list[Record]],
    data: st.DataObject,
) -> None:
    raw, records = original
    first = records[0].offset
    flips = data.draw(
        st.dictionaries(
            st.integers(first, len(raw) - 1), st.integers(1, 255), min_size=1, max_size=6
        )
    )
    damaged = bytearray(raw)
    for pos, mask in flips.items():
        damaged[pos] ^= mask
    path = tmp_path_factory.mktemp("prop") / "p.nlrec"
    path.write_bytes(bytes(damaged))
    _check(path, raw, records, set(flips), f"flips {flips}")


V1_FIXTURE = Path(__file__).parent / "data" / "replay" / "v1_sim_constant.nlrec"


def test_format_1_recordings_resynchronise_too(tmp_path: Path) -> None:
    data = V1_FIXTURE.read_bytes()
    assert data[6] == 1
    records = read_recording(V1_FIXTURE).records
    spans = _frames(data, records)
    path = tmp_path / "v1.nlrec"
    # every byte of three frames (length and CRC fields included), and 100 positions spread
    # over the whole file
    positions = {p for i in (0, len(records) // 2, len(records) - 2) for p in range(*spans[i])}
    positions |= set(range(records[0].offset, len(data), (len(data) - records[0].offset) // 100))
    for pos in sorted(positions):
        damaged = bytearray(data)
        damaged[pos] ^= 0xFF
        path.write_bytes(bytes(damaged))
        _check(path, data, records, {pos}, f"v1 byte {pos}")


def test_format_1_cannot_tell_a_damaged_last_length_from_a_torn_tail(tmp_path: Path) -> None:
    """Documented limit of format 1 (no head checksum); format 2 tells them apart."""
    data = V1_FIXTURE.read_bytes()
    last = read_recording(V1_FIXTURE).records[-1]
    damaged = bytearray(data)
    damaged[last.offset + 2] ^= 0x01  # the length now announces 64 KiB more than remains
    path = tmp_path / "v1-last.nlrec"
    path.write_bytes(bytes(damaged))
    assert read_recording(path).tail.torn_tail
