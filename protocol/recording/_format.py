"""Byte layout of a session recording (format versions 1 and 2) and its frame parser.

A recording is an 8-byte file preamble followed by frames::

    preamble   = b"NLREC" 0x00 u16le(format_version)
    frame v2   = SYNC u32le(len) u32le(payload_crc) u32le(head_crc) payload
                 SYNC        = c1 4e 4c 46 (0xC1, never a msgpack type byte, then "NLF")
                 payload_crc = crc32(payload)
                 head_crc    = crc32(SYNC ‖ u32le(len) ‖ u32le(payload_crc))
    frame v1   = u32le(len) u32le(crc32(u32le(len) ‖ payload)) payload
    payload    = one msgpack map

Frame 0 is the header map; every later frame is one record map. Version 2 (written since
issue 18) adds the sync marker and a checksum of the frame head, so that a reader can find the
next intact frame after damage (scan for SYNC, check the head CRC) and can tell a damaged
length (head CRC mismatch) from a file that simply ends early (an intact head announcing more
bytes than remain). Integers are little-endian. See ``docs/protocol.md`` §9.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"NLREC\x00"
#: The format version this package writes.
FORMAT_VERSION = 2
#: Versions the reader understands (every version ever written).
READABLE_VERSIONS = (1, 2)
PREAMBLE_LEN = len(MAGIC) + 2
#: Frame head of format version 1: length, CRC of length and payload.
FRAME_HEAD_V1 = struct.Struct("<II")
#: Start of every version-2 frame.
SYNC = b"\xc1NLF"
#: Frame head of format version 2: sync marker, length, payload CRC, head CRC.
FRAME_HEAD_V2 = struct.Struct("<4sIII")
#: Largest frame payload written or read (bytes).
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Identifies the header map of a recording.
FORMAT_NAME = "neuroloop-session"
#: A whole recording in memory or mapped from its file.
Buffer = bytes | mmap.mmap
#: First byte of a msgpack map (fixmap 0x80-0x8f, map16 0xde, map32 0xdf).
_MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def preamble(version: int = FORMAT_VERSION) -> bytes:
    """The 8 bytes every recording starts with."""
    return MAGIC + struct.pack("<H", version)


def crc32(data: Buffer, start: int = 0) -> int:
    """CRC-32 (zlib, IEEE 802.3) of ``data`` continuing from ``start``."""
    return zlib.crc32(data, start) & 0xFFFFFFFF


def frame_crc(length_bytes: bytes, payload: bytes) -> int:
    """Version 1: CRC-32 of the length field and the payload."""
    return crc32(payload, crc32(length_bytes))


def _head_crc_v2(length: int, payload_crc: int) -> int:
    return crc32(SYNC + struct.pack("<II", length, payload_crc))


def encode_frame(payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """Frame ``payload`` in the layout of ``version``."""
    if version == 1:
        length_bytes = struct.pack("<I", len(payload))
        return length_bytes + struct.pack("<I", frame_crc(length_bytes, payload)) + payload
    payload_crc = crc32(payload)
    head = FRAME_HEAD_V2.pack(
        SYNC, len(payload), payload_crc, _head_crc_v2(len(payload), payload_crc)
    )
    return head + payload


@dataclass(frozen=True)
class Parsed:
    """What lies at one offset: an intact frame, or why there is none.

    Args:
        status: ``ok``, ``torn`` (the bytes to the end of the file are the start of a frame
            whose rest is missing) or ``corrupt`` (anything else).
        reason: What was expected and what was found (empty when ok).
        payload_start: Offset of the payload (ok only).
        end: Offset just after the frame (ok only).
    """

    status: str
    reason: str = ""
    payload_start: int = 0
    end: int = 0


def _parse_v1(buf: Buffer, offset: int) -> Parsed:
    remaining = len(buf) - offset
    size = FRAME_HEAD_V1.size
    if remaining < size:
        return Parsed("torn", f"Expected an {size}-byte frame head, actual {remaining} bytes")
    length, crc = FRAME_HEAD_V1.unpack_from(buf, offset)
    if length > MAX_FRAME_BYTES:
        return Parsed("corrupt", f"Expected a frame length <= {MAX_FRAME_BYTES}, actual {length}")
    start = offset + size
    if remaining - size < length:
        return Parsed(
            "torn", f"Expected {length} payload bytes, actual {remaining - size} before the end"
        )
    if frame_crc(bytes(buf[offset : offset + 4]), bytes(buf[start : start + length])) != crc:
        return Parsed(
            "corrupt", f"Expected CRC-32 {crc:#010x} of the frame, actual a different checksum"
        )
    return Parsed("ok", "", start, start + length)


def _parse_v2(buf: Buffer, offset: int) -> Parsed:
    remaining = len(buf) - offset
    size = FRAME_HEAD_V2.size
    if remaining < size:
        got = bytes(buf[offset : offset + min(remaining, len(SYNC))])
        if SYNC.startswith(got):
            return Parsed(
                "torn",
                f"Expected a {size}-byte frame head, actual {remaining} bytes before the end",
            )
        return Parsed(
            "corrupt", f"Expected the frame marker {SYNC.hex(' ')}, actual {got.hex(' ')}"
        )
    sync, length, payload_crc, head_crc = FRAME_HEAD_V2.unpack_from(buf, offset)
    if sync != SYNC:
        return Parsed(
            "corrupt", f"Expected the frame marker {SYNC.hex(' ')}, actual {sync.hex(' ')}"
        )
    if _head_crc_v2(length, payload_crc) != head_crc:
        return Parsed(
            "corrupt",
            f"Expected head CRC-32 {head_crc:#010x}, actual a different checksum (damaged length "
            "or payload checksum)",
        )
    if length > MAX_FRAME_BYTES:
        return Parsed("corrupt", f"Expected a frame length <= {MAX_FRAME_BYTES}, actual {length}")
    start = offset + size
    if remaining - size < length:
        return Parsed(
            "torn", f"Expected {length} payload bytes, actual {remaining - size} before the end"
        )
    if crc32(buf[start : start + length]) != payload_crc:
        return Parsed(
            "corrupt",
            f"Expected payload CRC-32 {payload_crc:#010x}, actual a different checksum",
        )
    return Parsed("ok", "", start, start + length)


def parse_frame(buf: Buffer, offset: int, version: int) -> Parsed:
    """Parse the frame of format ``version`` at ``offset`` of ``buf`` (the whole file)."""
    return _parse_v1(buf, offset) if version == 1 else _parse_v2(buf, offset)


def next_candidate(buf: Buffer, start: int, version: int) -> int:
    """The first offset ``>= start`` at which a record frame may begin, ``-1`` if none.

    A version-2 frame starts with :data:`SYNC`. A version-1 record frame has no marker, but
    every record map has exactly five keys, so its payload starts with the byte 0x85.
    """
    if version == 1:
        found = buf.find(b"\x85", start + FRAME_HEAD_V1.size)
        return -1 if found == -1 else found - FRAME_HEAD_V1.size
    return buf.find(SYNC, start)


def may_be_frame(buf: Buffer, offset: int, version: int) -> bool:
    """Cheap test before a full parse while resynchronising (a map payload must follow)."""
    head = FRAME_HEAD_V1.size if version == 1 else FRAME_HEAD_V2.size
    if offset + head >= len(buf):  # a record map is never empty
        return False
    if version == 1:
        (length,) = struct.unpack_from("<I", buf, offset)
        if length > len(buf) - offset - head:
            return False
    return buf[offset + head] in _MAP_MARKERS
