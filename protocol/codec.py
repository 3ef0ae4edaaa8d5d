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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    check_int("id", request_id, 0, MAX_UINT64)
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": message.TYPE, "id": request_id}
    for name in _field_names_of(type(message)):
        body[name] = _to_wire(getattr(message, name))
    return body


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
    try:
        packed: bytes = msgpack.packb(
            to_wire(request_id, message), use_bin_type=True, strict_types=True
        )
    except (TypeError, ValueError, OverflowError) as err:
        raise ProtocolError(f"Expected a packable {message.TYPE} message, actual: {err}") from err
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


def from_wire(raw: Any) -> Frame:
    """Validate a decoded msgpack object and build its :class:`Frame`.

    Raises:
        ProtocolError: for anything that is not a valid protocol-version-1 message.
    """
    if not isinstance(raw, dict):
        raise ProtocolError(f"Expected a message map, actual {type(raw).__name__}")
    version = raw.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"Expected protocol version {PROTOCOL_VERSION}, actual {version!r}",
            code="unsupported_version",
        )
    tag = raw.get("type")
    if not isinstance(tag, str) or tag not in _CLASSES:
        raise ProtocolError(
            f"Expected type in {'|'.join(sorted(_CLASSES))}, actual {tag!r}", code="unknown_type"
        )
    if raw.keys() != _KEY_SETS[tag]:
        _expect_map(f"{tag} message", raw, _KEYS[tag])  # raises, naming missing/unknown keys
    request_id = check_int("id", raw["id"], 0, MAX_UINT64)
    kwargs = {name: raw[name] for name in _FIELDS[tag]}
    for name, convert in _CONVERTERS[tag]:
        kwargs[name] = convert(kwargs[name])
    try:
        message = _CLASSES[tag](**kwargs)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise ProtocolError(f"Expected a valid {tag} message, actual: {err}") from err
    return Frame(request_id, message)


def unpack(data: bytes) -> Frame:
    """Decode and validate wire bytes.

    Args:
        data: One ZeroMQ message body.

    Returns:
        The request id and the typed message.

    Raises:
        ProtocolError: for bytes that are not a valid message; never any other exception.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
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
        return from_wire(raw)
    except ProtocolError:
        raise
    except Exception as err:  # a validator bug must still surface as a protocol error
        raise ProtocolError(f"Expected a valid message, actual: {err!r}") from err


def _unpack_as(data: bytes, allowed: tuple[type[Any], ...], what: str) -> Frame:
    frame = unpack(data)
    if not isinstance(frame.message, allowed):
        raise ProtocolError(
            f"Expected a {what} ({'|'.join(c.TYPE for c in allowed)}), actual {frame.message.TYPE}",
            code="unknown_type",
        )
    return frame


def unpack_request(data: bytes) -> tuple[int, Request]:
    """Decode bytes that must hold a request. Raises ProtocolError otherwise."""
    frame = _unpack_as(data, REQUEST_TYPES, "request")
    message: Request = frame.message  # type: ignore[assignment]
    return frame.request_id, message


def unpack_reply(data: bytes) -> tuple[int, Reply]:
    """Decode bytes that must hold a reply. Raises ProtocolError otherwise."""
    frame = _unpack_as(data, REPLY_TYPES, "reply")
    message: Reply = frame.message  # type: ignore[assignment]
    return frame.request_id, message
