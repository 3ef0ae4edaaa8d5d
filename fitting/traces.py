"""Recorded voltage traces (CSV or NPY) and the measurement targets extracted from them."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from fitting.features import STATUS_OK, extract_features, target_std
from fitting.fields import number_field, renamed_key, text_field
from fitting.stimulus import Stimulus, Target


def load_trace(
    path: Path,
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    """Read a voltage trace: CSV with ``t_ms,v_mv`` header or NPY of shape (N, 2)."""
    if not path.is_file():
        raise ConfigError(f"Expected a trace file at {path}, actual missing")
    if path.suffix == ".npy":
        data = np.load(path, allow_pickle=False)
        if data.ndim != 2 or data.shape[1] != 2:
            raise ConfigError(
                f"{path}: expected an array of shape (N, 2) [t_ms, v_mv], actual {data.shape}"
            )
        return data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"t_ms", "v_mv"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: expected CSV columns t_ms,v_mv, actual {reader.fieldnames}")
        t_ms, v_mv = [], []
        for line, row in enumerate(reader, start=2):
            try:
                t_ms.append(float(row["t_ms"]))
                v_mv.append(float(row["v_mv"]))
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{path}:{line}: expected numbers in t_ms,v_mv, actual {row}"
                ) from None
    return np.array(t_ms), np.array(v_mv)


def targets_from_trace(
    raw: Mapping[str, Any], where: str, stimuli: Mapping[str, Stimulus], base_dir: Path
) -> list[Target]:
    """Extract targets from one ``traces`` entry (a recorded trace under a known stimulus)."""
    named = {"stimulus": renamed_key(raw, "stimulus", "protocol", where)}
    stimulus = text_field(named, "stimulus", where)
    if stimulus not in stimuli:
        raise ConfigError(f"{where}.stimulus: expected one of {list(stimuli)}, actual {stimulus!r}")
    stim = stimuli[stimulus]
    features = raw.get("features")
    if not isinstance(features, list) or not features:
        raise ConfigError(
            f"{where}.features: expected a non-empty list of feature names, actual {features!r}"
        )
    std_fraction = number_field(raw, "std_fraction", where, 0.05, positive=True)
    time_ms, voltage_mv = load_trace(base_dir / text_field(raw, "file", where))
    results = extract_features(
        time_ms,
        voltage_mv,
        [str(f) for f in features],
        stim.delay_ms,
        stim.stim_end_ms,
        stim.amplitude_na,
        stim.tstop_ms,
    )
    targets = []
    for result in results:
        if result.status != STATUS_OK or result.value is None:
            raise ConfigError(
                f"{where}: expected feature {result.name} to be measurable on the trace, actual "
                f"{result.status} ({result.detail}). Fix: drop it from features or check the trace"
            )
        std = target_std(result.name, result.value, std_fraction)
        targets.append(Target(stimulus, result.name, result.value, std, 1.0))
    return targets
