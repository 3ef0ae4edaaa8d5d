"""The msgpack codec: pure functions between message objects and wire bytes.

A wire message is one msgpack map: ``{"v": 1, "type": <tag>, "id": <request id>, ...fields}``.
Every field of the message class is present (``nil`` for "none"); unknown fields, a missing
field, a wrong type, NaN/Inf or an out-of-range value make :func:`unpack` raise
:class:`~core.errors.ProtocolError` with the matching error code. Packing uses
``use_bin_type=True`` and ``strict_types=True``. Unpacking runs within the decode limits of
:mod:`protocol.wire_limits` and then checks the message in the order of docs/protocol.md §2.4
(version, type, key types, key set, id, fields); a failed decode carries the request id on the
error whenever the body was a map with a valid ``id``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

import msgpack

from core.clip import clip_repr
from core.errors import ProtocolError
from protocol._validate import MAX_UINT64, check_int
from protocol.messages import (
    PROTOCOL_VERSION,
    REPLY_TYPES,
    REQUEST_TYPES,
    Message,
    Reply,
    Request,
)
from protocol.schema import Capabilities, ParamSpec, SpikeWindow, WireEnvelope
from protocol.wire_limits import MAX_MESSAGE_BYTES, unpack_limited

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Frame",
    "from_wire",
    "pack",
    "peek_request_id",
    "to_wire",
    "unpack",
    "unpack_reply",
    "unpack_request",
]

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


#: Most unknown keys an error message names (the rest are counted).
_KEYS_NAMED = 8


def _key_list(keys: list[Any]) -> str:
    """``['a', 'b', ... and 3 more]``: a bounded listing of keys that came from the wire."""
    ordered = sorted(keys, key=lambda k: (type(k) is not str, str(k)))
    shown = [clip_repr(k, 40) for k in ordered[:_KEYS_NAMED]]
    if len(ordered) > _KEYS_NAMED:
        shown.append(f"... and {len(ordered) - _KEYS_NAMED} more")
    return f"[{', '.join(shown)}]"


def _expect_map(name: str, value: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"Expected {name} to be a map, actual {type(value).__name__}")
    if len(value) == len(keys) and all(k in value for k in keys):
        return value
    missing = [k for k in keys if k not in value]
    unknown = [k for k in value if k not in keys]
    if missing or unknown:
        raise ProtocolError(
            f"Expected {name} fields {sorted(keys)}, actual missing {missing}, "
            f"unknown {_key_list(unknown)}"
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


def _envelope(value: Any) -> WireEnvelope:
    raw = dict(_expect_map("envelope", value, _field_names(WireEnvelope)))
    raw["limits"] = _param_specs("envelope.limits", raw["limits"])
    return WireEnvelope(**raw)


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


_REQUEST_DECODERS: dict[str, _Decoder] = {cls.TYPE: _DECODERS[cls.TYPE] for cls in REQUEST_TYPES}
_REPLY_DECODERS: dict[str, _Decoder] = {cls.TYPE: _DECODERS[cls.TYPE] for cls in REPLY_TYPES}
_MISSING = object()


def _valid_id(raw: Any) -> int | None:
    """The ``id`` of a decoded body, if it is a map whose ``id`` is a valid request id."""
    if type(raw) is dict:
        rid = raw.get("id")
        if type(rid) is int and 0 <= rid <= MAX_UINT64:
            return rid
    return None


def peek_request_id(data: bytes) -> int:
    """Best-effort request id of possibly malformed bytes (0 if none can be read).

    The bytes are decoded within the same limits as :func:`unpack`. A backend that has
    the :class:`ProtocolError` of a failed decode reads ``error.request_id`` instead, which
    costs no second decode.
    """
    try:
        raw = unpack_limited(data)
    except ProtocolError:  # any garbage: there is simply no id to read
        return 0
    rid = _valid_id(raw)
    return 0 if rid is None else rid


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "no such key"
    return f"{type(value).__name__} {clip_repr(value, 80)}"


def _from_wire(raw: Any, decoders: Mapping[str, _Decoder], what: str) -> tuple[int, Message]:
    """Check a decoded body in the order of docs/protocol.md §2.4 and build its message."""
    if type(raw) is not dict:
        raise ProtocolError(f"Expected a message map, actual {type(raw).__name__}")
    version = raw.get("v", _MISSING)
    if type(version) is not int or version != PROTOCOL_VERSION:
        # A float 1.0 or a boolean true compares equal to 1 in Python; the version is an
        # integer on the wire, so only the integer 1 is version 1.
        if version is _MISSING:
            arrived = "no v key"
        elif type(version) is int:
            arrived = str(version)
        else:
            arrived = f"{clip_repr(version, 80)} ({type(version).__name__}; v is an integer)"
        raise ProtocolError(
            f"Expected protocol version {PROTOCOL_VERSION}, actual {arrived}",
            code="unsupported_version",
        )
    tag = raw.get("type", _MISSING)
    if type(tag) is not str:
        raise ProtocolError(f"Expected type to be a string, actual {_describe(tag)}")
    decoder = decoders.get(tag)
    if decoder is None:
        if tag in _DECODERS:  # a reply sent as a request, or the other way round
            raise ProtocolError(
                f"Expected a {what} ({'|'.join(decoders)}), actual {tag}", code="unknown_type"
            )
        raise ProtocolError(
            f"Expected type in {'|'.join(decoders)}, actual {clip_repr(tag, 80)}",
            code="unknown_type",
        )
    if raw.keys() != decoder.key_set:
        for key in raw:
            if type(key) is not str:
                raise ProtocolError(
                    f"Expected string keys in the {tag} message, actual "
                    f"{type(key).__name__} key {clip_repr(key, 40)}"
                )
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
    try:
        request_id, message = _from_wire(raw, _DECODERS, "message")
    except ProtocolError as err:
        err.request_id = _valid_id(raw)
        raise
    return Frame(request_id, message)


def _decode(data: bytes, decoders: Mapping[str, _Decoder], what: str) -> tuple[int, Message]:
    if type(data) is not bytes and not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"Expected bytes, actual {type(data).__name__}")
    raw = unpack_limited(data)  # bounded cost; raises ProtocolError (no id: nothing decoded)
    try:
        return _from_wire(raw, decoders, what)
    except ProtocolError as err:
        err.request_id = _valid_id(raw)
        raise
    except Exception as err:  # a validator bug must still surface as a protocol error
        failure = ProtocolError(f"Expected a valid message, actual: {err!r}")
        failure.request_id = _valid_id(raw)
        raise failure from err


def unpack(data: bytes) -> Frame:
    """Decode and validate wire bytes.

    Args:
        data: One ZeroMQ message body.

    Returns:
        The request id and the typed message.

    Raises:
        ProtocolError: for bytes that are not a valid message; never any other exception.
    """
    request_id, message = _decode(data, _DECODERS, "message")
    return Frame(request_id, message)


def unpack_request(data: bytes) -> tuple[int, Request]:
    """Decode bytes that must hold a request.

    A reply type is refused with ``unknown_type`` before any of its fields is looked at.

    Raises:
        ProtocolError: for anything else, with ``request_id`` set when it could be read.
    """
    request_id, message = _decode(data, _REQUEST_DECODERS, "request")
    return request_id, message  # type: ignore[return-value]


def unpack_reply(data: bytes) -> tuple[int, Reply]:
    """Decode bytes that must hold a reply (a request type is ``unknown_type``).

    Raises:
        ProtocolError: for anything else, with ``request_id`` set when it could be read.
    """
    request_id, message = _decode(data, _REPLY_DECODERS, "reply")
    return request_id, message  # type: ignore[return-value]
