"""The checks a backend runs before anything reaches the hardware or the model.

Pure functions over :class:`~protocol.schema.Capabilities`: the envelope a controller sends
in ``configure`` (hash, names, units, roles, ranges), every stimulus of a ``step`` (exact
parameter set, advertised range, configured envelope) and every observation a backend
returns (exact fields, finite). Each refusal names what was expected and what arrived, and
carries the protocol error code of ``docs/protocol.md`` §6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.schema import Capabilities, ParamSpec, WireEnvelope


class RefusalError(Exception):
    """A request is refused with a protocol error ``code``; ``stop`` asks for a safe stop.

    Internal control flow of :class:`~protocol.backend.Backend`: it becomes an ``error``
    reply and never reaches a caller.
    """

    def __init__(self, code: str, message: str, stop: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.stop = stop


@dataclass(frozen=True)
class _CapsIndex:
    """Lookups derived once from a :class:`Capabilities` (it is immutable)."""

    caps: Capabilities
    param_names: tuple[str, ...]
    param_set: frozenset[str]
    field_names: tuple[str, ...]
    field_set: frozenset[str]
    amplitudes: tuple[str, ...]


#: Index of each capabilities object seen, by ``id`` (the entry keeps the object alive, so
#: the id cannot be reused while cached). Backends return the same object every call.
_INDEX: dict[int, _CapsIndex] = {}
_INDEX_MAX = 64


def _index(caps: Capabilities) -> _CapsIndex:
    entry = _INDEX.get(id(caps))
    if entry is not None and entry.caps is caps:
        return entry
    names = caps.param_names
    entry = _CapsIndex(
        caps,
        names,
        frozenset(names),
        caps.observation_fields,
        frozenset(caps.observation_fields),
        tuple(s.name for s in caps.stim_params if s.role == "amplitude"),
    )
    if len(_INDEX) >= _INDEX_MAX:
        _INDEX.clear()
    _INDEX[id(caps)] = entry
    return entry


def check_envelope(caps: Capabilities, envelope: WireEnvelope) -> tuple[ParamSpec, ...]:
    """Return the effective limits of ``envelope``, or refuse it (``envelope_rejected``)."""
    if not envelope.hash_matches():
        raise RefusalError(
            "envelope_rejected",
            "Expected envelope.hash to be the SHA-256 of "
            f"its limits and extra values, actual {envelope.hash}",
        )
    given = {spec.name: spec for spec in envelope.limits}
    if set(given) != set(caps.param_names):
        raise RefusalError(
            "envelope_rejected",
            f"Expected envelope limits for exactly "
            f"{list(caps.param_names)}, actual {sorted(given)}",
        )
    for spec in caps.stim_params:
        mine = given[spec.name]
        if (mine.unit, mine.role) != (spec.unit, spec.role):
            raise RefusalError(
                "envelope_rejected",
                f"Expected {spec.name} in {spec.unit} "
                f"({spec.role}), actual {mine.unit} ({mine.role})",
            )
        if mine.min < spec.min or mine.max > spec.max:
            raise RefusalError(
                "envelope_rejected",
                f"Expected envelope range of {spec.name} "
                f"inside [{spec.min:g}, {spec.max:g}] {spec.unit}, actual "
                f"[{mine.min:g}, {mine.max:g}]",
            )
    return tuple(given[name] for name in caps.param_names)


def check_stimulus(
    caps: Capabilities, limits: Mapping[str, ParamSpec], stimulus: Mapping[str, float]
) -> None:
    """Refuse a stimulus that is not exactly the advertised parameters inside every limit."""
    index = _index(caps)
    if stimulus.keys() != index.param_set:
        raise RefusalError(
            "invalid_stimulus",
            f"Expected stimulus parameters {list(index.param_names)}, actual {sorted(stimulus)}",
            stop=True,
        )
    for spec in caps.stim_params:
        value = stimulus[spec.name]
        limit = limits[spec.name]
        # Common case in one comparison chain (bounds are finite, so NaN and Inf fail it).
        if spec.min <= value <= spec.max and limit.min <= value <= limit.max:
            continue
        if spec.role == "amplitude" and spec.contains(value) and 0.0 <= value <= limit.max:
            # The envelope's amplitude minimum is a target floor of the governor, which ramps
            # through lower values; 0 is off. Neither is a delivery limit (docs/protocol.md §5.1).
            continue
        if not spec.contains(value):
            raise RefusalError(
                "limit_exceeded",
                f"Expected {spec.name} in [{spec.min:g}, "
                f"{spec.max:g}] {spec.unit} (advertised), actual {value!r}",
                stop=True,
            )
        if not limit.contains(value):
            raise RefusalError(
                "limit_exceeded",
                f"Expected {spec.name} in [{limit.min:g}, "
                f"{limit.max:g}] {spec.unit} (configured envelope), "
                f"actual {value!r}",
                stop=True,
            )


def check_fields(caps: Capabilities, fields: Mapping[str, float]) -> dict[str, float]:
    """Return the observation fields as floats, or refuse non-advertised or non-finite ones."""
    index = _index(caps)
    if fields.keys() != index.field_set:
        raise RefusalError(
            "backend_fault",
            f"Expected observation fields {list(index.field_names)}, actual {sorted(fields)}",
            stop=True,
        )
    out: dict[str, float] = {}
    isfinite = math.isfinite
    for name in index.field_names:
        value = fields[name]
        if type(value) is not float:
            value = float(value)
        if not isfinite(value):
            raise RefusalError(
                "backend_fault",
                f"Expected a finite observation field {name!r}, actual {value!r}",
                stop=True,
            )
        out[name] = value
    return out


def is_on(caps: Capabilities, stimulus: Mapping[str, float]) -> bool:
    """Whether ``stimulus`` delivers anything (an amplitude-role value is non-zero)."""
    amplitudes = _index(caps).amplitudes
    # A number is true exactly when it is != 0.0 (NaN included), so any() over the values
    # asks the same question without a Python-level loop.
    return not amplitudes or any(map(stimulus.__getitem__, amplitudes))
