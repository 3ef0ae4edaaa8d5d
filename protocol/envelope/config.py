"""The safety envelope as validated data: absolute caps, session limits, charge, ramps, lease.

An envelope is loaded from a TOML file (see ``docs/controller.md`` and the two defaults shipped
next to this module), checked against the compiled-in absolute caps of its domain, and hashed:
the SHA-256 of the protocol's canonical serialisation goes to the backend in the handshake and into
every policy bundle, so the policy, the controller and the backend agree on the same numbers.

Two domains exist. ``model`` is the simulator: amplitude in mV of drive, charge per phase in
mV·ms, no electrode area. ``physical`` is a current-mode stimulator: amplitude in mA, charge per
phase in µC (mA × ms), and charge density in µC/cm² from the electrode area, bounded by the
Shannon (1992) criterion with k = 1.75 and by 30 µC/cm².
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from protocol.envelope.setpoint import Setpoint

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from core.errors import ConfigError
from protocol.envelope.floors import check_rule, rules_for
from protocol.schema import ParamSpec, WireEnvelope, envelope_hash

Domain = Literal["model", "physical"]

#: Shannon criterion constant used to bound charge per phase in physical units.
SHANNON_K = 1.75
#: Hard ceiling of charge density per phase (µC/cm²).
DENSITY_CEILING_UC_CM2 = 30.0


@dataclass(frozen=True)
class Caps:
    """Compiled-in absolute caps of a domain; no configuration may exceed them."""

    amplitude_max: float
    frequency_min_hz: float
    frequency_max_hz: float
    pulse_width_min_us: float
    pulse_width_max_us: float


#: Model domain: what the simulator accepts (``simulator.stimulus`` ranges).
MODEL_CAPS = Caps(400.0, 1.0, 250.0, 10.0, 5000.0)
#: Physical domain: hil-safety-protocol §2.3 A (10 mA, 2–250 Hz, 20–450 µs).
PHYSICAL_CAPS = Caps(10.0, 2.0, 250.0, 20.0, 450.0)


def shannon_q_max_uc(area_cm2: float, k: float = SHANNON_K) -> float:
    """Largest charge per phase (µC) allowed by log10(D) = k − log10(Q) with D = Q/A.

    Args:
        area_cm2: Geometric electrode area in cm².
        k: Shannon constant (damage was seen at k ≥ 1.85).

    Returns:
        ``sqrt(10**k · A)`` in µC per phase.
    """
    return math.sqrt(10.0**k * area_cm2)


@dataclass(frozen=True)
class SafetyEnvelope:
    """A validated safety envelope. Build it with :func:`parse_envelope` or :func:`load_envelope`.

    Args:
        name: Free-text label (``simulator``, ``device`` …).
        domain: ``model`` (simulator units) or ``physical`` (current-mode device).
        amplitude_unit: ``mV`` for the model domain, ``mA`` for the physical domain.
        amplitude_min: Lowest amplitude target while on (the ramp may pass below it).
        amplitude_max: Highest amplitude.
        frequency_min_hz: Lowest pulse rate.
        frequency_max_hz: Highest pulse rate.
        pulse_width_min_us: Shortest phase.
        pulse_width_max_us: Longest phase.
        charge_per_phase_max: Charge per phase limit in mV·ms (model) or µC (physical).
        electrode_area_cm2: Electrode area (physical domain only; 0 in the model domain).
        charge_density_max_uc_cm2: Charge density limit per phase (physical domain only).
        interphase_gap_us: Gap between the two phases, counted in the duty check.
        recharge_margin_us: Margin the duty check keeps after each pulse.
        amplitude_up_per_s: Largest amplitude increase per second of control time.
        amplitude_down_per_s: Largest amplitude decrease per second of control time.
        frequency_step_hz: Largest frequency change per control period while stimulating.
        pulse_width_step_us: Largest pulse-width change per control period while stimulating.
        soft_start_s: After every arm, resume or recovery the amplitude stays below
            ``amplitude_max · elapsed / soft_start_s``.
        lease_periods: Command lease as a multiple of the control period.
        watchdog_periods: Backend watchdog as a multiple of the control period.
        invalid_streak_to_fault: Consecutive invalid actions or observations that latch a stop.
    """

    name: str
    domain: Domain
    amplitude_unit: str
    amplitude_min: float
    amplitude_max: float
    frequency_min_hz: float
    frequency_max_hz: float
    pulse_width_min_us: float
    pulse_width_max_us: float
    charge_per_phase_max: float
    electrode_area_cm2: float
    charge_density_max_uc_cm2: float
    interphase_gap_us: float
    recharge_margin_us: float
    amplitude_up_per_s: float
    amplitude_down_per_s: float
    frequency_step_hz: float
    pulse_width_step_us: float
    soft_start_s: float
    lease_periods: float
    watchdog_periods: float
    invalid_streak_to_fault: int

    @property
    def caps(self) -> Caps:
        """Absolute caps of this envelope's domain."""
        return MODEL_CAPS if self.domain == "model" else PHYSICAL_CAPS

    def off_setpoint(self) -> Setpoint:
        """No output: amplitude 0 at the lowest frequency and pulse width the envelope allows."""
        return Setpoint(
            amplitude=0.0,
            frequency_hz=self.frequency_min_hz,
            pulse_width_us=self.pulse_width_min_us,
        )

    @property
    def charge_unit(self) -> str:
        """Unit of :attr:`charge_per_phase_max`."""
        return "mV·ms" if self.domain == "model" else "µC"

    def param_specs(self) -> tuple[ParamSpec, ...]:
        """The three stimulation ranges as protocol parameter specs (canonical wire names)."""
        if self.domain == "model":
            amp = ParamSpec(
                "amplitude_mv", "mV", "amplitude", self.amplitude_min, self.amplitude_max
            )
        else:
            amp = ParamSpec(
                "amplitude_ma", "mA", "amplitude", self.amplitude_min, self.amplitude_max
            )
        return (
            amp,
            ParamSpec(
                "frequency_hz", "Hz", "frequency", self.frequency_min_hz, self.frequency_max_hz
            ),
            ParamSpec(
                "pulse_width_us",
                "us",
                "pulse_width",
                self.pulse_width_min_us,
                self.pulse_width_max_us,
            ),
        )

    def extra_values(self) -> dict[str, float]:
        """Every other numeric field (charge, duty, ramps, lease), as hashed ``extra`` values."""
        skip = {"name", "domain", "amplitude_unit", *SECTIONS["limits"]}
        return {k: float(v) for k, v in asdict(self).items() if k not in skip}

    def to_wire(self) -> WireEnvelope:
        """The envelope as the protocol's ``configure`` payload, with its hash."""
        return WireEnvelope.build(self.param_specs(), self.extra_values())

    def sha256(self) -> str:
        """Stable hash: the protocol's canonical msgpack serialisation → SHA-256 (hex).

        The same value is computed by :func:`protocol.schema.envelope_hash` on the backend, so
        the hash in a policy bundle, the handshake and the recording all agree.
        """
        return envelope_hash(self.param_specs(), self.extra_values())

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (for the handshake, recordings and summaries)."""
        return asdict(self)

    def to_toml(self) -> str:
        """The envelope as an envelope file (what ``load_envelope`` reads back)."""
        return envelope_toml(self.as_dict())


SECTIONS: dict[str, tuple[str, ...]] = {
    "envelope": ("name", "domain", "amplitude_unit"),
    "limits": (
        "amplitude_min",
        "amplitude_max",
        "frequency_min_hz",
        "frequency_max_hz",
        "pulse_width_min_us",
        "pulse_width_max_us",
    ),
    "charge": ("charge_per_phase_max", "electrode_area_cm2", "charge_density_max_uc_cm2"),
    "duty": ("interphase_gap_us", "recharge_margin_us"),
    "ramp": (
        "amplitude_up_per_s",
        "amplitude_down_per_s",
        "frequency_step_hz",
        "pulse_width_step_us",
        "soft_start_s",
    ),
    "lease": ("lease_periods", "watchdog_periods", "invalid_streak_to_fault"),
}
_OPTIONAL = {"electrode_area_cm2": 0.0, "charge_density_max_uc_cm2": 0.0}


def envelope_toml(values: Mapping[str, Any]) -> str:
    """Write envelope field values (as from ``SafetyEnvelope.as_dict``) in the envelope file layout.

    Args:
        values: Every envelope field by name (edited copies are fine: nothing is validated
            here; ``load_envelope`` validates on reading).

    Returns:
        TOML text with one table per section.
    """
    lines: list[str] = []
    for section, keys in SECTIONS.items():
        lines.append(f"[{section}]")
        for key in keys:
            value = values[key]
            lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value!r}")
    return "\n".join(lines) + "\n"


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"Expected a number for {where}, actual {value!r}")
    try:
        out = float(value)
    except OverflowError:
        raise ConfigError(
            f"Expected a finite number for {where}, actual an integer of "
            f"{int(value).bit_length()} bits (too large for a float)"
        ) from None
    if not math.isfinite(out):
        raise ConfigError(f"Expected a finite number for {where}, actual {value!r}")
    return out


def _within(where: str, value: float, lo: float, hi: float, unit: str = "") -> None:
    if not lo <= value <= hi:
        suffix = f" {unit}" if unit else ""
        raise ConfigError(f"Expected {where} in [{lo}, {hi}]{suffix}, actual {value}")


def parse_envelope(data: dict[str, Any], source: str = "<envelope>") -> SafetyEnvelope:
    """Validate a parsed TOML document and build an :class:`SafetyEnvelope`.

    Args:
        data: The TOML document as a dict (sections ``envelope``, ``limits``, ``charge``,
            ``duty``, ``ramp``, ``lease``).
        source: Where the data came from, used in error messages.

    Returns:
        The validated envelope.

    Raises:
        ConfigError: A section or key is missing or unknown, or a value is out of range.
    """
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: expected sections {sorted(SECTIONS)}, actual extra {unknown}")
    values: dict[str, Any] = {}
    for section, keys in SECTIONS.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: expected a [{section}] table, actual {table!r}")
        extra = sorted(set(table) - set(keys))
        if extra:
            raise ConfigError(
                f"{source}: [{section}] expected keys {list(keys)}, actual extra {extra}"
            )
        for key in keys:
            if key not in table:
                if key in _OPTIONAL:
                    values[key] = _OPTIONAL[key]
                    continue
                raise ConfigError(f"{source}: [{section}] is missing {key!r}")
            raw = table[key]
            if key in ("name", "domain", "amplitude_unit"):
                if not isinstance(raw, str):
                    raise ConfigError(
                        f"{source}: expected a string for {section}.{key}, actual {raw!r}"
                    )
                values[key] = raw
            elif key == "invalid_streak_to_fault":
                if isinstance(raw, bool) or not isinstance(raw, int):
                    raise ConfigError(f"{source}: expected an integer for {key}, actual {raw!r}")
                values[key] = raw
            else:
                try:
                    values[key] = _number(f"{section}.{key}", raw)
                except ConfigError as err:
                    raise ConfigError(f"{source}: {err}") from None
    return validate(SafetyEnvelope(**values), source)


def validate(env: SafetyEnvelope, source: str = "<envelope>") -> SafetyEnvelope:
    """Check an envelope against its domain's absolute caps and internal consistency.

    Args:
        env: The envelope to check.
        source: Where it came from, for messages.

    Returns:
        ``env`` unchanged when valid.

    Raises:
        ConfigError: Naming the first value that is out of range.
    """
    if env.domain not in ("model", "physical"):
        raise ConfigError(f"{source}: expected domain 'model' or 'physical', actual {env.domain!r}")
    unit = "mV" if env.domain == "model" else "mA"
    if env.amplitude_unit != unit:
        raise ConfigError(
            f"{source}: expected amplitude_unit {unit!r} for domain {env.domain!r}, "
            f"actual {env.amplitude_unit!r}"
        )
    caps = env.caps
    _within(f"{source}: amplitude_max", env.amplitude_max, 0.0, caps.amplitude_max, unit)
    _within(f"{source}: amplitude_min", env.amplitude_min, 0.0, env.amplitude_max, unit)
    f_lo, f_hi = caps.frequency_min_hz, caps.frequency_max_hz
    _within(f"{source}: frequency_max_hz", env.frequency_max_hz, f_lo, f_hi, "Hz")
    _within(f"{source}: frequency_min_hz", env.frequency_min_hz, f_lo, env.frequency_max_hz, "Hz")
    p_lo, p_hi = caps.pulse_width_min_us, caps.pulse_width_max_us
    _within(f"{source}: pulse_width_max_us", env.pulse_width_max_us, p_lo, p_hi, "µs")
    _within(
        f"{source}: pulse_width_min_us", env.pulse_width_min_us, p_lo, env.pulse_width_max_us, "µs"
    )
    for rule in rules_for(env.domain):
        check_rule(env.domain, rule.field, float(getattr(env, rule.field)), source)
    shortest_period_us = 1e6 / env.frequency_max_hz
    needed_us = 2.0 * env.pulse_width_min_us + env.interphase_gap_us + env.recharge_margin_us
    if needed_us > shortest_period_us:
        raise ConfigError(
            f"{source}: expected the shortest pulse ({needed_us} µs with gap and margin) to fit "
            f"one period at frequency_max_hz ({shortest_period_us:.1f} µs), actual it does not"
        )
    if env.domain == "physical":
        if not env.electrode_area_cm2 > 0.0:
            raise ConfigError(
                f"{source}: expected electrode_area_cm2 > 0 for a physical envelope, "
                f"actual {env.electrode_area_cm2}"
            )
        _within(
            f"{source}: charge_density_max_uc_cm2",
            env.charge_density_max_uc_cm2,
            0.0,
            DENSITY_CEILING_UC_CM2,
            "µC/cm²",
        )
        q_ceiling = min(
            shannon_q_max_uc(env.electrode_area_cm2),
            DENSITY_CEILING_UC_CM2 * env.electrode_area_cm2,
        )
        # Round the ceiling to 1e-9 µC so that 30 µC/cm² × 0.06 cm² reads as 1.8 exactly.
        q_ceiling = round(q_ceiling, 9)
        _within(f"{source}: charge_per_phase_max", env.charge_per_phase_max, 0.0, q_ceiling, "µC")
    else:
        if env.electrode_area_cm2 != 0.0 or env.charge_density_max_uc_cm2 != 0.0:
            raise ConfigError(
                f"{source}: expected no electrode_area_cm2/charge_density_max_uc_cm2 in the model "
                f"domain (drive has no physical area), actual {env.electrode_area_cm2}, "
                f"{env.charge_density_max_uc_cm2}"
            )
        q_cap = caps.amplitude_max * caps.pulse_width_max_us / 1000.0
        _within(f"{source}: charge_per_phase_max", env.charge_per_phase_max, 0.0, q_cap, "mV·ms")
    # A step as wide as the range would allow any jump in one period: at most half of it.
    for step_key, lo_key, hi_key, step_unit in (
        ("frequency_step_hz", "frequency_min_hz", "frequency_max_hz", "Hz"),
        ("pulse_width_step_us", "pulse_width_min_us", "pulse_width_max_us", "µs"),
    ):
        span = float(getattr(env, hi_key)) - float(getattr(env, lo_key))
        step = float(getattr(env, step_key))
        if span > 0.0 and step > span / 2.0:
            raise ConfigError(
                f"{source}: expected {step_key} <= half the range {lo_key}..{hi_key} "
                f"({span / 2.0:g} {step_unit}), actual {step:g}"
            )
    _within(f"{source}: lease_periods", env.lease_periods, 1.0, 20.0)
    _within(f"{source}: watchdog_periods", env.watchdog_periods, 1.0, 20.0)
    if env.watchdog_periods < env.lease_periods:
        raise ConfigError(
            f"{source}: expected watchdog_periods >= lease_periods ({env.lease_periods}), "
            f"actual {env.watchdog_periods}"
        )
    return env


#: The shipped envelopes, loadable by name: the simulator's (model units), a clinical
#: current-mode device's, and the device emulator's FTSTS tissue (``defaults/*.toml``).
SHIPPED_ENVELOPES = ("simulator", "device", "emulator")


def load_envelope(path: str | Path) -> SafetyEnvelope:
    """Read and validate an envelope TOML file.

    Args:
        path: File path, or ``simulator`` / ``device`` / ``emulator`` for the shipped
            envelopes.

    Raises:
        ConfigError: The file is missing, not TOML, or fails validation.
    """
    text_path = str(path)
    if text_path in SHIPPED_ENVELOPES:
        ref = resources.files("protocol.envelope").joinpath(f"defaults/{text_path}.toml")
        return parse_envelope(
            tomllib.loads(ref.read_text("utf-8")), f"default {text_path} envelope"
        )
    file = Path(path)
    try:
        raw = file.read_text("utf-8")
    except OSError as err:
        raise ConfigError(
            f"Expected a readable envelope TOML file at {file}, actual {err}"
        ) from err
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Expected TOML in {file}, actual parse error: {err}") from err
    return parse_envelope(data, str(file))


def default_envelope_for(backend: str) -> str:
    """Name of the shipped default envelope for a backend (``sim``/``replay`` → model)."""
    return "device" if backend == "serial" else "simulator"
