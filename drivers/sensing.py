"""Sensed features in STATUS: fixed-point integers on the wire, floats in the simulator's names.

Device-protocol version 2 (``docs/device-protocol.md`` §5 STATUS, §10) carries only what an
implant measures (``protocol.observables.SENSED_FIELDS``, in that order): LFP band powers and
spectral peak, the recorded units' synchrony and rate, and the charge delivered. The device side
(:func:`encode_sense`) turns an observation into the integers of the STATUS sensed block;
``drivers.messages.Status.features`` turns them back with :data:`SENSE_FIELDS`. Nothing is
clamped: a missing, non-finite or unrepresentable value marks the whole block invalid and is
logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import structlog

log = structlog.get_logger()

_U16 = 2**16 - 1
_U32 = 2**32 - 1


class SenseField(NamedTuple):
    """One feature of the STATUS sensed block.

    Attributes:
        feature: The observation name (float, simulator units).
        wire: The STATUS field name (integer).
        scale: Wire integer per unit of the feature (``wire = round(feature · scale)``).
        lo: Lowest wire value.
        hi: Highest wire value.
    """

    feature: str
    wire: str
    scale: float
    lo: int
    hi: int


#: The sensed block of STATUS version 2, in wire order (``docs/device-protocol.md`` §10).
SENSE_FIELDS: tuple[SenseField, ...] = (
    SenseField("lfp_beta_uv2", "lfp_beta_uv2_e4", 1e4, 0, _U32),
    SenseField("lfp_band_uv2", "lfp_band_uv2_e4", 1e4, 0, _U32),
    SenseField("lfp_peak_hz", "lfp_peak_mhz", 1e3, 0, _U32),
    SenseField("lfp_peak_uv2", "lfp_peak_uv2_e4", 1e4, 0, _U32),
    SenseField("units_synchrony", "units_synchrony_e4", 1e4, 0, 10_000),
    SenseField("units_rate_hz", "units_rate_mhz", 1e3, 0, _U32),
    SenseField("charge_mv_ms", "charge_uv_ms", 1e3, 0, _U32),
)


def encode_sense(sense: Mapping[str, float] | None) -> tuple[int, ...] | None:
    """Fixed-point sensed features, or ``None`` if any is missing, non-finite or unrepresentable.

    Nothing is clamped: a value outside its field marks the whole block invalid (and is logged
    as ``device_sense_invalid`` with the feature and the reason).
    """
    if sense is None:
        return None
    values: list[int] = []
    for f in SENSE_FIELDS:
        raw = sense.get(f.feature)
        scaled = None
        if isinstance(raw, int | float) and math.isfinite(raw):
            scaled = round(raw * f.scale)
        if scaled is None or not f.lo <= scaled <= f.hi:
            log.error(
                "device_sense_invalid",
                feature=f.feature,
                reason=f"Expected a finite {f.feature} in [{f.lo / f.scale:.10g}, "
                f"{f.hi / f.scale:.10g}], actual {raw!r}",
            )
            return None
        values.append(scaled)
    return tuple(values)


def decode_sense(wire: Mapping[str, int]) -> dict[str, float]:
    """The features of a sensed block, in the simulator's float units."""
    return {f.feature: wire[f.wire] / f.scale for f in SENSE_FIELDS}
