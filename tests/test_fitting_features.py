"""Feature extraction failure states and the z-score objective (no NEURON needed)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from fitting.features import (
    STATUS_FEATURE_FAILED,
    STATUS_INVALID_TRACE,
    STATUS_NO_SPIKE,
    STATUS_OK,
    FeatureResult,
    check_trace,
    extract_features,
    resolve_feature,
)
from fitting.measurements import Target
from fitting.objective import FAILURE_PENALTY, failed_evaluation, rescore, score_features

T_MS = np.arange(0.0, 500.0 + 0.0125, 0.025)


def spiking_trace(n_spikes: int) -> np.ndarray:
    v = np.full_like(T_MS, -65.0)
    for i in range(n_spikes):
        centre = 160.0 + 10.0 * i
        v += 95.0 * np.exp(-(((T_MS - centre) / 0.4) ** 2))
    return v


def extract(v: np.ndarray, names: list[str], t: np.ndarray = T_MS) -> dict[str, FeatureResult]:
    return {r.name: r for r in extract_features(t, v, names, 150.0, 250.0, 1.0, 500.0)}


def test_flat_trace_has_no_spike_features_but_passive_ones() -> None:
    results = extract(
        np.full_like(T_MS, -65.0),
        ["ap_amplitude", "time_to_first_spike", "spike_count", "resting_potential"],
    )
    assert results["ap_amplitude"].status == STATUS_NO_SPIKE
    assert results["ap_amplitude"].value is None
    assert results["time_to_first_spike"].status == STATUS_NO_SPIKE
    assert results["spike_count"] == FeatureResult("spike_count", 0.0, STATUS_OK)
    assert results["resting_potential"].value == pytest.approx(-65.0)


def test_spikes_are_counted_and_measured() -> None:
    results = extract(spiking_trace(5), ["spike_count", "ap_amplitude", "time_to_first_spike"])
    assert results["spike_count"].value == 5
    assert results["ap_amplitude"].status == STATUS_OK
    assert results["ap_amplitude"].value == pytest.approx(95.0, abs=10.0)
    assert results["time_to_first_spike"].value == pytest.approx(10.0, abs=1.0)


@pytest.mark.parametrize(
    ("t", "v", "reason"),
    [
        (T_MS, np.where(T_MS > 200, np.nan, -65.0), "NaN or Inf"),
        (T_MS[:100], np.full(100, -65.0), "expected trace to end at 500.0 ms"),
        (np.array([]), np.array([]), "expected >= 3 samples"),
        (T_MS, np.full_like(T_MS, -2000.0), "expected |v| <= 1000 mV"),
    ],
)
def test_invalid_traces_are_flagged_not_nan(t: np.ndarray, v: np.ndarray, reason: str) -> None:
    assert reason in (check_trace(t, v, 500.0) or "")
    results = extract(v, ["resting_potential", "ap_amplitude"], t)
    assert {r.status for r in results.values()} == {STATUS_INVALID_TRACE}
    assert all(r.value is None for r in results.values())


def test_feature_failure_when_efel_gives_nothing() -> None:
    # Without spikes there is no inter-spike interval: eFEL returns nothing for ISI_CV.
    results = extract(spiking_trace(1), ["ISI_CV"])
    assert results["ISI_CV"].status in (STATUS_FEATURE_FAILED, STATUS_NO_SPIKE)
    assert results["ISI_CV"].value is None


def test_unknown_feature_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"did you mean \['spike_count'"):
        resolve_feature("spike_cont")


TARGETS = (Target("p", "spike_count", 8.0, 0.5, 1.0), Target("p", "ap_amplitude", 70.0, 3.5, 3.0))


def test_z_scores_weights_and_acceptance() -> None:
    results = {
        "p/spike_count": FeatureResult("spike_count", 9.0, STATUS_OK),
        "p/ap_amplitude": FeatureResult("ap_amplitude", 63.0, STATUS_OK),
    }
    evaluation = score_features({"soma.gnabar_hh": 0.1}, TARGETS, results)
    assert evaluation.z == {"p/spike_count": 2.0, "p/ap_amplitude": -2.0}
    assert evaluation.score == pytest.approx(2.0)
    assert evaluation.max_abs_z == 2.0
    assert evaluation.reproduces(2.0)
    assert not evaluation.reproduces(1.9)
    assert evaluation.status == STATUS_OK


def test_failures_score_the_penalty_with_their_status() -> None:
    results = {
        "p/spike_count": FeatureResult("spike_count", 0.0, STATUS_OK),
        "p/ap_amplitude": FeatureResult("ap_amplitude", None, STATUS_NO_SPIKE, "no spike"),
    }
    evaluation = score_features({}, TARGETS, results)
    assert evaluation.z["p/ap_amplitude"] == FAILURE_PENALTY
    assert evaluation.statuses["p/ap_amplitude"] == STATUS_NO_SPIKE
    assert evaluation.status == STATUS_NO_SPIKE
    assert np.isfinite(evaluation.score)
    timeout = failed_evaluation({}, TARGETS, "timeout", "too slow")
    assert timeout.status == "timeout"
    assert timeout.max_abs_z == FAILURE_PENALTY


def test_rescore_against_new_targets_needs_no_simulation() -> None:
    results = {
        "p/spike_count": FeatureResult("spike_count", 9.0, STATUS_OK),
        "p/ap_amplitude": FeatureResult("ap_amplitude", 70.0, STATUS_OK),
    }
    evaluation = score_features({}, TARGETS, results)
    moved = rescore(
        evaluation, (Target("p", "spike_count", 9.0, 1.0), Target("p", "ap_amplitude", 60.0, 5.0))
    )
    assert moved.z == {"p/spike_count": 0.0, "p/ap_amplitude": 2.0}
    round_trip = type(evaluation).from_dict(evaluation.to_dict())
    assert round_trip == evaluation
