"""Sensed features in STATUS: fixed-point integers on the wire, floats in the simulator's names.

The device side (:func:`encode_sense`) turns an observation into the integers of the STATUS
sensed block; ``drivers.messages.Status.features`` turns them back. Nothing is clamped: a
missing, non-finite or unrepresentable value marks the whole block invalid and is logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import structlog

log = structlog.get_logger()

#: (feature, scale to the wire integer, lowest and highest wire value), in STATUS order.
SENSE_FIELDS = (
    ("synchrony", 1e4, 0, 10_000),
    ("chi", 1e4, 0, 10_000),
    ("mean_v_e_mv", 1e3, -(2**31), 2**31 - 1),
    ("sd_v_e_mv", 1e3, 0, 2**32 - 1),
    ("mean_v_i_mv", 1e3, -(2**31), 2**31 - 1),
    ("sd_v_i_mv", 1e3, 0, 2**32 - 1),
    ("weight_mv", 1e3, -(2**31), 2**31 - 1),
    ("rate_e_hz", 1e3, 0, 2**32 - 1),
    ("rate_i_hz", 1e3, 0, 2**32 - 1),
    ("charge_mv_ms", 1e3, 0, 2**32 - 1),
)


def encode_sense(sense: Mapping[str, float] | None) -> tuple[int, ...] | None:
    """Fixed-point sensed features, or ``None`` if any is missing, non-finite or unrepresentable.

    Nothing is clamped: a value outside its field marks the whole sample invalid (and is logged).
    """
    if sense is None:
        return None
    values: list[int] = []
    for key, scale, lo, hi in SENSE_FIELDS:
        raw = sense.get(key)
        scaled = None if raw is None or not math.isfinite(raw) else round(raw * scale)
        if scaled is None or not lo <= scaled <= hi:
            log.error(
                "device_sense_invalid",
                feature=key,
                reason=f"Expected a finite {key} in [{lo / scale}, {hi / scale}], actual {raw!r}",
            )
            return None
        values.append(scaled)
    return tuple(values)
