"""Building blocks carried inside messages: parameter specs, capabilities, envelope, spikes.

Every class is a frozen dataclass that validates itself on construction, so a value that
exists is a value the protocol allows. See ``docs/protocol.md`` §3 for the wire form.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgpack
import numpy as np
import numpy.typing as npt

from core.errors import ProtocolError
from protocol._validate import (
    MAX_ITEMS,
    check_bool,
    check_choice,
    check_float,
    check_float_map,
    check_hex,
    check_name,
    check_names,
    check_text,
)

#: One value of a backend's ``configure`` options (``docs/protocol.md`` §4, ``configure``):
#: text (at most 256 characters), a signed 64-bit integer, a finite float or a boolean. The
#: type of ``Configure.options`` values and of every ``Backend._on_configure`` override.
ConfigValue = str | int | float | bool

ParamRole = Literal["amplitude", "frequency", "pulse_width", "other"]
PARAM_ROLES: tuple[str, ...] = ("amplitude", "frequency", "pulse_width", "other")

#: Most spikes one observation may carry (12 bytes each on the wire).
MAX_SPIKES = 4_000_000
#: Length of every hash on the wire: SHA-256 as lower-case hex.
HASH_HEX_LEN = 64


@dataclass(frozen=True)
class ParamSpec:
    """One stimulation parameter: its name, unit, role and closed range.

    Args:
        name: Wire name of the parameter; by convention it carries its unit
            (``amplitude_mv``, ``frequency_hz``, ``pulse_width_us``).
        unit: Unit text for people and for cross-checks (``mV``, ``uA``, ``Hz``, ``us``).
        role: What the parameter does: ``amplitude``, ``frequency``, ``pulse_width`` or
            ``other``; lets a controller find the amplitude whatever its name and unit.
        min: Lowest accepted value (finite).
        max: Highest accepted value (finite, ``>= min``).
    """

    name: str
    unit: str
    role: ParamRole
    min: float
    max: float

    def __post_init__(self) -> None:
        check_name("param.name", self.name)
        check_text("param.unit", self.unit, 32, 1)
        check_choice("param.role", self.role, PARAM_ROLES)
        lo = check_float(f"param {self.name!r} min", self.min)
        hi = check_float(f"param {self.name!r} max", self.max)
        if lo > hi:
            raise ProtocolError(
                f"Expected param {self.name!r} min <= max, actual min={lo!r} > max={hi!r}",
                code="out_of_range",
            )
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def contains(self, value: float) -> bool:
        """Whether ``value`` is finite and inside ``[min, max]``."""
        return math.isfinite(value) and self.min <= value <= self.max


def _check_specs(name: str, specs: Sequence[ParamSpec]) -> tuple[ParamSpec, ...]:
    if not isinstance(specs, list | tuple):
        raise ProtocolError(f"Expected {name} to be a list, actual {type(specs).__name__}")
    if not 1 <= len(specs) <= MAX_ITEMS:
        raise ProtocolError(f"Expected 1 to {MAX_ITEMS} entries in {name}, actual {len(specs)}")
    for spec in specs:
        if not isinstance(spec, ParamSpec):
            raise ProtocolError(f"Expected {name} entries to be ParamSpec, actual {spec!r}")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ProtocolError(f"Expected distinct parameter names in {name}, actual {names}")
    return tuple(specs)


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers, sent in the ``welcome`` reply.

    Args:
        stim_params: The stimulation parameters a ``step`` must carry, with the absolute range
            the backend accepts for each.
        observation_fields: Names of the floats in every observation, in a fixed order.
        control_period_ms: The backend's natural control period (default step duration).
        min_duration_ms: Shortest step duration accepted.
        max_duration_ms: Longest step duration accepted.
        supports_spikes: Whether a ``step`` may ask for the window's spikes.
        config_options: Names of the backend-specific options ``configure`` accepts.
    """

    stim_params: tuple[ParamSpec, ...]
    observation_fields: tuple[str, ...]
    control_period_ms: float
    min_duration_ms: float
    max_duration_ms: float
    supports_spikes: bool
    config_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stim_params", _check_specs("stim_params", self.stim_params))
        object.__setattr__(
            self, "observation_fields", check_names("observation_fields", self.observation_fields)
        )
        object.__setattr__(
            self, "config_options", check_names("config_options", self.config_options)
        )
        lo = check_float("min_duration_ms", self.min_duration_ms, 1e-6, 3.6e6)
        hi = check_float("max_duration_ms", self.max_duration_ms, lo, 3.6e6)
        period = check_float("control_period_ms", self.control_period_ms, lo, hi)
        object.__setattr__(self, "min_duration_ms", lo)
        object.__setattr__(self, "max_duration_ms", hi)
        object.__setattr__(self, "control_period_ms", period)
        check_bool("supports_spikes", self.supports_spikes)

    def param(self, name: str) -> ParamSpec:
        """Return the spec of parameter ``name``.

        Raises:
            KeyError: if the backend has no such parameter.
        """
        for spec in self.stim_params:
            if spec.name == name:
                return spec
        raise KeyError(f"Expected a parameter in {self.param_names}, actual {name!r}")

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the stimulation parameters, in order."""
        return tuple(spec.name for spec in self.stim_params)

    def limits_hash(self) -> str:
        """SHA-256 (hex) of the advertised limits, in the same canonical form as envelopes."""
        return envelope_hash(self.stim_params, {})


def envelope_hash(limits: Sequence[ParamSpec], extra: Mapping[str, float]) -> str:
    """Canonical SHA-256 (hex) of an envelope's limits and extra values.

    The hashed bytes are the msgpack encoding of
    ``[[[name, unit, role, min, max], ...sorted by name], [[key, value], ...sorted by key]]``
    with every number packed as float64, so any language can recompute it.

    Args:
        limits: Parameter ranges of the envelope.
        extra: Other scalar envelope values (charge limit, slew rates, ...), hashed too.

    Returns:
        64 lower-case hex digits.
    """
    rows = sorted(
        ([s.name, s.unit, s.role, float(s.min), float(s.max)] for s in limits),
        key=lambda row: str(row[0]),
    )
    extras = sorted([key, float(value)] for key, value in extra.items())
    blob = msgpack.packb([rows, extras], use_bin_type=True, use_single_float=False)
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class WireEnvelope:
    """The stimulation limits a controller runs under, sent in ``configure``.

    The backend refuses an envelope whose ``hash`` does not match :func:`envelope_hash` of its
    contents, or whose limits are not inside the advertised ranges (same names, same units).

    Args:
        limits: One range per stimulation parameter (a subset of the advertised ranges).
        extra: Every other rule value of the envelope by name (charge, duty, ramps, soft start,
            lease); a backend rebuilds and enforces them (``protocol.envelope.wire``).
        hash: :func:`envelope_hash` of ``limits`` and ``extra``.
    """

    limits: tuple[ParamSpec, ...]
    extra: dict[str, float]
    hash: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", _check_specs("envelope.limits", self.limits))
        object.__setattr__(self, "extra", check_float_map("envelope.extra", self.extra))
        check_hex("envelope.hash", self.hash, HASH_HEX_LEN)

    @classmethod
    def build(
        cls, limits: Sequence[ParamSpec], extra: Mapping[str, float] | None = None
    ) -> WireEnvelope:
        """Make an envelope with its hash computed from ``limits`` and ``extra``."""
        extra_map = check_float_map("envelope.extra", dict(extra or {}))
        specs = _check_specs("envelope.limits", tuple(limits))
        return cls(specs, extra_map, envelope_hash(specs, extra_map))

    def hash_matches(self) -> bool:
        """Whether ``hash`` is the hash of this envelope's contents."""
        return self.hash == envelope_hash(self.limits, self.extra)


