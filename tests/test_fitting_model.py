"""Real NEURON: the bundled reference model, a hoc template with its own mod file, discovery.

NEURON runs only in spawned worker processes here (as in production), so this pytest process
never holds NEURON state that a later fork could inherit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import FittingError
from fitting.measurements import MeasurementSet, Stimulus, Target, load_measurements
from fitting.mechanisms import compile_mechanisms, mod_hash
from fitting.model import ModelSpec, parse_model
from fitting.pool import WorkerPool
from fitting.reference import TRUE_PARAMETERS
from fitting.run import discover_in_worker

DATA = Path(__file__).parent / "data" / "fitting"
HYPER = Stimulus("hyperpolarising", -5.0)
STEP = Stimulus("depolarising", 4.0)
REFERENCE_SET = MeasurementSet(
    (HYPER, STEP),
    (
        Target("hyperpolarising", "input_resistance", 10.0, 1.0),
        Target("hyperpolarising", "resting_potential", -65.0, 1.0),
        Target("depolarising", "spike_count", 8.0, 0.5),
        Target("depolarising", "ap_amplitude", 70.0, 3.5),
    ),
)


def model_geometry(evaluator: object) -> dict[str, object]:
    model = evaluator.model  # type: ignore[attr-defined]
    every = model.sections("all")
    return {
        "count": len(every),
        "names": sorted(s.name() for s in every),
        "mechs": {s.name(): sorted(s.psection()["density_mechs"]) for s in every},
    }


@pytest.fixture(scope="module")
def reference_pool() -> WorkerPool:
    with WorkerPool(parse_model("reference"), REFERENCE_SET, workers=1, timeout_s=60) as pool:
        yield pool


def test_reference_model_has_five_compartments(reference_pool: WorkerPool) -> None:
    geometry = reference_pool.call(model_geometry)
    assert geometry["count"] == 5
    assert geometry["names"] == ["dend1", "dend2", "dend3", "hillock", "soma"]
    assert geometry["mechs"]["soma"] == ["hh"]
    assert geometry["mechs"]["hillock"] == ["hh"]
    assert all(geometry["mechs"][f"dend{i}"] == ["pas"] for i in (1, 2, 3))


def test_reference_model_responds_like_a_neuron(reference_pool: WorkerPool) -> None:
    evaluation = reference_pool.evaluate([TRUE_PARAMETERS])[0]
    assert evaluation.status == "ok"
    assert 5.0 < evaluation.values["hyperpolarising/input_resistance"] < 20.0
    assert evaluation.values["hyperpolarising/resting_potential"] == pytest.approx(-65.0, abs=1.0)
    assert evaluation.values["depolarising/spike_count"] >= 5
    assert evaluation.values["depolarising/ap_amplitude"] > 50.0
    # A leakier soma lowers the input resistance: parameters reach the simulation.
    leaky = reference_pool.evaluate([{**TRUE_PARAMETERS, "soma.gl_hh": 0.0015}])[0]
    assert (
        leaky.values["hyperpolarising/input_resistance"]
        < evaluation.values["hyperpolarising/input_resistance"]
    )


def test_reference_parameters_are_discovered(reference_pool: WorkerPool) -> None:
    found = {d["name"]: d for d in reference_pool.call(discover_in_worker)}
    for name, value in TRUE_PARAMETERS.items():
        assert found[name]["value"] == pytest.approx(value)
    assert found["soma.gnabar_hh"]["mechanism"] == "hh"
    assert found["dend.e_pas"]["conductance"] is False


def test_unknown_range_variable_is_reported(reference_pool: WorkerPool) -> None:
    with pytest.raises(FittingError, match=r"Expected range variable 'gnabar_hh' in section dend1"):
        reference_pool.evaluate([{"dend.gnabar_hh": 0.1}])
    with pytest.raises(
        FittingError, match=r"Expected a section or section list in .*actual 'axon'"
    ):
        reference_pool.evaluate([{"axon.g_pas": 0.1}])


def test_fork_is_refused() -> None:
    with pytest.raises(FittingError, match=r"fork would inherit NEURON state"):
        WorkerPool(parse_model("reference"), REFERENCE_SET, start_method="fork")


def test_mod_files_compile_once_per_content(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = compile_mechanisms([DATA], cache)
    assert first is not None
    assert first.name == mod_hash([DATA / "nlleak.mod"])
    assert any(first.rglob("*.so")) or any(first.rglob("*.dylib"))
    stamp = (first / ".neuroloop-compiled").stat().st_mtime_ns
    assert compile_mechanisms([DATA], cache) == first
    assert (first / ".neuroloop-compiled").stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [first.name]  # no second build directory
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "nlleak.mod").write_text(
        (DATA / "nlleak.mod").read_text().replace("e = -70", "e = -72")
    )
    assert mod_hash([changed / "nlleak.mod"]) != first.name


def test_hoc_template_with_its_mod_file(tmp_path: Path) -> None:
    os.environ["NEUROLOOP_CACHE_DIR"] = str(tmp_path)
    try:
        spec = parse_model(f"{DATA / 'leaky_cell.hoc'}:LeakyCell")
        assert spec.kind == "hoc"
        assert spec.mod_dirs == (str(DATA.resolve()),)
        prepared = spec.prepare()
        assert prepared.compiled_dir is not None
        measurements = load_measurements(DATA / "leaky_cell.yaml")
        with WorkerPool(prepared, measurements, workers=1, timeout_s=60) as pool:
            found = {d["name"]: d for d in pool.call(discover_in_worker)}
            assert found["soma.g_nlleak"]["value"] == pytest.approx(5e-5)
            assert found["basal.g_nlleak"]["value"] == pytest.approx(1e-4)
            assert found["dend.e_nlleak"]["value"] == pytest.approx(-70.0)
            assert "soma.gnabar_hh" in found
            base, leakier = pool.evaluate([{"basal.g_nlleak": 1e-4}, {"basal.g_nlleak": 4e-4}])
        assert base.status == "ok"
        rin = base.values["hyperpolarising/input_resistance"]
        assert rin == pytest.approx(measurements.targets[0].mean, rel=0.01)
        assert base.reproduces(1.0)
        assert leakier.values["hyperpolarising/input_resistance"] < rin
    finally:
        del os.environ["NEUROLOOP_CACHE_DIR"]


def test_model_strings_are_checked() -> None:
    with pytest.raises(FittingError, match=r"Expected --model to be 'reference'"):
        parse_model("nonsense")
    with pytest.raises(FittingError, match=r"Expected a hoc file at"):
        parse_model("missing.hoc:Cell")
    assert parse_model("fitting.reference:build_reference_cell") == ModelSpec(
        "python", "fitting.reference:build_reference_cell"
    )
