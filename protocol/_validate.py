"""Field checks shared by every message class (on construction and therefore on decode).

Each check names the field, says what was expected and what arrived, and raises
:class:`~core.errors.ProtocolError` with the protocol error code that fits:
``non_finite`` for NaN/Inf, ``out_of_range`` for a number outside its static range and
``bad_message`` for a wrong type, length or shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ProtocolError

if TYPE_CHECKING:
    from protocol.schema import ConfigValue

#: Longest name (parameter, field, option, client) accepted on the wire.
MAX_NAME_LEN = 64
#: Longest free text (error message, stop reason) accepted on the wire.
MAX_TEXT_LEN = 2000
#: Most entries in any map or list of the protocol (except spike arrays).
MAX_ITEMS = 64
#: Largest unsigned integer on the wire (request ids, seeds, sequence numbers).
MAX_UINT64 = 2**64 - 1

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_HEX_RE = re.compile(r"^[0-9a-f]*$")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_float(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf) -> float:
    """Return ``value`` as a finite float in ``[lo, hi]``.

    Args:
        name: Qualified field name used in the error (``step.duration_ms``).
        value: The value to check; ``int`` is accepted and converted, ``bool`` is not.
        lo: Lowest accepted value (inclusive).
        hi: Highest accepted value (inclusive).

    Returns:
        The value as a Python ``float``.

    Raises:
        ProtocolError: ``bad_message`` for a non-number, ``non_finite`` for NaN/Inf and
            ``out_of_range`` outside ``[lo, hi]``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            f"Expected {name} to be a number, actual {type(value).__name__} {_short(value)}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise ProtocolError(f"Expected a finite {name}, actual {number!r}", code="non_finite")
    if not lo <= number <= hi:
        raise ProtocolError(
            f"Expected {name} in [{lo:g}, {hi:g}], actual {number!r}", code="out_of_range"
        )
    return number


def check_int(name: str, value: Any, lo: int = 0, hi: int = MAX_UINT64) -> int:
    """Return ``value`` as an int in ``[lo, hi]`` (``bool`` and ``float`` are refused).

    Raises:
        ProtocolError: ``bad_message`` for a non-integer, ``out_of_range`` outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(
            f"Expected {name} to be an integer, actual {type(value).__name__} {_short(value)}"
        )
    if not lo <= value <= hi:
        raise ProtocolError(f"Expected {name} in [{lo}, {hi}], actual {value}", code="out_of_range")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        ProtocolError: ``bad_message`` for anything else (0/1 included).
    """
    if not isinstance(value, bool):
        raise ProtocolError(
            f"Expected {name} to be true or false, actual {type(value).__name__} {_short(value)}"
        )
    return value


def check_text(name: str, value: Any, max_len: int = MAX_TEXT_LEN, min_len: int = 0) -> str:
    """Return ``value`` if it is a string of ``min_len`` to ``max_len`` characters.

    Raises:
        ProtocolError: ``bad_message`` for a non-string or a wrong length.
    """
    if not isinstance(value, str):
        raise ProtocolError(
            f"Expected {name} to be a string, actual {type(value).__name__} {_short(value)}"
        )
    if not min_len <= len(value) <= max_len:
        raise ProtocolError(
            f"Expected {name} of {min_len} to {max_len} characters, actual {len(value)}"
        )
    return value


def check_name(name: str, value: Any) -> str:
    """Return ``value`` if it is an identifier-like name (letters, digits, ``_ . -``).

    Raises:
        ProtocolError: ``bad_message`` otherwise.
    """
    text = check_text(name, value, MAX_NAME_LEN, 1)
    if not _NAME_RE.match(text):
        raise ProtocolError(
            f"Expected {name} to start with a letter or '_' and hold only letters, digits, "
            f"'_', '.' or '-', actual {text!r}"
        )
    return text