@dataclass(frozen=True)
class SpikeWindow:
    """The spikes of one step window, packed as two little-endian byte arrays.

    Args:
        times_ms: Spike times (model ms) as float64 little-endian bytes.
        neurons: Neuron indices as int32 little-endian bytes, same count as ``times_ms``.
    """

    times_ms: bytes
    neurons: bytes

    def __post_init__(self) -> None:
        for name in ("times_ms", "neurons"):
            if not isinstance(getattr(self, name), bytes):
                raise ProtocolError(
                    f"Expected spikes.{name} as bytes (msgpack bin), "
                    f"actual {type(getattr(self, name)).__name__}"
                )
        if len(self.times_ms) % 8 or len(self.neurons) % 4:
            raise ProtocolError(
                "Expected spikes.times_ms in whole float64 (8 bytes) and spikes.neurons in whole "
                f"int32 (4 bytes), actual {len(self.times_ms)} and {len(self.neurons)} bytes"
            )
        count = len(self.times_ms) // 8
        if count != len(self.neurons) // 4:
            raise ProtocolError(
                f"Expected as many spike times as neurons, actual {count} times and "
                f"{len(self.neurons) // 4} neurons"
            )
        if count > MAX_SPIKES:
            raise ProtocolError(f"Expected at most {MAX_SPIKES} spikes, actual {count}")
        times = self.times()
        if not np.all(np.isfinite(times)):
            raise ProtocolError("Expected finite spike times, actual NaN or Inf", code="non_finite")
        if count and int(self.neuron_ids().min()) < 0:
            raise ProtocolError("Expected spike neuron indices >= 0, actual a negative index")

    @classmethod
    def from_arrays(cls, times_ms: npt.ArrayLike, neurons: npt.ArrayLike) -> SpikeWindow:
        """Pack spike arrays (any float and integer dtypes) into a window."""
        times = np.ascontiguousarray(times_ms, dtype="<f8")
        ids = np.ascontiguousarray(neurons, dtype="<i4")
        return cls(times.tobytes(), ids.tobytes())

    def times(self) -> npt.NDArray[np.float64]:
        """Spike times in model ms (a read-only view)."""
        return np.frombuffer(self.times_ms, dtype="<f8")

    def neuron_ids(self) -> npt.NDArray[np.int32]:
        """Neuron index of every spike (a read-only view)."""
        return np.frombuffer(self.neurons, dtype="<i4")

    def __len__(self) -> int:
        return len(self.times_ms) // 8
