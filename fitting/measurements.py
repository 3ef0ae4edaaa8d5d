"""Measurement sets: stimulation protocols, feature targets and (optionally) parameter bounds.

Accepted files:

* YAML or JSON with ``protocols``, ``targets`` (or ``traces``) and optional ``parameters``::

      protocols:
        - {name: hyperpolarising, amplitude_na: -5.0, delay_ms: 150, duration_ms: 100,
           tstop_ms: 500, location: soma(0.5), record: soma(0.5), v_init_mv: -65}
      targets:
        - {protocol: hyperpolarising, feature: input_resistance, mean: 9.0, std: 0.5, weight: 1}
      traces:            # instead of (or besides) targets: recorded voltage to extract targets from
        - {protocol: hyperpolarising, file: trace.csv, features: [input_resistance],
           std_fraction: 0.05}
      parameters:
        - {name: soma.gnabar_hh, low: 0.02, high: 0.6, log: true}

* CSV (for spreadsheets), one row per target with the protocol's columns repeated:
  ``protocol,amplitude_na,delay_ms,duration_ms,tstop_ms,location,record,v_init_mv,feature,mean,std,weight``
  (``location``, ``record``, ``v_init_mv``, ``weight`` may be left empty for defaults).

Raw traces are CSV with columns ``t_ms,v_mv`` or NPY arrays of shape (N, 2). Everything is
validated on load; errors name the field, what was expected, what arrived and how to fix it.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, FittingError
from fitting.features import resolve_feature
from fitting.parameters import ParameterSpec, parse_parameter_name

_LOCATION = re.compile(r"^([A-Za-z_][\w\[\]]*)\((0(\.\d+)?|1(\.0+)?)\)$")


@dataclass(frozen=True)
class Protocol:
    """A current step.

    Attributes:
        name: Unique protocol name.
        amplitude_na: Step amplitude (negative hyperpolarises).
        delay_ms: Step onset.
        duration_ms: Step length.
        tstop_ms: Simulation end.
        location: Injection site, ``section(x)``.
        record: Recording site, ``section(x)``.
        v_init_mv: Initial membrane potential.
    """

    name: str
    amplitude_na: float
    delay_ms: float = 150.0
    duration_ms: float = 100.0
    tstop_ms: float = 500.0
    location: str = "soma(0.5)"
    record: str = "soma(0.5)"
    v_init_mv: float = -65.0

    @property
    def stim_end_ms(self) -> float:
        """End of the step."""
        return self.delay_ms + self.duration_ms


#: The source paper's protocol: −5 nA at the soma for 100 ms after 150 ms (tstop 500 ms).
PAPER_PROTOCOL = Protocol("hyperpolarising", -5.0)


@dataclass(frozen=True)
class Target:
    """A measured feature.

    Attributes:
        protocol: Name of the protocol it was measured under.
        feature: Friendly alias or eFEL name.
        mean: Measured mean.
        std: Measured standard deviation (> 0).
        weight: Relative weight in the objective (> 0).
    """

    protocol: str
    feature: str
    mean: float
    std: float
    weight: float = 1.0

    @property
    def key(self) -> str:
        """``protocol/feature``."""
        return f"{self.protocol}/{self.feature}"


@dataclass(frozen=True)
class MeasurementSet:
    """Protocols, targets and optional parameter bounds, validated."""

    protocols: tuple[Protocol, ...]
    targets: tuple[Target, ...]
    parameters: tuple[ParameterSpec, ...] = field(default=())

    def protocol(self, name: str) -> Protocol:
        """The protocol called ``name``."""
        for proto in self.protocols:
            if proto.name == name:
                return proto
        raise ConfigError(
            f"Expected a protocol in {[p.name for p in self.protocols]}, actual {name!r}"
        )

    def features_for(self, protocol: str) -> list[str]:
        """Feature names targeted under ``protocol``, in target order."""
        return [t.feature for t in self.targets if t.protocol == protocol]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (written as JSON, also the checkpoint fingerprint)."""
        return {
            "protocols": [asdict(p) for p in self.protocols],
            "targets": [asdict(t) for t in self.targets],
            "parameters": [
                {"name": p.name, "low": p.low, "high": p.high, "log": p.log}
                for p in self.parameters
            ],
        }

    def with_targets(self, targets: Sequence[Target]) -> MeasurementSet:
        """A copy with other targets (same protocols and bounds), validated."""
        return MeasurementSet(self.protocols, tuple(targets), self.parameters)


