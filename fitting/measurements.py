"""Measurement sets: stimuli (current steps), feature targets and optional parameter bounds.

Accepted files:

* YAML or JSON with ``stimuli``, ``targets`` (or ``traces``) and optional ``parameters``::

      stimuli:
        - {name: hyperpolarising, amplitude_na: -5.0, delay_ms: 150, duration_ms: 100,
           tstop_ms: 500, location: soma(0.5), record: soma(0.5), v_init_mv: -65}
      targets:
        - {stimulus: hyperpolarising, feature: input_resistance, mean: 9.0, std: 0.5, weight: 1}
      traces:            # instead of (or besides) targets: recorded voltage to extract targets from
        - {stimulus: hyperpolarising, file: trace.csv, features: [input_resistance],
           std_fraction: 0.05}
      parameters:
        - {name: soma.gnabar_hh, low: 0.02, high: 0.6, log: true}

* CSV (for spreadsheets), one row per target with the stimulus's columns repeated:
  ``stimulus,amplitude_na,delay_ms,duration_ms,tstop_ms,location,record,v_init_mv,feature,mean,std,weight``
  (``location``, ``record``, ``v_init_mv``, ``weight`` may be left empty for defaults).

Files written before the rename of "protocol" to "stimulus" (keys ``protocols`` and
``protocol``, CSV column ``protocol``) are read as well; giving both names is an error.

Raw traces are CSV with columns ``t_ms,v_mv`` or NPY arrays of shape (N, 2). Everything is
validated on load; errors name the field, what was expected, what arrived and how to fix it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, FittingError
from fitting.features import resolve_feature
from fitting.fields import number_field as _number
from fitting.fields import renamed_key
from fitting.fields import text_field as _text
from fitting.parameters import ParameterSpec, parse_parameter_name
from fitting.stimulus import PAPER_STIMULUS as PAPER_STIMULUS
from fitting.stimulus import Stimulus as Stimulus
from fitting.stimulus import Target as Target
from fitting.traces import targets_from_trace

_LOCATION = re.compile(r"^([A-Za-z_][\w\[\]]*)\((0(\.\d+)?|1(\.0+)?)\)$")


@dataclass(frozen=True)
class MeasurementSet:
    """Stimuli, targets and optional parameter bounds, validated."""

    stimuli: tuple[Stimulus, ...]
    targets: tuple[Target, ...]
    parameters: tuple[ParameterSpec, ...] = field(default=())

    def stimulus(self, name: str) -> Stimulus:
        """The stimulus called ``name``."""
        for stim in self.stimuli:
            if stim.name == name:
                return stim
        raise ConfigError(
            f"Expected a stimulus in {[p.name for p in self.stimuli]}, actual {name!r}"
        )

    def features_for(self, stimulus: str) -> list[str]:
        """Feature names targeted under ``stimulus``, in target order."""
        return [t.feature for t in self.targets if t.stimulus == stimulus]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (written as JSON, also the checkpoint fingerprint)."""
        return {
            "stimuli": [asdict(p) for p in self.stimuli],
            "targets": [asdict(t) for t in self.targets],
            "parameters": [
                {"name": p.name, "low": p.low, "high": p.high, "log": p.log}
                for p in self.parameters
            ],
        }

    def with_targets(self, targets: Sequence[Target]) -> MeasurementSet:
        """A copy with other targets (same stimuli and bounds), validated."""
        return MeasurementSet(self.stimuli, tuple(targets), self.parameters)


def _site(raw: Mapping[str, Any], key: str, where: str) -> str:
    site = _text(raw, key, where, "soma(0.5)")
    if not _LOCATION.match(site):
        raise ConfigError(
            f"{where}.{key}: expected section(x) with x in [0, 1], e.g. soma(0.5), actual {site!r}"
        )
    return site


