"""Frames of the device wire protocol: header, CRC-16, COBS and a streaming decoder.

A frame on the wire is ``COBS(header ‖ payload ‖ crc16) ‖ 0x00`` (``docs/device-protocol.md``
§2–§3). Everything here is pure and allocation-light: no I/O, no clock, no threads. The
:class:`FrameDecoder` takes bytes in any chunking and returns the frames it completed plus one
:class:`BadFrame` per damaged frame, each with a reason; it never raises on wire bytes and its
buffer never grows past :data:`MAX_ENCODED_FRAME_BYTES`.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from enum import IntFlag

from core.errors import ProtocolError
from drivers.cobs import cobs_decode, cobs_encode

#: Protocol version carried in byte 0 of every header.
PROTOCOL_VERSION = 1
#: Frame delimiter on the wire.
DELIMITER = b"\x00"
#: Fixed header size in bytes.
HEADER_BYTES = 12
#: CRC trailer size in bytes.
CRC_BYTES = 2
#: Largest payload a frame may carry.
MAX_PAYLOAD_BYTES = 200
#: Largest unstuffed frame (header + payload + CRC).
MAX_RAW_FRAME_BYTES = HEADER_BYTES + MAX_PAYLOAD_BYTES + CRC_BYTES
#: Receive buffer bound: anything longer without a delimiter is discarded as oversized.
MAX_ENCODED_FRAME_BYTES = 256

_HEADER = struct.Struct("<BBBHHIB")
_CRC = struct.Struct("<H")
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


class FrameFlags(IntFlag):
    """Header flag bits."""

    NONE = 0
    ACK_REQ = 0x01
    RETX = 0x02
    FROM_DEVICE = 0x04


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR).

    Args:
        data: Bytes to check.

    Returns:
        The 16-bit CRC; ``crc16_ccitt(b"123456789") == 0x29B1``.
    """
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: header fields and the raw payload.

    Args:
        msg_type: Message type byte (see :class:`drivers.messages.MsgType`).
        seq: Sender's sequence number (u16, wraps).
        ack: Last sequence number the sender received in order from its peer (u16).
        t_us: Sender's monotonic clock in µs (u32, wraps).
        payload: Payload bytes (at most :data:`MAX_PAYLOAD_BYTES`).
        flags: Header flags.
        version: Protocol version byte.
    """

    msg_type: int
    seq: int
    ack: int = 0
    t_us: int = 0
    payload: bytes = b""
    flags: FrameFlags = FrameFlags.NONE
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        for name, value, hi in (
            ("msg_type", self.msg_type, 0xFF),
            ("seq", self.seq, _U16),
            ("ack", self.ack, _U16),
            ("t_us", self.t_us, _U32),
            ("version", self.version, 0xFF),
        ):
            if not 0 <= value <= hi:
                raise ProtocolError(f"Expected {name} in [0, {hi}], actual {value}", "bad_field")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(
                f"Expected a payload of at most {MAX_PAYLOAD_BYTES} bytes, "
                f"actual {len(self.payload)}",
                code="bad_len",
            )


def encode_frame(frame: Frame) -> bytes:
    """Serialise a frame for the wire, delimiter included.

    Args:
        frame: The frame to send.

    Returns:
        ``COBS(header ‖ payload ‖ crc16) ‖ 0x00``.
    """
    raw = (
        _HEADER.pack(
            frame.version,
            frame.msg_type,
            int(frame.flags),
            frame.seq,
            frame.ack,
            frame.t_us,
            len(frame.payload),
        )
        + frame.payload
    )
    raw += _CRC.pack(crc16_ccitt(raw))
    return cobs_encode(raw) + DELIMITER


def decode_block(block: bytes) -> Frame:
    """Decode one COBS block (the bytes between two delimiters) into a frame.

    Args:
        block: The stuffed bytes, without the delimiter.

    Returns:
        The frame.

    Raises:
        ProtocolError: With ``code`` ``bad_cobs``, ``bad_len``, ``bad_crc`` or ``bad_version``
            and a message that names what was expected and what arrived.
    """
    raw = cobs_decode(block)
    if len(raw) < HEADER_BYTES + CRC_BYTES:
        raise ProtocolError(
            f"Expected a frame of at least {HEADER_BYTES + CRC_BYTES} bytes, actual {len(raw)}",
            code="bad_len",
        )
    if len(raw) > MAX_RAW_FRAME_BYTES:
        raise ProtocolError(
            f"Expected a frame of at most {MAX_RAW_FRAME_BYTES} bytes, actual {len(raw)}",
            code="bad_len",
        )
    body, (crc_rx,) = raw[:-CRC_BYTES], _CRC.unpack(raw[-CRC_BYTES:])
    crc_calc = crc16_ccitt(body)
    if crc_rx != crc_calc:
        raise ProtocolError(
            f"Expected CRC-16 0x{crc_calc:04x}, actual 0x{crc_rx:04x}", code="bad_crc"
        )
    version, msg_type, flags, seq, ack, t_us, length = _HEADER.unpack(body[:HEADER_BYTES])
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"Expected protocol version {PROTOCOL_VERSION}, actual {version}", code="bad_version"
        )
    payload = body[HEADER_BYTES:]
    if length != len(payload):
        raise ProtocolError(
            f"Expected a payload of {length} bytes (header len field), actual {len(payload)}",
            code="bad_len",
        )
    return Frame(msg_type, seq, ack, t_us, bytes(payload), FrameFlags(flags & 0x07), version)


@dataclass(frozen=True)
class BadFrame:
    """A damaged frame the decoder dropped.

    Args:
        code: Short reason: ``bad_cobs``, ``bad_len``, ``bad_crc``, ``bad_version`` or
            ``oversized``.
        detail: What was expected and what arrived.
        n_bytes: How many wire bytes were discarded.
    """

    code: str
    detail: str
    n_bytes: int


class FrameDecoder:
    """Streaming decoder: feed bytes in any chunking, get frames and bad-frame reports.

    The buffer is bounded: once :data:`MAX_ENCODED_FRAME_BYTES` arrive without a delimiter, the
    partial frame is discarded (reported as ``oversized``) and everything up to the next 0x00 is
    skipped, so a stuck or noisy line can never grow memory.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False
        self._skipped = 0
        self.frames_ok = 0
        self.frames_bad = 0

    def reset(self) -> None:
        """Forget any partial frame (e.g. after the link was re-opened)."""
        self._buffer.clear()
        self._skipping = False
        self._skipped = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held in the buffer."""
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[list[Frame], list[BadFrame]]:
        """Consume wire bytes.

        Args:
            data: Bytes as they arrived.

        Returns:
            ``(frames, bad)``: complete frames in arrival order and one report per dropped frame.
        """
        frames: list[Frame] = []
        bad: list[BadFrame] = []
        start = 0
        n = len(data)
        while start < n:
            stop = data.find(0, start)
            chunk = data[start:] if stop < 0 else data[start:stop]
            if self._skipping:
                self._skipped += len(chunk)
            else:
                self._buffer += chunk
                if len(self._buffer) > MAX_ENCODED_FRAME_BYTES:
                    self._skipping = True
                    self._skipped = len(self._buffer)
                    self._buffer.clear()
            if stop < 0:
                break
            start = stop + 1
            if self._skipping:
                bad.append(
                    BadFrame(
                        "oversized",
                        f"Expected a delimiter within {MAX_ENCODED_FRAME_BYTES} bytes, actual "
                        f"{self._skipped} bytes without one",
                        self._skipped + 1,
                    )
                )
                self._skipping = False
                self._skipped = 0
                continue
            if not self._buffer:
                continue  # back-to-back delimiters are idle fill, not a frame
            block = bytes(self._buffer)
            self._buffer.clear()
            try:
                frames.append(decode_block(block))
            except ProtocolError as err:
                bad.append(BadFrame(err.code, str(err), len(block) + 1))
        self.frames_ok += len(frames)
        self.frames_bad += len(bad)
        return frames, bad
