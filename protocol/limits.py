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

from protocol.schema import Capabilities, Envelope, ParamSpec


class RefusalError(Exception):
    """A request is refused with a protocol error ``code``; ``stop`` asks for a safe stop.

    Internal control flow of :class:`~protocol.backend.Backend`: it becomes an ``error``
    reply and never reaches a caller.
    """

    def __init__(self, code: str, message: str, stop: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.stop = stop


def check_envelope(caps: Capabilities, envelope: Envelope) -> tuple[ParamSpec, ...]:
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
    if set(stimulus) != set(caps.param_names):
        raise RefusalError(
            "invalid_stimulus",
            f"Expected stimulus parameters {list(caps.param_names)}, actual {sorted(stimulus)}",
            stop=True,
        )
    for spec in caps.stim_params:
        value = stimulus[spec.name]
        if not spec.contains(value):
            raise RefusalError(
                "limit_exceeded",
                f"Expected {spec.name} in [{spec.min:g}, "
                f"{spec.max:g}] {spec.unit} (advertised), actual {value!r}",
                stop=True,
            )
        limit = limits[spec.name]
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
    if set(fields) != set(caps.observation_fields):
        raise RefusalError(
            "backend_fault",
            f"Expected observation fields {list(caps.observation_fields)}, actual {sorted(fields)}",
            stop=True,
        )
    out: dict[str, float] = {}
    for name in caps.observation_fields:
        value = float(fields[name])
        if not math.isfinite(value):
            raise RefusalError(
                "backend_fault",
                f"Expected a finite observation field {name!r}, actual {value!r}",
                stop=True,
            )
        out[name] = value
    return out


def is_on(caps: Capabilities, stimulus: Mapping[str, float]) -> bool:
    """Whether ``stimulus`` delivers anything (an amplitude-role value is non-zero)."""
    amplitudes = [s.name for s in caps.stim_params if s.role == "amplitude"]
    return not amplitudes or any(stimulus[name] != 0.0 for name in amplitudes)