def _number(
    raw: Mapping[str, Any],
    key: str,
    where: str,
    default: float | None = None,
    positive: bool = False,
    fix: str = "",
) -> float:
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


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise ConfigError(f"{where}.{key}: expected a non-empty string, actual missing")
    return str(value)


def _site(raw: Mapping[str, Any], key: str, where: str) -> str:
    site = _text(raw, key, where, "soma(0.5)")
    if not _LOCATION.match(site):
        raise ConfigError(
            f"{where}.{key}: expected section(x) with x in [0, 1], e.g. soma(0.5), actual {site!r}"
        )
    return site


def parse_protocol(raw: Mapping[str, Any], where: str) -> Protocol:
    """Validate one protocol mapping (``where`` names it in errors)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of protocol fields, actual {raw!r}")
    proto = Protocol(
        name=_text(raw, "name", where),
        amplitude_na=_number(raw, "amplitude_na", where, fix="give the step current in nA"),
        delay_ms=_number(raw, "delay_ms", where, 150.0),
        duration_ms=_number(raw, "duration_ms", where, 100.0, positive=True),
        tstop_ms=_number(raw, "tstop_ms", where, 500.0, positive=True),
        location=_site(raw, "location", where),
        record=_site(raw, "record", where),
        v_init_mv=_number(raw, "v_init_mv", where, -65.0),
    )
    if proto.delay_ms < 0 or proto.stim_end_ms >= proto.tstop_ms:
        raise ConfigError(
            f"{where}: expected 0 <= delay_ms and delay_ms + duration_ms < tstop_ms, actual "
            f"delay_ms={proto.delay_ms}, duration_ms={proto.duration_ms}, "
            f"tstop_ms={proto.tstop_ms}. "
            "Fix: lengthen tstop_ms so the response after the step is recorded"
        )
    return proto


def parse_target(raw: Mapping[str, Any], where: str, protocols: Sequence[str]) -> Target:
    """Validate one target mapping against the known protocol names."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of target fields, actual {raw!r}")
    protocol = _text(raw, "protocol", where)
    if protocol not in protocols:
        raise ConfigError(
            f"{where}.protocol: expected one of {list(protocols)}, actual {protocol!r}"
        )
    feature = _text(raw, "feature", where)
    try:
        resolve_feature(feature)
    except ConfigError as err:
        raise ConfigError(f"{where}.feature: {err}") from None
    return Target(
        protocol=protocol,
        feature=feature,
        mean=_number(raw, "mean", where, fix="give the measured mean in the feature's unit"),
        std=_number(
            raw,
            "std",
            where,
            positive=True,
            fix="give the measurement's standard deviation (> 0) in the feature's unit",
        ),
        weight=_number(raw, "weight", where, 1.0, positive=True),
    )


