"""Validation helpers shared by the measurement-file parsers (numbers, strings, renamed keys).

Every error names the field (``where.key``), what was expected, what arrived and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError


def number_field(
    raw: Mapping[str, Any],
    key: str,
    where: str,
    default: float | None = None,
    positive: bool = False,
    fix: str = "",
) -> float:
    """``raw[key]`` as a finite number (``default`` if absent), optionally > 0."""
    value = raw.get(key, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise ConfigError(
            f"{where}.{key}: expected a number, actual missing. Fix: {fix or 'add it'}"
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}: expected a number, actual {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}.{key}: expected a finite number, actual {value!r}")
    if positive and number <= 0:
        raise ConfigError(
            f"{where}.{key}: expected a number > 0, actual {number}. "
            f"Fix: {fix or 'use a positive value'}"
        )
    return number


def text_field(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    """``raw[key]`` as a non-empty string (``default`` if absent)."""
    value = raw.get(key, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise ConfigError(f"{where}.{key}: expected a non-empty string, actual missing")
    return str(value)


def renamed_key(raw: Mapping[str, Any], key: str, old_key: str, where: str) -> Any:
    """``raw[key]``, or ``raw[old_key]`` from files written before the key was renamed.

    Raises:
        ConfigError: If both the new and the old key are given.
    """
    if key in raw and old_key in raw:
        raise ConfigError(
            f"{where}: expected either {key!r} or its old name {old_key!r}, actual both. "
            f"Fix: keep only {key!r}"
        )
    return raw.get(key, raw.get(old_key))
