"""What decoding one wire message may cost: size, entries, string and bin lengths, depth, objects.

A peer must not be able to make the backend spend seconds on one request (the time would be
taken from the controlling session, whose silence is what stops stimulation). Every body is
decoded under the limits below (docs/protocol.md §2.1): msgpack's own per-container and
per-string limits apply during decoding, and a body larger than :data:`SCAN_ABOVE_BYTES` is
first walked header by header (without building any object) by :func:`check_structure`, which
refuses it at the first limit it breaks. A body of at most that many bytes cannot hold more
than :data:`MAX_OBJECTS` objects, so its cost is bounded by its size.

The numbers leave room above the largest valid message of protocol version 1: the largest
container is a 64-entry list or map, the deepest nesting is 4 (``configure`` → ``envelope``
→ ``limits`` → one ParamSpec), the longest string is a 2000-character text (at most 8000
bytes of UTF-8), the largest bin is a 4 000 000-spike ``times_ms`` array, and a ``welcome``
or ``configure`` with 64 parameters holds about 1000 objects.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

from core.clip import clip_repr
from core.errors import ProtocolError

#: Largest message body (bytes).
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
#: Most entries of one map (the message map included).
MAX_MAP_ENTRIES: Final = 64
#: Most items of one array.
MAX_ARRAY_ITEMS: Final = 64
#: Longest msgpack str (bytes of UTF-8; 2000 characters take at most 8000 bytes).
MAX_STR_BYTES: Final = 8000
#: Longest msgpack bin (bytes): 4 000 000 spike times of 8 bytes.
MAX_BIN_BYTES: Final = 32_000_000
#: Longest msgpack ext payload (bytes); ext values are refused anyway, by field validation.
MAX_EXT_BYTES: Final = MAX_STR_BYTES
#: Deepest nesting of maps and arrays (the message map is depth 1).
MAX_DEPTH: Final = 8
#: Most msgpack objects in one body, counting every container, key and value.
MAX_OBJECTS: Final = 4096
#: Bodies longer than this are walked by :func:`check_structure` before they are decoded.
SCAN_ABOVE_BYTES: Final = MAX_OBJECTS

#: Keyword arguments of :func:`msgpack.unpackb` that apply the per-object limits.
UNPACK_LIMITS: Final[dict[str, Any]] = {
    "max_map_len": MAX_MAP_ENTRIES,
    "max_array_len": MAX_ARRAY_ITEMS,
    "max_str_len": MAX_STR_BYTES,
    "max_bin_len": MAX_BIN_BYTES,
    "max_ext_len": MAX_EXT_BYTES,
}

_U8 = struct.Struct(">B").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from

# Payload bytes after the type byte of every fixed-size scalar (nil, bools, numbers, fixext).
_FIXED: Final[dict[int, int]] = {
    0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8,
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip
# Variable-length payloads: type byte → (length-field reader, its size, kind, limit).
_SIZED: Final[dict[int, tuple[Any, int, str, int]]] = {
    0xD9: (_U8, 1, "a str", MAX_STR_BYTES),
    0xDA: (_U16, 2, "a str", MAX_STR_BYTES),
    0xDB: (_U32, 4, "a str", MAX_STR_BYTES),
    0xC4: (_U8, 1, "a bin", MAX_BIN_BYTES),
    0xC5: (_U16, 2, "a bin", MAX_BIN_BYTES),
    0xC6: (_U32, 4, "a bin", MAX_BIN_BYTES),
    0xC7: (_U8, 1, "an ext", MAX_EXT_BYTES),
    0xC8: (_U16, 2, "an ext", MAX_EXT_BYTES),
    0xC9: (_U32, 4, "an ext", MAX_EXT_BYTES),
}
_EXT_TYPE_BYTE = frozenset({0xC7, 0xC8, 0xC9})
# Containers with a length field: type byte → (length-field reader, its size, is_map).
_CONTAINERS: Final[dict[int, tuple[Any, int, bool]]] = {
    0xDC: (_U16, 2, False),
    0xDD: (_U32, 4, False),
    0xDE: (_U16, 2, True),
    0xDF: (_U32, 4, True),
}


def _refuse(what: str, offset: int) -> ProtocolError:
    return ProtocolError(
        f"Expected a body within the decode limits, actual {what} at byte {offset}"
    )


def check_structure(data: bytes | bytearray | memoryview) -> int:
    """Walk the msgpack headers of ``data`` and refuse it at the first broken limit.

    Nothing is decoded: strings and bins are skipped by their length fields, so the walk
    costs at most :data:`MAX_OBJECTS` steps whatever the body holds.

    Args:
        data: One message body.

    Returns:
        The number of msgpack objects in the body.

    Raises:
        ProtocolError: ``bad_message`` naming the limit and the byte offset, for a body
            that breaks a limit, is truncated, or has bytes after its one object.
    """
    view = memoryview(data).cast("B")
    end = len(view)
    pos = 0
    objects = 0
    # Items still to read in each open container, innermost last (the body is one object).
    pending = [1]
    try:
        while pending:
            if pending[-1] == 0:
                pending.pop()
                continue
            pending[-1] -= 1
            if pos >= end:
                raise _refuse("a truncated body", pos)
            start = pos
            kind = view[pos]
            pos += 1
            objects += 1
            if objects > MAX_OBJECTS:
                raise _refuse(f"more than {MAX_OBJECTS} objects", start)
            if kind <= 0x7F or kind >= 0xE0:  # positive and negative fixint
                continue
            if kind >= 0xA0 and kind <= 0xBF:  # fixstr (at most 31 bytes)
                pos += kind & 0x1F
                continue
            size = _FIXED.get(kind)
            if size is not None:
                pos += size
                continue
            if kind <= 0x9F:  # fixmap 0x80-0x8f, fixarray 0x90-0x9f
                is_map = kind <= 0x8F
                count = kind & 0x0F
            else:
                sized = _SIZED.get(kind)
                if sized is not None:
                    read, width, name, limit = sized
                    (length,) = read(view, pos)
                    if length > limit:
                        raise _refuse(f"{name} of {length} bytes (limit {limit})", start)
                    pos += width + length + (1 if kind in _EXT_TYPE_BYTE else 0)
                    continue
                container = _CONTAINERS.get(kind)
                if container is None:  # 0xc1, the one byte msgpack never uses
                    raise _refuse(f"the reserved type byte 0x{kind:02x}", start)
                read, width, is_map = container
                (count,) = read(view, pos)
                pos += width
            if is_map:
                if count > MAX_MAP_ENTRIES:
                    raise _refuse(
                        f"a map of {count} entries (limit {MAX_MAP_ENTRIES})", start
                    )
                count *= 2
            elif count > MAX_ARRAY_ITEMS:
                raise _refuse(f"an array of {count} items (limit {MAX_ARRAY_ITEMS})", start)
            if len(pending) > MAX_DEPTH:
                raise _refuse(f"nesting deeper than {MAX_DEPTH}", start)
            pending.append(count)
    except struct.error:  # a length field cut off by the end of the body
        raise _refuse("a truncated body", pos) from None
    if pos > end:
        raise _refuse("a truncated body", end)
    if pos < end:
        raise _refuse(f"{end - pos} bytes after the message", pos)
    return objects


def unpack_limited(data: bytes | bytearray | memoryview) -> Any:
    """Decode one msgpack object within every limit of this module.

    Map keys of any hashable type are kept (the message layer refuses non-string keys, after
    reading the request id), and a map with a repeated key is refused.

    Raises:
        ProtocolError: ``bad_message`` for a body over a limit or undecodable bytes.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"Expected at most {MAX_MESSAGE_BYTES} bytes, actual {len(data)}")
    if len(data) > SCAN_ABOVE_BYTES:
        check_structure(data)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            use_list=True,
            object_pairs_hook=_map_without_repeats,
            **UNPACK_LIMITS,
        )
    except _RepeatedKeyError as err:
        raise ProtocolError(str(err)) from None
    except Exception as err:  # msgpack raises many types for garbage; all mean "not msgpack"
        raise ProtocolError(
            f"Expected one msgpack object within the decode limits, actual: {err}"
        ) from None


class _RepeatedKeyError(ValueError):
    """A map holds the same key twice."""


def _map_without_repeats(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[Any] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKeyError(
                    f"Expected distinct keys in every map, actual {clip_repr(key, 80)} twice"
                )
            seen.add(key)
    return out
