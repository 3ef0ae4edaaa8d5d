"""Following a recording while it is written: every record once, in order, none before it is
whole; bytes its writer could not have written are an error naming where they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import CorruptRecordingError, RecordingError
from protocol.recording import RecordingWriter, read_recording
from protocol.recording.follow import RecordingFollower


def _keys(records: list) -> list[tuple[int, str, dict]]:
    return [(r.index, r.kind, r.payload) for r in records]


def test_follower_sees_each_record_once_in_order_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "live.nlrec"
    seen = []
    writer = RecordingWriter(path, {"config": {"period_ms": 10.0}})
    with writer, RecordingFollower(path) as follower:
        assert follower.header.meta == {"config": {"period_ms": 10.0}}
        assert follower.poll() == []
        for tick in range(50):
            writer.record("command", {"tick": tick})
            writer.record("timing", {"tick": tick, "latency_ms": 0.1 * tick})
            if tick % 7 == 0:  # the follower looks now and then, as the monitor does
                seen += follower.poll()
        seen += follower.poll()
        assert follower.poll() == []
    whole = read_recording(path).records
    assert len(seen) == 100
    assert _keys(seen) == _keys(whole)
    assert [r.offset for r in seen] == [r.offset for r in whole]
    assert [r.wall_ns for r in seen] == [r.wall_ns for r in whole]


def test_a_frame_being_written_waits_until_it_is_whole(tmp_path: Path) -> None:
    source = tmp_path / "source.nlrec"
    with RecordingWriter(source, {}) as writer:
        for tick in range(3):
            writer.record("command", {"tick": tick, "pad": "x" * 40})
    data = source.read_bytes()
    frames = [r.offset for r in read_recording(source).records] + [len(data)]
    live = tmp_path / "live.nlrec"
    live.write_bytes(data[: frames[0]])  # preamble and header only
    with RecordingFollower(live) as follower, live.open("ab") as out:
        assert follower.poll() == []
        got = []
        for cut in range(frames[0] + 1, len(data) + 1, 5):  # appended 5 bytes at a time
            out.write(data[out.tell() : cut])
            out.flush()
            got += follower.poll()
            assert len(got) == sum(1 for end in frames[1:] if end <= cut)
        out.write(data[out.tell() :])
        out.flush()
        got += follower.poll()
    assert [r.payload["tick"] for r in got] == [0, 1, 2]


def test_foreign_bytes_are_an_error_naming_where(tmp_path: Path) -> None:
    path = tmp_path / "live.nlrec"
    with RecordingWriter(path, {}) as writer:
        writer.record("command", {"tick": 0})
    size = path.stat().st_size
    with RecordingFollower(path) as follower:
        assert [r.payload for r in follower.poll()] == [{"tick": 0}]
        with path.open("ab") as out:
            out.write(b"this is not a frame of a recording")
        with pytest.raises(CorruptRecordingError, match=f"at byte {size} .* after 1 records"):
            follower.poll()


def test_not_a_recording_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(RecordingError, match="Expected a NeuroLoop recording"):
        RecordingFollower(path)
