"""The msgpack codec: pure functions between message objects and wire bytes.

A wire message is one msgpack map: ``{"v": 1, "type": <tag>, "id": <request id>, ...fields}``.
Every field of the message class is present (``nil`` for "none"); unknown fields, a missing
field, a wrong type, NaN/Inf or an out-of-range value make :func:`unpack` raise
:class:`~protocol.errors.ProtocolError` with the matching error code. Packing uses
``use_bin_type=True`` and ``strict_types=True``; unpacking uses ``raw=False`` and
``strict_map_key=True``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

import msgpack

from protocol._validate import MAX_UINT64, check_int
from protocol.errors import ProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    REPLY_TYPES,
    REQUEST_TYPES,
    Message,
    Reply,
    Request,
)
from protocol.schema import Capabilities, Envelope, ParamSpec, SpikeWindow

#: Largest message accepted by :func:`unpack` (bytes).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_HEADER_KEYS = ("v", "type", "id")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Frame:
    """One decoded wire message.

    Args:
        request_id: The request id (a reply carries the id of the request it answers).
        message: The typed message.
    """

    request_id: int
    message: Message


# ------------------------------------------------------------------------------ packing


_PRIMITIVES = frozenset({float, int, str, bool, bytes, type(None)})
_FIELD_CACHE: dict[type[Any], tuple[str, ...]] = {}


def _field_names_of(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_CACHE.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _FIELD_CACHE[cls] = names
    return names


def _to_wire(value: Any) -> Any:
    kind = type(value)
    if kind in _PRIMITIVES or kind is dict:
        # Every map inside a message holds validated primitives only (float maps, options).
        return value
    if kind is tuple or kind is list:
        return [_to_wire(item) for item in value]
    if dataclasses.is_dataclass(value):
        return {name: _to_wire(getattr(value, name)) for name in _field_names_of(kind)}
    raise ProtocolError(f"Expected a wire value, actual {kind.__name__}")


def to_wire(request_id: int, message: Message) -> dict[str, Any]:
    """Return the wire map of ``message`` (before msgpack encoding)."""
    if type(request_id) is not int or not 0 <= request_id <= MAX_UINT64:
        check_int("id", request_id, 0, MAX_UINT64)  # raises, naming what arrived
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": message.TYPE, "id": request_id}
    primitives = _PRIMITIVES
    for name in _field_names_of(type(message)):
        value = getattr(message, name)
        kind = type(value)
        body[name] = value if kind in primitives or kind is dict else _to_wire(value)
    return body


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True)


class _LocalPacker(threading.local):
    """One reusable :class:`msgpack.Packer` per thread (a packer is not thread-safe)."""

    def __init__(self) -> None:
        self.packer = _new_packer()


_LOCAL = _LocalPacker()
#: A packer keeps its buffer at the largest message it packed; after a message bigger than
#: this (a window full of spikes), the thread gets a fresh packer so the memory is returned.
_PACKER_KEEP_BYTES = 1 << 20


def pack(request_id: int, message: Message) -> bytes:
    """Encode ``message`` with its request id into msgpack bytes.

    Args:
        request_id: Unsigned 64-bit request id.
        message: Any request or reply.

    Returns:
        The wire bytes.

    Raises:
        ProtocolError: if the request id is out of range.
    """
    packer = _LOCAL.packer
    try:
        packed: bytes = packer.pack(to_wire(request_id, message))
    except (TypeError, ValueError, OverflowError) as err:
        packer.reset()  # drop whatever a failed pack left in the buffer
        raise ProtocolError(f"Expected a packable {message.TYPE} message, actual: {err}") from err
    if len(packed) > _PACKER_KEEP_BYTES:
        _LOCAL.packer = _new_packer()
    return packed


# ---------------------------------------------------------------------------- unpacking


def _expect_map(name: str, value: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"Expected {name} to be a map, actual {type(value).__name__}")
    if len(value) == len(keys) and all(k in value for k in keys):
        return value
    missing = [k for k in keys if k not in value]
    unknown = sorted(str(k) for k in value if k not in keys)
    if missing or unknown:
        raise ProtocolError(
            f"Expected {name} fields {sorted(keys)}, actual missing {missing}, unknown {unknown}"
        )
    return value


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return _field_names_of(cls)


def _param_spec(value: Any) -> ParamSpec:
    return ParamSpec(**_expect_map("param spec", value, _field_names(ParamSpec)))


def _param_specs(name: str, value: Any) -> tuple[ParamSpec, ...]:
    if not isinstance(value, list):
        raise ProtocolError(f"Expected {name} to be a list, actual {type(value).__name__}")
    if len(value) > 64:
        raise ProtocolError(f"Expected at most 64 entries in {name}, actual {len(value)}")
    return tuple(_param_spec(item) for item in value)


def _capabilities(value: Any) -> Capabilities:
    raw = dict(_expect_map("capabilities", value, _field_names(Capabilities)))
    raw["stim_params"] = _param_specs("capabilities.stim_params", raw["stim_params"])
    return Capabilities(**raw)


def _envelope(value: Any) -> Envelope:
    raw = dict(_expect_map("envelope", value, _field_names(Envelope)))
    raw["limits"] = _param_specs("envelope.limits", raw["limits"])
    return Envelope(**raw)


def _spikes(value: Any) -> SpikeWindow | None:
    if value is None:
        return None
    return SpikeWindow(**_expect_map("spikes", value, _field_names(SpikeWindow)))


_NESTED: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("configure", "envelope"): _envelope,
    ("welcome", "capabilities"): _capabilities,
    ("configured", "limits"): lambda v: _param_specs("configured.limits", v),
    ("observation", "spikes"): _spikes,
}

_CLASSES: dict[str, type[Any]] = {cls.TYPE: cls for cls in (*REQUEST_TYPES, *REPLY_TYPES)}
_KEYS: dict[str, tuple[str, ...]] = {
    tag: (*_HEADER_KEYS, *_field_names(cls)) for tag, cls in _CLASSES.items()
}
_KEY_SETS: dict[str, frozenset[str]] = {tag: frozenset(keys) for tag, keys in _KEYS.items()}
_FIELDS: dict[str, tuple[str, ...]] = {tag: _field_names(cls) for tag, cls in _CLASSES.items()}
_CONVERTERS: dict[str, tuple[tuple[str, Callable[[Any], Any]], ...]] = {
    tag: tuple((name, conv) for (t, name), conv in _NESTED.items() if t == tag) for tag in _CLASSES
}


def _args_getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        (only,) = names
        return lambda raw: (raw[only],)
    return itemgetter(*names)


@dataclass(frozen=True)
class _Decoder:
    """Everything :func:`_decode` needs for one message type, looked up once per message."""

    cls: type[Any]
    key_set: frozenset[str]
    args: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    #: ``(position in the constructor arguments, converter)`` of every nested field that
    #: needs converting (an absent ``spikes``, ``nil``, needs none).
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]


_DECODERS: dict[str, _Decoder] = {
    tag: _Decoder(
        cls,
        _KEY_SETS[tag],
        _args_getter(_FIELDS[tag]),
        tuple((_FIELDS[tag].index(name), conv) for name, conv in _CONVERTERS[tag]),
    )
    for tag, cls in _CLASSES.items()
}


def peek_request_id(data: bytes) -> int:
    """Best-effort request id of possibly malformed bytes (0 if none can be read).

    A backend uses it to address an error reply to a request it could not decode.
    """
    try:
        raw = msgpack.unpackb(data, raw=False) if len(data) <= MAX_MESSAGE_BYTES else None
    except Exception:  # any garbage: there is simply no id to read
        return 0
    if isinstance(raw, dict):
        rid = raw.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= MAX_UINT64:
            return rid
    return 0


def _from_wire(raw: Any) -> tuple[int, Message]:
    if type(raw) is not dict:
        raise ProtocolError(f"Expected a message map, actual {type(raw).__name__}")
    version = raw.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"Expected protocol version {PROTOCOL_VERSION}, actual {version!r}",
            code="unsupported_version",
        )
    tag = raw.get("type")
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None or not isinstance(tag, str):
        raise ProtocolError(
            f"Expected type in {'|'.join(sorted(_CLASSES))}, actual {tag!r}", code="unknown_type"
        )
    if raw.keys() != decoder.key_set:
        _expect_map(f"{tag} message", raw, _KEYS[tag])  # raises, naming missing/unknown keys
    request_id = raw["id"]
    if type(request_id) is not int or not 0 <= request_id <= MAX_UINT64:
        check_int("id", request_id, 0, MAX_UINT64)  # raises, naming what arrived
    args = decoder.args(raw)
    if decoder.converters:
        converted: list[Any] | None = None
        for index, convert in decoder.converters:
            value = args[index]
            if value is None and convert is _spikes:
                continue  # nil spikes stay None (what _spikes would return)
            if converted is None:
                converted = list(args)
            converted[index] = convert(value)
        if converted is not None:
            args = tuple(converted)
    try:
        # The constructor validates every field (``__post_init__``): decoding checks each
        # value exactly once, with the same rules as building the message in code.
        message: Message = decoder.cls(*args)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise ProtocolError(f"Expected a valid {tag} message, actual: {err}") from err
    return request_id, message


def from_wire(raw: Any) -> Frame:
    """Validate a decoded msgpack object and build its :class:`Frame`.

    Raises:
        ProtocolError: for anything that is not a valid protocol-version-1 message.
    """
    request_id, message = _from_wire(raw)
    return Frame(request_id, message)


def _decode(data: bytes) -> tuple[int, Message]:
    if type(data) is not bytes and not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"Expected bytes, actual {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"Expected at most {MAX_MESSAGE_BYTES} bytes, actual {len(data)}")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as err:  # msgpack raises many types for garbage; all mean "not msgpack"
        raise ProtocolError(
            f"Expected one msgpack object, actual undecodable bytes: {err}"
        ) from err
    try:
        return _from_wire(raw)
    except ProtocolError:
        raise
    except Exception as err:  # a validator bug must still surface as a protocol error
        raise ProtocolError(f"Expected a valid message, actual: {err!r}") from err


def unpack(data: bytes) -> Frame:
    """Decode and validate wire bytes.

    Args:
        data: One ZeroMQ message body.

    Returns:
        The request id and the typed message.

    Raises:
        ProtocolError: for bytes that are not a valid message; never any other exception.
    """
    request_id, message = _decode(data)
    return Frame(request_id, message)


def _wrong_kind(message: Message, allowed: tuple[type[Any], ...], what: str) -> ProtocolError:
    return ProtocolError(
        f"Expected a {what} ({'|'.join(c.TYPE for c in allowed)}), actual {message.TYPE}",
        code="unknown_type",
    )


_REQUEST_CLASSES = frozenset(REQUEST_TYPES)
_REPLY_CLASSES = frozenset(REPLY_TYPES)


def unpack_request(data: bytes) -> tuple[int, Request]:
    """Decode bytes that must hold a request. Raises ProtocolError otherwise."""
    request_id, message = _decode(data)
    if type(message) not in _REQUEST_CLASSES:
        raise _wrong_kind(message, REQUEST_TYPES, "request")
    return request_id, message  # type: ignore[return-value]


def unpack_reply(data: bytes) -> tuple[int, Reply]:
    """Decode bytes that must hold a reply. Raises ProtocolError otherwise."""
    request_id, message = _decode(data)
    if type(message) not in _REPLY_CLASSES:
        raise _wrong_kind(message, REPLY_TYPES, "reply")
    return request_id, message  # type: ignore[return-value]