def check_hex(name: str, value: Any, length: int) -> str:
    """Return ``value`` if it is exactly ``length`` lower-case hex digits.

    Raises:
        ProtocolError: ``bad_message`` otherwise.
    """
    text = check_text(name, value, length, length)
    if not _HEX_RE.match(text):
        raise ProtocolError(f"Expected {name} as {length} lower-case hex digits, actual {text!r}")
    return text


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ProtocolError: ``bad_message`` otherwise.
    """
    if not isinstance(value, str) or value not in choices:
        raise ProtocolError(f"Expected {name} in {'|'.join(choices)}, actual {_short(value)}")
    return value


#: Names already checked (names repeat in every message); bounded so input cannot grow it.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 4096


def _known_name(name: str, value: Any) -> str:
    if type(value) is str and value in _GOOD_NAMES:
        return value
    checked = check_name(name, value)
    if type(checked) is str and len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_NAMES.add(checked)
    return checked


#: Hex strings already checked, by length (a session id repeats in every request); bounded.
_GOOD_HEX: set[tuple[str, int]] = set()
_GOOD_HEX_MAX = 1024


def check_known_hex(name: str, value: Any, length: int) -> str:
    """:func:`check_hex`, answered from a bounded set of strings that already passed it.

    Raises:
        ProtocolError: ``bad_message`` unless ``value`` is ``length`` lower-case hex digits.
    """
    if type(value) is str and (value, length) in _GOOD_HEX:
        return value
    checked = check_hex(name, value, length)
    if type(checked) is str:
        if len(_GOOD_HEX) >= _GOOD_HEX_MAX:
            _GOOD_HEX.clear()  # start over, so junk ids cannot keep the live session out
        _GOOD_HEX.add((checked, length))
    return checked


def check_float_map(name: str, value: Any, max_items: int = MAX_ITEMS) -> dict[str, float]:
    """Return a copy of a ``{name: finite float}`` map.

    Raises:
        ProtocolError: for a non-map, too many entries, a bad key or a bad value.
    """
    if type(value) is dict and len(value) <= max_items:
        # Fast path: copy first (the copy cannot change under us), then accept it if every
        # key is a known-good name and every value a finite float; otherwise the full
        # checks below run on the copy and name the first bad entry.
        copy = value.copy()
        good = _GOOD_NAMES
        isfinite = math.isfinite
        for key, item in copy.items():
            if type(key) is not str or key not in good or type(item) is not float:
                break
            if not isfinite(item):
                break
        else:
            return copy
        value = copy
    if type(value) is not dict and not isinstance(value, Mapping):
        raise ProtocolError(
            f"Expected {name} to be a map of name to number, actual {type(value).__name__}"
        )
    if len(value) > max_items:
        raise ProtocolError(f"Expected at most {max_items} entries in {name}, actual {len(value)}")
    out: dict[str, float] = {}
    isfinite = math.isfinite
    good = _GOOD_NAMES
    for key, item in value.items():
        if type(key) is not str or key not in good:
            key = _known_name(f"{name} key", key)
        if type(item) is float and isfinite(item):
            out[key] = item
        else:
            out[key] = check_float(f"{name}[{key!r}]", item)
    return out


def check_options(name: str, value: Any) -> dict[str, ConfigValue]:
    """Return a copy of a ``{name: str | int | float | bool}`` option map.

    Floats must be finite; integers must fit in a signed 64-bit integer.

    Raises:
        ProtocolError: for a non-map, too many entries, a bad key or a bad value.
    """
    if not isinstance(value, Mapping):
        raise ProtocolError(f"Expected {name} to be a map, actual {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise ProtocolError(f"Expected at most {MAX_ITEMS} entries in {name}, actual {len(value)}")
    out: dict[str, ConfigValue] = {}
    for key, item in value.items():
        key_name = _known_name(f"{name} key", key)
        field = f"{name}[{key!r}]"
        if isinstance(item, bool):
            out[key_name] = item
        elif isinstance(item, int):
            out[key_name] = check_int(field, item, -(2**63), 2**63 - 1)
        elif isinstance(item, float):
            out[key_name] = check_float(field, item)
        elif isinstance(item, str):
            out[key_name] = check_text(field, item, MAX_NAME_LEN * 4)
        else:
            raise ProtocolError(
                f"Expected {field} to be a string, integer, number or boolean, "
                f"actual {type(item).__name__}"
            )
    return out


def check_names(name: str, value: Any) -> tuple[str, ...]:
    """Return a tuple of distinct names from a list or tuple.

    Raises:
        ProtocolError: for a non-sequence, too many entries, bad or duplicate names.
    """
    if not isinstance(value, list | tuple):
        raise ProtocolError(f"Expected {name} to be a list, actual {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise ProtocolError(f"Expected at most {MAX_ITEMS} entries in {name}, actual {len(value)}")
    names = tuple(check_name(f"{name}[{i}]", item) for i, item in enumerate(value))
    if len(set(names)) != len(names):
        raise ProtocolError(f"Expected distinct names in {name}, actual {list(names)}")
    return names