def parse_parameter(raw: Mapping[str, Any], where: str) -> ParameterSpec:
    """Validate one parameter-bounds mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name, low, high, log; actual {raw!r}")
    location, variable = parse_parameter_name(_text(raw, "name", where))
    log_scale = raw.get("log", True)
    if not isinstance(log_scale, bool):
        raise ConfigError(f"{where}.log: expected true or false, actual {log_scale!r}")
    try:
        return ParameterSpec(
            location, variable, _number(raw, "low", where), _number(raw, "high", where), log_scale
        )
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def parse_measurements(
    data: Mapping[str, Any], base_dir: Path, source: str = "measurements"
) -> MeasurementSet:
    """Validate a decoded YAML/JSON document."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping with protocols and targets, actual {type(data).__name__}"
        )
    unknown = sorted(set(data) - {"protocols", "targets", "traces", "parameters"})
    if unknown:
        raise ConfigError(
            f"{source}: expected keys protocols, targets, traces, parameters; "
            f"actual extra {unknown}"
        )
    raw_protocols = data.get("protocols")
    if not isinstance(raw_protocols, list) or not raw_protocols:
        raise ConfigError(
            f"{source}.protocols: expected a non-empty list, actual {raw_protocols!r}. "
            "Fix: add e.g. {name: hyperpolarising, amplitude_na: -5.0, delay_ms: 150, "
            "duration_ms: 100, tstop_ms: 500}"
        )
    protocols = [parse_protocol(p, f"{source}.protocols[{i}]") for i, p in enumerate(raw_protocols)]
    names = [p.name for p in protocols]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}.protocols: expected unique names, actual {names}")
    targets = [
        parse_target(t, f"{source}.targets[{i}]", names)
        for i, t in enumerate(data.get("targets") or [])
    ]
    by_name = {p.name: p for p in protocols}
    from fitting.traces import targets_from_trace

    for i, entry in enumerate(data.get("traces") or []):
        targets.extend(targets_from_trace(entry, f"{source}.traces[{i}]", by_name, base_dir))
    if not targets:
        raise ConfigError(
            f"{source}: expected at least one entry in targets or traces, actual none"
        )
    keys = [t.key for t in targets]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ConfigError(
            f"{source}.targets: expected one target per protocol/feature, "
            f"actual duplicates {duplicates}"
        )
    parameters = [
        parse_parameter(p, f"{source}.parameters[{i}]")
        for i, p in enumerate(data.get("parameters") or [])
    ]
    return MeasurementSet(tuple(protocols), tuple(targets), tuple(parameters))


_PROTOCOL_COLUMNS = (
    "amplitude_na",
    "delay_ms",
    "duration_ms",
    "tstop_ms",
    "location",
    "record",
    "v_init_mv",
)


def _parse_csv(path: Path) -> MeasurementSet:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        required = {"protocol", "amplitude_na", "feature", "mean", "std"}
        if reader.fieldnames is None or not required <= set(reader.fieldnames):
            raise ConfigError(
                f"{path}: expected CSV columns including {sorted(required)}, "
                f"actual {reader.fieldnames}"
            )
        rows = list(reader)
    protocols: dict[str, dict[str, Any]] = {}
    targets: list[dict[str, Any]] = []
    for line, row in enumerate(rows, start=2):
        name = row["protocol"]
        proto = {
            "name": name,
            **{c: row.get(c) for c in _PROTOCOL_COLUMNS if row.get(c) not in (None, "")},
        }
        if name in protocols and protocols[name] != proto:
            raise ConfigError(
                f"{path}:{line}: expected the same protocol columns on every row of "
                f"protocol {name!r}, "
                f"actual {proto} vs {protocols[name]}"
            )
        protocols[name] = proto
        targets.append({k: row.get(k) for k in ("protocol", "feature", "mean", "std", "weight")})
    return parse_measurements(
        {"protocols": list(protocols.values()), "targets": targets}, path.parent, str(path)
    )


def load_measurements(path: str | Path) -> MeasurementSet:
    """Load and validate a measurement file (``.yaml``/``.yml``/``.json``/``.csv``).

    Raises:
        ConfigError: With the offending field, what was expected and how to fix it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Expected a measurements file at {path}, actual missing")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _parse_csv(path)
    text = path.read_text()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"Expected a .yaml, .yml, .json or .csv measurements file, actual {path.name}"
            )
    except (ValueError, ImportError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"{path}: expected valid {suffix[1:].upper()}, actual parse error: {err}"
        ) from err
    except Exception as err:  # yaml.YAMLError does not derive from ValueError
        raise ConfigError(f"{path}: expected valid YAML, actual parse error: {err}") from err
    return parse_measurements(data, path.parent, str(path))


def example_measurements_path() -> Path:
    """The bundled example: the paper's −5 nA step plus a +4 nA step on the reference model."""
    path = Path(__file__).parent / "examples" / "paper_minus5na.yaml"
    if not path.is_file():
        raise FittingError(
            f"Expected the bundled example at {path}, actual missing (broken install?)"
        )
    return path
