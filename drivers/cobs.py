"""Consistent Overhead Byte Stuffing (COBS): the byte layer of the device wire protocol.

COBS rewrites a block so that it contains no 0x00 byte, at a cost of one byte per 254 bytes plus
one. A 0x00 can then delimit frames: a receiver that lands in the middle of noise resynchronises
at the next 0x00. See ``docs/device-protocol.md`` §2.
"""

from __future__ import annotations

from core.errors import ProtocolError


def cobs_encode(data: bytes) -> bytes:
    """Encode ``data`` so that the result holds no zero byte.

    Args:
        data: Any bytes, zeros included.

    Returns:
        The stuffed block (without the 0x00 delimiter).
    """
    out = bytearray()
    code_index = 0
    out.append(0)  # placeholder for the first code byte
    code = 1
    for byte in data:
        if byte == 0:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
    out[code_index] = code
    return bytes(out)


def cobs_decode(block: bytes) -> bytes:
    """Decode one stuffed block (without its delimiter).

    Args:
        block: Bytes produced by :func:`cobs_encode`.

    Returns:
        The original bytes.

    Raises:
        ProtocolError: ``code="bad_cobs"`` if the block holds a zero byte or a code byte points
            past its end.
    """
    out = bytearray()
    index = 0
    n = len(block)
    if n == 0:
        raise ProtocolError("Expected a COBS block of at least 1 byte, actual 0", code="bad_cobs")
    while index < n:
        code = block[index]
        if code == 0:
            raise ProtocolError(
                f"Expected no zero byte inside a COBS block, actual 0x00 at offset {index}",
                code="bad_cobs",
            )
        end = index + code
        if end > n:
            raise ProtocolError(
                f"Expected COBS code 0x{code:02x} at offset {index} to fit in a block of {n} "
                f"bytes, actual end at {end}",
                code="bad_cobs",
            )
        chunk = block[index + 1 : end]
        if 0 in chunk:
            raise ProtocolError(
                f"Expected no zero byte inside a COBS block, actual 0x00 near offset {index}",
                code="bad_cobs",
            )
        out += chunk
        index = end
        if code != 0xFF and index < n:
            out.append(0)
    return bytes(out)
