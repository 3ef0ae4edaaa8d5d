"""Read a session recording: every intact record, and a report of every damaged region.

A recording cut short by a crash ends in a *torn* frame (the file ends inside it); a damaged
file has *corrupt* bytes (a checksum mismatch, a missing sync marker, an undecodable payload, a
record out of order) somewhere. The reader yields every intact record, resynchronising on the
next intact frame after damage, and :attr:`RecordingReader.tail` then reports how it went:
``"clean end at byte N after K records"``, ``"torn tail at byte N after K records: ..."`` or
``"damaged: R region(s), K intact records recovered: corrupt bytes A-B: ...; ..."``. With
``strict=True`` iteration ends at the first damage by raising
:class:`~core.errors.CorruptRecordingError` carrying ``good_frames`` and ``offset``.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from core.errors import CorruptRecordingError, RecordingError
from protocol.recording._format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAGIC,
    PREAMBLE_LEN,
    READABLE_VERSIONS,
    Buffer,
    may_be_frame,
    next_candidate,
    parse_frame,
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
class DamagedRegion:
    """A stretch of a recording with no intact frame in it.

    Args:
        start: Byte offset where the damage starts (the first byte of the damaged frame).
        end: Byte offset just after it: the start of the next intact frame, or the file size.
        kind: ``torn`` (the file ends inside a frame: the writer stopped mid-record),
            ``corrupt`` (bytes that are not an intact frame) or ``missing`` (intact frames,
            but record indices skipped between them: ``start == end``).
        reason: What was expected at ``start`` and what was found.
        records_before: Intact records read before the region.
        lost: Record indices lost in it, ``(first, last)`` inclusive, when the next intact
            record tells (``None`` at the end of the file).
    """

    start: int
    end: int
    kind: str
    reason: str
    records_before: int
    lost: tuple[int, int] | None

    def __str__(self) -> str:
        lost = ""
        if self.lost is not None:
            first, last = self.lost
            lost = f"; record {first} lost" if first == last else f"; records {first}-{last} lost"
        return f"{self.kind} bytes {self.start}-{self.end}: {self.reason}{lost}"


@dataclass(frozen=True)
class TailReport:
    """How reading went: a clean end, a torn tail, or damaged regions.

    Args:
        records: Intact records read (before, between and after damaged regions).
        size: File size in bytes.
        regions: Every damaged region, in file order.
    """

    records: int
    size: int
    regions: tuple[DamagedRegion, ...] = ()

    @property
    def clean(self) -> bool:
        """True if every byte belongs to an intact frame and no record index is skipped."""
        return not self.regions

    @property
    def torn_tail(self) -> bool:
        """True if the only damage is a torn last frame (a writer that stopped mid-record)."""
        return len(self.regions) == 1 and self.regions[0].kind == "torn"

    @property
    def damage(self) -> str:
        """``""`` when clean, ``torn`` for a torn tail only, else ``corrupt``."""
        if self.clean:
            return ""
        return "torn" if self.torn_tail else "corrupt"

    @property
    def offset(self) -> int:
        """Where the first damage starts (the file size when clean)."""
        return self.regions[0].start if self.regions else self.size

    @property
    def reason(self) -> str:
        """What was found at the first damage (empty when clean)."""
        return self.regions[0].reason if self.regions else ""

    def __str__(self) -> str:
        if self.clean:
            return f"clean end at byte {self.size} after {self.records} records"
        if self.torn_tail:
            r = self.regions[0]
            return f"torn tail at byte {r.start} after {self.records} records: {r.reason}"
        return (
            f"damaged: {len(self.regions)} region(s), {self.records} intact records recovered: "
            + "; ".join(str(r) for r in self.regions)
        )


class _DamageError(Exception):
    def __init__(self, damage: str, reason: str) -> None:
        super().__init__(reason)
        self.damage = damage


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


def _record_v1(obj: dict[str, Any], offset: int) -> Record:
    keys = {"i", "kind", "mono_ns", "wall_ns", "payload"}
    if set(obj) != keys:
        raise _DamageError(
            "corrupt", f"Expected record fields {sorted(keys)}, actual {sorted(map(str, obj))}"
        )
    index = obj["i"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _DamageError("corrupt", f"Expected a record index >= 0, actual {index!r}")
    if not isinstance(obj["kind"], str) or not isinstance(obj["payload"], dict):
        raise _DamageError("corrupt", "Expected a string kind and a map payload")
    if not isinstance(obj["mono_ns"], int) or not isinstance(obj["wall_ns"], int):
        raise _DamageError("corrupt", "Expected integer mono_ns and wall_ns")
    return Record(index, obj["kind"], obj["mono_ns"], obj["wall_ns"], obj["payload"], offset)


#: Decoders per format version (version 2 changed only the framing); keep every old one.
_DECODERS = {1: (_header_v1, _record_v1), 2: (_header_v1, _record_v1)}


def _map_file(f: BinaryIO) -> Buffer:
    """The whole file, memory-mapped read-only (bytes for an empty file)."""
    try:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # an empty file cannot be mapped
        return f.read()


class RecordingReader:
    """Iterate over every intact record of a recording, across damaged regions.

    At damage (a frame that is not intact) the reader searches forward for the next intact
    frame (format 2: the next sync marker whose head and payload checksums hold; format 1: any
    offset where they hold) whose record index follows the last one read, and goes on from
    there. Every damaged region is reported in :attr:`tail` with its byte offsets and the record
    indices it swallowed. A region that runs to the end of the file and holds only the start of
    one frame (an intact head announcing more bytes than remain, or a partial head) is a
    *torn* tail: a writer stopped mid-record. Anything else is *corrupt*. Format-1 frames carry
    no head checksum, so there a damaged length in the last frame also reads as a torn tail.

    Args:
        path: The recording.
        strict: Raise :class:`CorruptRecordingError` at the first damage instead of going on.

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
                f.seek(0)
                buf = _map_file(f)
        except OSError as err:
            raise RecordingError(
                f"Expected a readable recording at {self.path}, actual: {err}"
            ) from err
        try:
            parsed = parse_frame(buf, PREAMBLE_LEN, self.format_version)
            if parsed.status != "ok":
                raise _DamageError(parsed.status, parsed.reason)
            payload = bytes(buf[parsed.payload_start : parsed.end])
            self.header = decode_header(_unpack_map(payload, "header"))
        except _DamageError as damage:
            raise CorruptRecordingError(
                f"{damage.damage} header at byte {PREAMBLE_LEN} of {self.path}: {damage}",
                good_frames=0,
                offset=PREAMBLE_LEN,
            ) from damage
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()
        self._first_offset = parsed.end

    def _record_at(self, buf: Buffer, offset: int, last_index: int) -> tuple[Record, int]:
        """The intact record at ``offset`` and the end of its frame, or :class:`_DamageError`."""
        parsed = parse_frame(buf, offset, self.format_version)
        if parsed.status != "ok":
            raise _DamageError(parsed.status, parsed.reason)
        payload = bytes(buf[parsed.payload_start : parsed.end])
        record = self._decode_record(_unpack_map(payload, "record"), offset)
        if record.index <= last_index:
            raise _DamageError(
                "corrupt",
                f"Expected a record index above {last_index}, actual {record.index} "
                "(a repeated or out-of-order record)",
            )
        return record, parsed.end

    def _resync(self, buf: Buffer, start: int, last_index: int) -> int:
        """Offset of the next intact record after ``start``, ``-1`` if there is none."""
        pos = next_candidate(buf, start, self.format_version)
        while pos != -1:
            if may_be_frame(buf, pos, self.format_version):
                try:
                    self._record_at(buf, pos, last_index)
                    return pos
                except _DamageError:
                    pass
            pos = next_candidate(buf, pos + 1, self.format_version)
        return -1

    def __iter__(self) -> Iterator[Record]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed in finally
        except OSError as err:
            raise RecordingError(
                f"Expected a readable recording at {self.path}, actual: {err}"
            ) from err
        buf = _map_file(f)
        try:
            yield from self._records(buf)
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()
            f.close()

    def _records(self, buf: Buffer) -> Iterator[Record]:
        size = len(buf)
        count = 0
        last_index = -1
        offset = self._first_offset
        regions: list[DamagedRegion] = []
        while offset < size:
            try:
                record, end = self._record_at(buf, offset, last_index)
            except _DamageError as damage:
                if self.strict:
                    self.tail = TailReport(
                        count,
                        size,
                        (DamagedRegion(offset, size, damage.damage, str(damage), count, None),),
                    )
                    raise CorruptRecordingError(
                        f"{self.tail} ({self.path})", good_frames=count, offset=offset
                    ) from damage
                resume = self._resync(buf, offset + 1, last_index)
                if resume == -1:
                    regions.append(
                        DamagedRegion(offset, size, damage.damage, str(damage), count, None)
                    )
                    break
                record, end = self._record_at(buf, resume, last_index)
                regions.append(
                    DamagedRegion(
                        offset,
                        resume,
                        "corrupt",
                        str(damage),
                        count,
                        (last_index + 1, record.index - 1)
                        if record.index > last_index + 1
                        else None,
                    )
                )
            else:
                if record.index != last_index + 1:
                    reason = (
                        f"Expected record index {last_index + 1}, actual {record.index} in an "
                        "intact frame"
                    )
                    if self.strict:
                        self.tail = TailReport(
                            count,
                            size,
                            (DamagedRegion(offset, offset, "missing", reason, count, None),),
                        )
                        raise CorruptRecordingError(
                            f"{self.tail} ({self.path})", good_frames=count, offset=offset
                        )
                    regions.append(
                        DamagedRegion(
                            offset,
                            offset,
                            "missing",
                            reason,
                            count,
                            (last_index + 1, record.index - 1),
                        )
                    )
            yield record
            count += 1
            last_index = record.index
            offset = end
        self.tail = TailReport(count, size, tuple(regions))


@dataclass(frozen=True)
class Recording:
    """A whole recording in memory: header, intact records and the read report."""

    header: RecordingHeader
    records: list[Record]
    tail: TailReport


def read_recording(path: Path | str, *, strict: bool = False) -> Recording:
    """Read every intact record of ``path`` (see :class:`RecordingReader`)."""
    reader = RecordingReader(path, strict=strict)
    records = list(reader)
    assert reader.tail is not None  # set by the exhausted iterator
    return Recording(reader.header, records, reader.tail)
