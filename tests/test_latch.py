"""The paper's latch, one definition for the experiments, the ftsts policy and the evaluation."""

from __future__ import annotations

import math

import pytest

from controller.policies.builtin import FtstsPolicy
from simulator.experiments import EXPERIMENTS
from simulator.latch import Latch, LatchRule


def test_nothing_before_the_onset_then_on_until_the_rule_trips_then_off_for_good() -> None:
    latch = Latch(LatchRule(75.0), onset_ms=100.0)
    assert not latch.stimulating(80.0, 10.0)  # before the onset the weight is not looked at
    assert not latch.latched
    assert latch.stimulating(100.0, 80.0)
    assert latch.stimulating(120.0, 75.0)  # at the threshold: not below it
    assert not latch.stimulating(140.0, 74.9)
    assert latch.latched_at_ms == 140.0
    assert not latch.stimulating(160.0, 200.0)  # a recovered weight does not reopen it
    assert latch.latched_at_ms == 140.0
    latch.reset()
    assert latch.stimulating(180.0, 200.0)


def test_a_window_a_rounding_error_before_the_onset_counts_as_at_it() -> None:
    onset = 0.1 + 0.2  # 0.30000000000000004
    assert Latch(LatchRule(75.0), onset_ms=onset).stimulating(0.3, 100.0)
    assert not Latch(LatchRule(75.0), onset_ms=onset).stimulating(0.3 - 1e-6, 100.0)


def test_without_a_rule_stimulation_runs_to_the_end() -> None:
    latch = Latch(None)
    assert all(latch.stimulating(t, -1e9) for t in (0.0, 1e3, 1e6))
    assert latch.latched_at_ms is None


@pytest.mark.parametrize(
    ("rule", "weights", "trips"),
    [
        (LatchRule(75.0), (74.0, math.nan), True),
        (LatchRule(75.0), (math.nan, 0.0), False),  # NaN never trips
        (LatchRule(125.0, "above"), (126.0, 0.0), True),
        (LatchRule(125.0, "above"), (124.0, 0.0), False),
        (LatchRule(75.0, on_ie=True), (74.0, 76.0), False),  # Fig 11 waits for I→E too
        (LatchRule(75.0, on_ie=True), (74.0, 74.0), True),
    ],
)
def test_rules(rule: LatchRule, weights: tuple[float, float], trips: bool) -> None:
    assert rule.trips(*weights) is trips


def test_each_experiment_states_its_latch_as_a_rule() -> None:
    assert EXPERIMENTS["none"].latch_rule is None
    assert EXPERIMENTS["ftsts-desync"].latch_rule == LatchRule(75.0)
    assert EXPERIMENTS["ftsts-sync"].latch_rule == LatchRule(125.0, "above")
    assert EXPERIMENTS["fig11-plastic-ie"].latch_rule == LatchRule(75.0, on_ie=True)


def test_the_ftsts_policy_latches_through_the_same_latch() -> None:
    policy = FtstsPolicy(onset_ms=40.0)
    assert policy.act({"weight_mv": 10.0}, 20.0).amplitude == 0.0  # before the onset
    assert policy.act({"weight_mv": 80.0}, 40.0) == policy.setpoint
    assert policy.act({"weight_mv": 70.0}, 60.0).amplitude == 0.0
    assert policy.latched_at_ms == 60.0
    assert policy.act({"weight_mv": 80.0}, 80.0).amplitude == 0.0
    policy.reset()
    assert policy.latched_at_ms is None
    assert policy.act({"weight_mv": 80.0}, 100.0) == policy.setpoint
