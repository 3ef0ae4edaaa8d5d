"""Byte layout of a session recording (format version 1).

A recording is an 8-byte file preamble followed by frames::

    preamble  = b"NLREC" 0x00 u16le(format_version)
    frame     = u32le(payload_len) u32le(crc32(u32le(payload_len) + payload)) payload
    payload   = one msgpack map

Frame 0 is the header map; every later frame is one record map. The CRC covers the length
field too, so a corrupted length is caught as surely as a corrupted payload. Integers are
little-endian. See ``docs/protocol.md`` §8.
"""

from __future__ import annotations

import struct
import zlib

MAGIC = b"NLREC\x00"
#: The format version this package writes.
FORMAT_VERSION = 1
#: Versions the reader understands (every version ever written).
READABLE_VERSIONS = (1,)
PREAMBLE_LEN = len(MAGIC) + 2
FRAME_HEAD = struct.Struct("<II")
#: Largest frame payload written or read (bytes).
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Identifies the header map of a recording.
FORMAT_NAME = "neuroloop-session"


def preamble(version: int = FORMAT_VERSION) -> bytes:
    """The 8 bytes every recording starts with."""
    return MAGIC + struct.pack("<H", version)


def frame_crc(length_bytes: bytes, payload: bytes) -> int:
    """CRC-32 (zlib) of the length field and the payload."""
    return zlib.crc32(payload, zlib.crc32(length_bytes)) & 0xFFFFFFFF


def encode_frame(payload: bytes) -> bytes:
    """Frame ``payload`` (length + CRC + payload)."""
    length_bytes = struct.pack("<I", len(payload))
    return length_bytes + struct.pack("<I", frame_crc(length_bytes, payload)) + payload
