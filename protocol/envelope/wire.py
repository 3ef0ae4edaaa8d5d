"""The envelope as it travels in ``configure``: to the wire and back, with nothing guessed.

The controller sends
:meth:`SafetyEnvelope.to_wire <protocol.envelope.config.SafetyEnvelope.to_wire>`: three
parameter ranges and every other rule value as a named ``extra`` number, all covered by the hash.
A backend rebuilds the same :class:`~protocol.envelope.config.SafetyEnvelope` with
:func:`envelope_from_wire` and validates it against the same caps and floors. A missing or
unknown key, a wrong unit or a value outside a floor is a configuration error: no backend ever
substitutes a default, so the limits it enforces are exactly the hashed ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from core.errors import ConfigError
from protocol.envelope.config import SECTIONS, SafetyEnvelope, validate
from protocol.schema import Capabilities, ParamSpec, WireEnvelope

#: Amplitude unit on the wire → (envelope domain, wire units per envelope unit).
AMPLITUDE_UNITS: dict[str, tuple[str, float]] = {
    "mV": ("model", 1.0),
    "mA": ("physical", 1.0),
    "uA": ("physical", 1000.0),
    "µA": ("physical", 1000.0),
}

#: The ``extra`` keys every wire envelope carries (every rule value but the three ranges).
EXTRA_KEYS: tuple[str, ...] = tuple(
    f.name
    for f in fields(SafetyEnvelope)
    if f.name not in ("name", "domain", "amplitude_unit", *SECTIONS["limits"])
)


def _by_role(specs: Sequence[ParamSpec], source: str) -> dict[str, ParamSpec]:
    roles: dict[str, ParamSpec] = {}
    for spec in specs:
        if spec.role == "other":
            continue
        if spec.role in roles:
            raise ConfigError(f"{source}: expected one {spec.role} parameter, actual two or more")
        roles[spec.role] = spec
    if sorted(roles) != ["amplitude", "frequency", "pulse_width"]:
        raise ConfigError(
            f"{source}: expected parameters with roles amplitude, frequency and pulse_width, "
            f"actual {[(s.name, s.role) for s in specs]}"
        )
    return roles


def amplitude_scale(specs: Sequence[ParamSpec], source: str = "capabilities") -> tuple[str, float]:
    """The envelope domain and wire-units-per-envelope-unit of the amplitude in ``specs``.

    Raises:
        ConfigError: No single amplitude parameter, or its unit is not one of
            :data:`AMPLITUDE_UNITS`.
    """
    amp = _by_role(specs, source)["amplitude"]
    if amp.unit not in AMPLITUDE_UNITS:
        raise ConfigError(
            f"{source}: expected the amplitude {amp.name!r} in one of "
            f"{sorted(AMPLITUDE_UNITS)}, actual unit {amp.unit!r}"
        )
    return AMPLITUDE_UNITS[amp.unit]


def envelope_to_wire(env: SafetyEnvelope, caps: Capabilities) -> WireEnvelope:
    """The ``configure`` envelope for a backend: its names and units, every rule value hashed.

    Parameters of role ``other`` (which no envelope rule covers) are pinned at 0.

    Raises:
        ConfigError: The backend's amplitude unit belongs to another domain than ``env``.
    """
    roles = _by_role(caps.stim_params, "capabilities")
    domain, factor = amplitude_scale(caps.stim_params)
    if domain != env.domain:
        raise ConfigError(
            f"Expected a backend for the {env.domain} domain of envelope {env.name!r}, actual "
            f"amplitude {roles['amplitude'].name!r} in {roles['amplitude'].unit} ({domain})"
        )
    amp, freq, width = roles["amplitude"], roles["frequency"], roles["pulse_width"]
    limits = [
        ParamSpec(
            amp.name, amp.unit, "amplitude", env.amplitude_min * factor, env.amplitude_max * factor
        ),
        ParamSpec(freq.name, freq.unit, "frequency", env.frequency_min_hz, env.frequency_max_hz),
        ParamSpec(
            width.name, width.unit, "pulse_width", env.pulse_width_min_us, env.pulse_width_max_us
        ),
    ]
    others = (s for s in caps.stim_params if s.role == "other")
    limits += [ParamSpec(s.name, s.unit, "other", 0.0, 0.0) for s in others]
    return WireEnvelope.build(limits, env.extra_values())


def envelope_from_wire(wire: WireEnvelope, source: str = "configure.envelope") -> SafetyEnvelope:
    """Rebuild and validate the envelope a controller sent.

    Args:
        wire: The ``configure`` payload (its hash is checked by the caller).
        source: Where it came from, for messages.

    Returns:
        The validated envelope in envelope units (``name`` is ``wire``; the domain follows
        the amplitude unit, see :data:`AMPLITUDE_UNITS`).

    Raises:
        ConfigError: A range or extra key is missing or unknown, a unit is wrong, or a value is
            outside the caps or floors.
    """
    roles = _by_role(wire.limits, source)
    domain, factor = amplitude_scale(wire.limits, source)
    for role, unit in (("frequency", "Hz"), ("pulse_width", "us")):
        if roles[role].unit != unit:
            raise ConfigError(
                f"{source}: expected {roles[role].name} in {unit}, actual unit {roles[role].unit!r}"
            )
    amp, freq, width = roles["amplitude"], roles["frequency"], roles["pulse_width"]
    values: dict[str, object] = {
        "name": "wire",
        "domain": domain,
        "amplitude_unit": "mV" if domain == "model" else "mA",
        "amplitude_min": amp.min / factor,
        "amplitude_max": amp.max / factor,
        "frequency_min_hz": freq.min,
        "frequency_max_hz": freq.max,
        "pulse_width_min_us": width.min,
        "pulse_width_max_us": width.max,
    }
    missing = sorted(set(EXTRA_KEYS) - set(wire.extra))
    unknown = sorted(set(wire.extra) - set(EXTRA_KEYS))
    if missing or unknown:
        raise ConfigError(
            f"{source}: expected extra values exactly {sorted(EXTRA_KEYS)}, actual missing "
            f"{missing} and unknown {unknown}"
        )
    for key in EXTRA_KEYS:
        values[key] = float(wire.extra[key])
    streak = values["invalid_streak_to_fault"]
    assert isinstance(streak, float)
    if streak != int(streak):
        raise ConfigError(
            f"{source}: expected an integer invalid_streak_to_fault, actual {streak:g}"
        )
    values["invalid_streak_to_fault"] = int(streak)
    return validate(SafetyEnvelope(**values), source)  # type: ignore[arg-type]
