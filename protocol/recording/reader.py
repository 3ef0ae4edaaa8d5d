"""Read a session recording: every intact record, then a clear report of how it ended.

A recording cut short by a crash ends in a *torn* frame (fewer bytes than its length field
announces); a damaged file has a *corrupt* frame (CRC mismatch, undecodable payload, record
out of order). Either way the reader yields every intact record before the damage and stops
there. :attr:`RecordingReader.tail` then says ``"torn tail at byte N after K records: ..."``;
with ``strict=True`` iteration ends by raising :class:`~protocol.errors.CorruptRecordingError`
carrying ``good_frames`` and ``offset`` instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from protocol.errors import CorruptRecordingError, RecordingError
from protocol.recording._format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAME_HEAD,
    MAGIC,
    MAX_FRAME_BYTES,
    PREAMBLE_LEN,
    READABLE_VERSIONS,
    frame_crc,
)


@dataclass(frozen=True)
class RecordingHeader:
    """Frame 0 of a recording."""

    format_version: int
    created_wall_ns: int
    created_mono_ns: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """One record.

    Args:
        index: Position among the records (0-based, header not counted).
        kind: Record kind (``observation``, ``action``, ``command`` ...).
        mono_ns: Monotonic clock when written (same origin as the header's).
        wall_ns: Wall clock (Unix ns) when written.
        payload: The recorded map.
        offset: Byte offset of the record's frame in the file.
    """

    index: int
    kind: str
    mono_ns: int
    wall_ns: int
    payload: dict[str, Any]
    offset: int


@dataclass(frozen=True)
class TailReport:
    """How reading ended.

    Args:
        clean: True if the file ended exactly after the last frame.
        damage: ``""`` when clean, else ``torn`` or ``corrupt``.
        records: Intact records read.
        offset: Byte offset where reading stopped (the file size when clean).
        reason: What was found there.
    """

    clean: bool
    damage: str
    records: int
    offset: int
    reason: str

    def __str__(self) -> str:
        if self.clean:
            return f"clean end at byte {self.offset} after {self.records} records"
        return (
            f"{self.damage} tail at byte {self.offset} after {self.records} records: {self.reason}"
        )


class _DamageError(Exception):
    def __init__(self, damage: str, reason: str) -> None:
        super().__init__(reason)
        self.damage = damage


def _read_frame(f: BinaryIO, offset: int) -> bytes | None:
    """Return the payload of the frame at ``offset``, ``None`` at a clean end of file."""
    head = f.read(FRAME_HEAD.size)
    if not head:
        return None
    if len(head) < FRAME_HEAD.size:
        raise _DamageError(
            "torn", f"Expected an {FRAME_HEAD.size}-byte frame head, actual {len(head)} bytes"
        )
    length, crc = FRAME_HEAD.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise _DamageError(
            "corrupt", f"Expected a frame length <= {MAX_FRAME_BYTES}, actual {length}"
        )
    payload = f.read(length)
    if len(payload) < length:
        raise _DamageError("torn", f"Expected {length} payload bytes, actual {len(payload)}")
    if frame_crc(head[:4], payload) != crc:
        raise _DamageError(
            "corrupt",
            f"Expected CRC-32 {crc:#010x} of the frame at byte {offset}, "
            "actual a different checksum",
        )
    return payload


def _unpack_map(payload: bytes, what: str) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as err:  # any undecodable payload is corruption
        raise _DamageError("corrupt", f"Expected a msgpack {what}, actual: {err}") from err
    if not isinstance(obj, dict):
        raise _DamageError("corrupt", f"Expected a {what} map, actual {type(obj).__name__}")
    return obj


def _header_v1(obj: dict[str, Any]) -> RecordingHeader:
    keys = {"format", "format_version", "created_wall_ns", "created_mono_ns", "meta"}
    if set(obj) != keys or obj["format"] != FORMAT_NAME or not isinstance(obj["meta"], dict):
        raise _DamageError(
            "corrupt",
            f"Expected a {FORMAT_NAME} header with {sorted(keys)}, "
            f"actual keys {sorted(map(str, obj))}",
        )
    return RecordingHeader(
        int(obj["format_version"]),
        int(obj["created_wall_ns"]),
        int(obj["created_mono_ns"]),
        obj["meta"],
    )


def _record_v1(obj: dict[str, Any], expected_index: int, offset: int) -> Record:
    keys = {"i", "kind", "mono_ns", "wall_ns", "payload"}
    if set(obj) != keys:
        raise _DamageError(
            "corrupt", f"Expected record fields {sorted(keys)}, actual {sorted(map(str, obj))}"
        )
    if obj["i"] != expected_index:
        raise _DamageError(
            "corrupt", f"Expected record index {expected_index}, actual {obj['i']!r}"
        )
    if not isinstance(obj["kind"], str) or not isinstance(obj["payload"], dict):
        raise _DamageError("corrupt", "Expected a string kind and a map payload")
    return Record(
        expected_index,
        obj["kind"],
        int(obj["mono_ns"]),
        int(obj["wall_ns"]),
        obj["payload"],
        offset,
    )


#: Decoders per format version: version 1 is the first; add new versions here, keep old ones.
_DECODERS = {1: (_header_v1, _record_v1)}


class RecordingReader:
    """Iterate over the records of a recording.

    Args:
        path: The recording.
        strict: Raise :class:`CorruptRecordingError` at damage instead of stopping quietly.

    Raises:
        RecordingError: if the file is not a NeuroLoop recording or is from a newer format.
        CorruptRecordingError: if the header frame itself is damaged.
    """

    def __init__(self, path: Path | str, *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        self.tail: TailReport | None = None
        try:
            with open(self.path, "rb") as f:
                head = f.read(PREAMBLE_LEN)
                if len(head) < PREAMBLE_LEN or not head.startswith(MAGIC):
                    raise RecordingError(
                        f"Expected a NeuroLoop recording (starting {MAGIC!r}) at "
                        f"{self.path}, actual {head[:PREAMBLE_LEN]!r}"
                    )
                (self.format_version,) = struct.unpack("<H", head[len(MAGIC) :])
                if self.format_version not in READABLE_VERSIONS:
                    raise RecordingError(
                        f"Expected recording format version in {list(READABLE_VERSIONS)}, actual "
                        f"{self.format_version} (written by a newer NeuroLoop than this "
                        f"one, which writes {FORMAT_VERSION})"
                    )
                decode_header, self._decode_record = _DECODERS[self.format_version]
                try:
                    payload = _read_frame(f, PREAMBLE_LEN)
                    if payload is None:
                        raise _DamageError("torn", "Expected a header frame, actual end of file")
                    self.header = decode_header(_unpack_map(payload, "header"))
                except _DamageError as damage:
                    raise CorruptRecordingError(
                        f"{damage.damage} header at byte {PREAMBLE_LEN} of {self.path}: {damage}",
                        good_frames=0,
                        offset=PREAMBLE_LEN,
                    ) from damage
                self._first_offset = f.tell()
        except OSError as err:
            raise RecordingError(
                f"Expected a readable recording at {self.path}, actual: {err}"
            ) from err

    def __iter__(self) -> Iterator[Record]:
        with open(self.path, "rb") as f:
            f.seek(self._first_offset)
            count = 0
            offset = self._first_offset
            while True:
                try:
                    payload = _read_frame(f, offset)
                    if payload is None:
                        self.tail = TailReport(True, "", count, offset, "")
                        return
                    record = self._decode_record(_unpack_map(payload, "record"), count, offset)
                except _DamageError as damage:
                    self.tail = TailReport(False, damage.damage, count, offset, str(damage))
                    if self.strict:
                        raise CorruptRecordingError(
                            f"{self.tail} ({self.path})", good_frames=count, offset=offset
                        ) from damage
                    return
                yield record
                count += 1
                offset = f.tell()


@dataclass(frozen=True)
class Recording:
    """A whole recording in memory: header, intact records and the tail report."""

    header: RecordingHeader
    records: list[Record]
    tail: TailReport


def read_recording(path: Path | str, *, strict: bool = False) -> Recording:
    """Read every intact record of ``path`` (see :class:`RecordingReader`)."""
    reader = RecordingReader(path, strict=strict)
    records = list(reader)
    assert reader.tail is not None  # set by the exhausted iterator
    return Recording(reader.header, records, reader.tail)
