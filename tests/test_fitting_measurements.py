"""Measurement files: loading, validation errors that name the field, traces → targets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from fitting.measurements import (
    PAPER_STIMULUS,
    example_measurements_path,
    load_measurements,
)
from fitting.parameters import ParameterSpace, ParameterSpec, parse_parameter_name

GOOD = {
    "stimuli": [
        {
            "name": "hyper",
            "amplitude_na": -5.0,
            "delay_ms": 150,
            "duration_ms": 100,
            "tstop_ms": 500,
        }
    ],
    "targets": [
        {"stimulus": "hyper", "feature": "input_resistance", "mean": 10.0, "std": 0.5, "weight": 2}
    ],
    "parameters": [{"name": "soma.gnabar_hh", "low": 0.02, "high": 0.6, "log": True}],
}


def write(tmp_path: Path, data: object, name: str = "m.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def with_change(section: str, **fields: object) -> dict[str, object]:
    data = json.loads(json.dumps(GOOD))
    data[section][0].update(fields)
    return data


def test_bundled_example_is_the_papers_protocol() -> None:
    measurements = load_measurements(example_measurements_path())
    hyper = measurements.stimulus("hyperpolarising")
    assert (hyper.amplitude_na, hyper.delay_ms, hyper.duration_ms, hyper.tstop_ms) == (
        -5.0,
        150,
        100,
        500,
    )
    assert hyper == PAPER_STIMULUS
    assert len(measurements.targets) == 8
    assert measurements.parameters[0].name == "soma.gnabar_hh"


def test_json_and_yaml_load_the_same(tmp_path: Path) -> None:
    import yaml

    from_json = load_measurements(write(tmp_path, GOOD))
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(yaml.safe_dump(GOOD))
    assert load_measurements(yaml_path) == from_json
    assert from_json.targets[0].weight == 2.0
    assert from_json.stimuli[0].location == "soma(0.5)"


@pytest.mark.parametrize(
    ("section", "fields", "message"),
    [
        ("targets", {"std": 0}, "targets[0].std: expected a number > 0, actual 0.0"),
        ("targets", {"std": None}, "targets[0].std: expected a number, actual missing"),
        ("targets", {"mean": "ten"}, "targets[0].mean: expected a number, actual 'ten'"),
        (
            "targets",
            {"stimulus": "nope"},
            "targets[0].stimulus: expected one of ['hyper'], actual 'nope'",
        ),
        ("targets", {"weight": -1}, "targets[0].weight: expected a number > 0, actual -1.0"),
        (
            "stimuli",
            {"location": "soma"},
            "stimuli[0].location: expected section(x) with x in [0, 1]",
        ),
        (
            "stimuli",
            {"tstop_ms": 200},
            "expected 0 <= delay_ms and delay_ms + duration_ms < tstop_ms",
        ),
        (
            "stimuli",
            {"amplitude_na": None},
            "stimuli[0].amplitude_na: expected a number, actual missing",
        ),
        ("parameters", {"low": 0}, "log scaling needs low > 0, actual low=0.0"),
        ("parameters", {"name": "gnabar_hh"}, "Expected a parameter name of the form"),
    ],
)
def test_validation_names_the_field(
    tmp_path: Path, section: str, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_measurements(write(tmp_path, with_change(section, **fields)))


def test_unknown_feature_suggests_the_alias(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"targets\[0\].feature: .*did you mean .*input_resistance"
    ):
        load_measurements(write(tmp_path, with_change("targets", feature="input_resistence")))


def test_raw_efel_feature_names_are_accepted(tmp_path: Path) -> None:
    loaded = load_measurements(write(tmp_path, with_change("targets", feature="voltage_base")))
    assert loaded.targets[0].feature == "voltage_base"


def test_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"stimuli: expected a non-empty list"):
        load_measurements(write(tmp_path, {"targets": []}))
    with pytest.raises(ConfigError, match=r"expected at least one entry in targets or traces"):
        load_measurements(write(tmp_path, {"stimuli": GOOD["stimuli"]}))
    with pytest.raises(ConfigError, match=r"actual extra \['target'\]"):
        load_measurements(write(tmp_path, {**GOOD, "target": []}))
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"expected valid JSON"):
        load_measurements(bad)
    with pytest.raises(ConfigError, match=r"Expected a measurements file at .*missing"):
        load_measurements(tmp_path / "absent.yaml")
    duplicate = json.loads(json.dumps(GOOD))
    duplicate["targets"].append(duplicate["targets"][0])
    with pytest.raises(ConfigError, match=r"duplicates \['hyper/input_resistance'\]"):
        load_measurements(write(tmp_path, duplicate))


def test_csv_for_spreadsheets(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "stimulus,amplitude_na,delay_ms,duration_ms,tstop_ms,location,record,v_init_mv,feature,mean,std,weight\n"
        "hyper,-5,150,100,500,soma(0.5),,,input_resistance,10,0.5,1\n"
        "hyper,-5,150,100,500,soma(0.5),,,resting_potential,-65,1,\n"
        "step,4,150,100,500,,,,spike_count,8,0.5,2\n"
    )
    loaded = load_measurements(path)
    assert [p.name for p in loaded.stimuli] == ["hyper", "step"]
    assert loaded.stimulus("step").amplitude_na == 4.0
    assert [t.weight for t in loaded.targets] == [1.0, 1.0, 2.0]
    path.write_text(
        "stimulus,amplitude_na,feature,mean,std\nhyper,-5,input_resistance,10,0.5\nhyper,-4,resting_potential,-65,1\n"
    )
    with pytest.raises(ConfigError, match=r"m.csv:3: expected the same stimulus columns"):
        load_measurements(path)
    path.write_text("stimulus,feature,mean\nhyper,input_resistance,10\n")
    with pytest.raises(ConfigError, match=r"expected CSV columns including"):
        load_measurements(path)


def passive_trace(
    rin_mohm: float, amplitude_na: float, tau_ms: float
) -> tuple[np.ndarray, np.ndarray]:
    t_ms = np.arange(0.0, 500.0 + 0.0125, 0.025)
    deflection = rin_mohm * amplitude_na
    v = np.full_like(t_ms, -65.0)
    on = (t_ms >= 150) & (t_ms < 250)
    v[on] += deflection * (1 - np.exp(-(t_ms[on] - 150) / tau_ms))
    end = -65.0 + deflection * (1 - np.exp(-100 / tau_ms))
    after = t_ms >= 250
    v[after] = -65.0 + (end + 65.0) * np.exp(-(t_ms[after] - 250) / tau_ms)
    return t_ms, v


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_targets_extracted_from_raw_traces(tmp_path: Path, suffix: str) -> None:
    t_ms, v_mv = passive_trace(rin_mohm=8.0, amplitude_na=-5.0, tau_ms=5.0)
    trace = tmp_path / f"trace{suffix}"
    if suffix == ".npy":
        np.save(trace, np.column_stack([t_ms, v_mv]))
    else:
        trace.write_text(
            "t_ms,v_mv\n" + "\n".join(f"{a},{b}" for a, b in zip(t_ms, v_mv, strict=True))
        )
    data = {
        "stimuli": GOOD["stimuli"],
        "traces": [
            {
                "stimulus": "hyper",
                "file": trace.name,
                "std_fraction": 0.1,
                "features": ["input_resistance", "resting_potential", "decay_time_constant"],
            }
        ],
    }
    loaded = load_measurements(write(tmp_path, data))
    by_feature = {t.feature: t for t in loaded.targets}
    assert by_feature["input_resistance"].mean == pytest.approx(8.0, rel=0.02)
    assert by_feature["input_resistance"].std == pytest.approx(0.8, rel=0.02)
    assert by_feature["resting_potential"].mean == pytest.approx(-65.0, abs=0.01)
    assert by_feature["resting_potential"].std == 1.0
    assert by_feature["decay_time_constant"].mean == pytest.approx(5.0, rel=0.05)


def test_trace_without_spikes_cannot_give_spike_targets(tmp_path: Path) -> None:
    t_ms, v_mv = passive_trace(8.0, -5.0, 5.0)
    np.save(tmp_path / "t.npy", np.column_stack([t_ms, v_mv]))
    data = {
        "stimuli": GOOD["stimuli"],
        "traces": [{"stimulus": "hyper", "file": "t.npy", "features": ["ap_amplitude"]}],
    }
    with pytest.raises(
        ConfigError,
        match=r"traces\[0\]: expected feature ap_amplitude to be measurable .* no_spike",
    ):
        load_measurements(write(tmp_path, data))
    np.save(tmp_path / "t.npy", np.zeros((5, 3)))
    with pytest.raises(
        ConfigError,
        match=re.escape("expected an array of shape (N, 2) [t_ms, v_mv], actual (5, 3)"),
    ):
        load_measurements(
            write(
                tmp_path,
                {**data, "traces": [{**data["traces"][0], "features": ["input_resistance"]}]},
            )
        )


def test_parameter_space_maps_log_and_linear() -> None:
    space = ParameterSpace(
        [
            ParameterSpec("soma", "gnabar_hh", 0.01, 1.0, True),
            ParameterSpec("dend", "e_pas", -80, -60, False),
        ]
    )
    values = space.from_unit([0.5, 0.25])
    assert values["soma.gnabar_hh"] == pytest.approx(0.1)
    assert values["dend.e_pas"] == pytest.approx(-75.0)
    np.testing.assert_allclose(space.to_unit(values), [0.5, 0.25])
    assert parse_parameter_name("dend.g_pas") == ("dend", "g_pas")
    with pytest.raises(ConfigError, match=r"duplicates \['soma.gnabar_hh'\]"):
        ParameterSpace([ParameterSpec("soma", "gnabar_hh", 0.01, 1.0)] * 2)
    with pytest.raises(ConfigError, match=r"low < high, actual low=1.0, high=0.5"):
        ParameterSpec("soma", "gnabar_hh", 1.0, 0.5)


def test_files_with_the_old_protocol_keys_still_load(tmp_path: Path) -> None:
    new = load_measurements(write(tmp_path, GOOD))
    old = json.loads(json.dumps(GOOD))
    old["protocols"] = old.pop("stimuli")
    for target in old["targets"]:
        target["protocol"] = target.pop("stimulus")
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    assert load_measurements(old_path) == new
    both = {**old, "stimuli": old["protocols"]}
    both_path = tmp_path / "both.json"
    both_path.write_text(json.dumps(both))
    with pytest.raises(ConfigError, match=r"expected either 'stimuli' or its old name 'protocols'"):
        load_measurements(both_path)
    csv_path = tmp_path / "old.csv"
    csv_path.write_text(
        "protocol,amplitude_na,feature,mean,std\nhyper,-5,input_resistance,10,0.5\n"
    )
    assert load_measurements(csv_path).targets[0].stimulus == "hyper"