def parse_stimulus(raw: Mapping[str, Any], where: str) -> Stimulus:
    """Validate one stimulus mapping (``where`` names it in errors)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of stimulus fields, actual {raw!r}")
    stim = Stimulus(
        name=_text(raw, "name", where),
        amplitude_na=_number(raw, "amplitude_na", where, fix="give the step current in nA"),
        delay_ms=_number(raw, "delay_ms", where, 150.0),
        duration_ms=_number(raw, "duration_ms", where, 100.0, positive=True),
        tstop_ms=_number(raw, "tstop_ms", where, 500.0, positive=True),
        location=_site(raw, "location", where),
        record=_site(raw, "record", where),
        v_init_mv=_number(raw, "v_init_mv", where, -65.0),
    )
    if stim.delay_ms < 0 or stim.stim_end_ms >= stim.tstop_ms:
        raise ConfigError(
            f"{where}: expected 0 <= delay_ms and delay_ms + duration_ms < tstop_ms, actual "
            f"delay_ms={stim.delay_ms}, duration_ms={stim.duration_ms}, "
            f"tstop_ms={stim.tstop_ms}. "
            "Fix: lengthen tstop_ms so the response after the step is recorded"
        )
    return stim


def parse_target(raw: Mapping[str, Any], where: str, stimuli: Sequence[str]) -> Target:
    """Validate one target mapping against the known stimulus names."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of target fields, actual {raw!r}")
    named = {"stimulus": renamed_key(raw, "stimulus", "protocol", where)}
    stimulus = _text(named, "stimulus", where)
    if stimulus not in stimuli:
        raise ConfigError(f"{where}.stimulus: expected one of {list(stimuli)}, actual {stimulus!r}")
    feature = _text(raw, "feature", where)
    try:
        resolve_feature(feature)
    except ConfigError as err:
        raise ConfigError(f"{where}.feature: {err}") from None
    return Target(
        stimulus=stimulus,
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
            f"{source}: expected a mapping with stimuli and targets, actual {type(data).__name__}"
        )
    unknown = sorted(set(data) - {"stimuli", "protocols", "targets", "traces", "parameters"})
    if unknown:
        raise ConfigError(
            f"{source}: expected keys stimuli (or its old name protocols), targets, traces, "
            "parameters; "
            f"actual extra {unknown}"
        )
    raw_stimuli = renamed_key(data, "stimuli", "protocols", source)
    if not isinstance(raw_stimuli, list) or not raw_stimuli:
        raise ConfigError(
            f"{source}.stimuli: expected a non-empty list, actual {raw_stimuli!r}. "
            "Fix: add e.g. {name: hyperpolarising, amplitude_na: -5.0, delay_ms: 150, "
            "duration_ms: 100, tstop_ms: 500}"
        )
    stimuli = [parse_stimulus(p, f"{source}.stimuli[{i}]") for i, p in enumerate(raw_stimuli)]
    names = [p.name for p in stimuli]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}.stimuli: expected unique names, actual {names}")
    targets = [
        parse_target(t, f"{source}.targets[{i}]", names)
        for i, t in enumerate(data.get("targets") or [])
    ]
    by_name = {p.name: p for p in stimuli}
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
            f"{source}.targets: expected one target per stimulus/feature, "
            f"actual duplicates {duplicates}"
        )
    parameters = [
        parse_parameter(p, f"{source}.parameters[{i}]")
        for i, p in enumerate(data.get("parameters") or [])
    ]
    return MeasurementSet(tuple(stimuli), tuple(targets), tuple(parameters))


_STIMULUS_COLUMNS = (
    "amplitude_na",
    "delay_ms",
    "duration_ms",
    "tstop_ms",
    "location",
    "record",
    "v_init_mv",
)


def _parse_csv(path: Path) -> MeasurementSet:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        required = {"stimulus", "amplitude_na", "feature", "mean", "std"}
        columns = set(reader.fieldnames or ())
        if {"stimulus", "protocol"} <= columns:
            raise ConfigError(
                f"{path}: expected either a stimulus column or its old name protocol, actual "
                "both. Fix: keep only stimulus"
            )
        if "protocol" in columns:
            columns = (columns - {"protocol"}) | {"stimulus"}
        if reader.fieldnames is None or not required <= columns:
            raise ConfigError(
                f"{path}: expected CSV columns including {sorted(required)}, "
                f"actual {reader.fieldnames}"
            )
        rows = list(reader)
    if "protocol" in set(reader.fieldnames or ()):
        # Files written before the column was renamed.
        rows = [{**row, "stimulus": row["protocol"]} for row in rows]
    stimuli: dict[str, dict[str, Any]] = {}
    targets: list[dict[str, Any]] = []
    for line, row in enumerate(rows, start=2):
        name = row["stimulus"]
        stim = {
            "name": name,
            **{c: row.get(c) for c in _STIMULUS_COLUMNS if row.get(c) not in (None, "")},
        }
        if name in stimuli and stimuli[name] != stim:
            raise ConfigError(
                f"{path}:{line}: expected the same stimulus columns on every row of "
                f"stimulus {name!r}, "
                f"actual {stim} vs {stimuli[name]}"
            )
        stimuli[name] = stim
        targets.append({k: row.get(k) for k in ("stimulus", "feature", "mean", "std", "weight")})
    return parse_measurements(
        {"stimuli": list(stimuli.values()), "targets": targets}, path.parent, str(path)
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
    try:
        if suffix == ".csv":
            return _parse_csv(path)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: expected UTF-8 text, actual byte 0x{err.object[err.start]:02x} at offset "
            f"{err.start}. Fix: save the file as UTF-8 (spreadsheets: 'CSV UTF-8')"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: expected a readable file, actual {err}") from None
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
