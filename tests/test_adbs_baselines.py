"""Clinical baselines on synthetic sensed sequences: calibration, smoothing, ramps, timers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from controller.policies.adbs import (
    AdaptiveSettings,
    DualThresholdPolicy,
    OnOffPolicy,
    ProportionalPolicy,
    SingleThresholdPolicy,
)
from controller.policies.base import Policy
from controller.policies.biomarker import LeadInCalibration, Smoother
from controller.policies.factory import SENSED_BASELINES, build_policy
from controller.policies.ftsts_sensed import FtstsSensedPolicy
from core.errors import ConfigError
from protocol.envelope.config import load_envelope
from simulator.sensing.config import SENSED_FIELDS

PERIOD_MS = 20.0
ONSET_MS = 2000.0
FEATURE = "lfp_band_uv2"


def drive(
    policy: Policy, power: Callable[[float], float], end_ms: float
) -> tuple[np.ndarray, np.ndarray]:
    """Call ``act`` every 20 ms from t = 20 ms (observation stamped t: window ending at t)."""
    policy.reset()
    times = np.arange(PERIOD_MS, end_ms + PERIOD_MS / 2, PERIOD_MS)
    amps = np.array([policy.act({FEATURE: power(float(t))}, float(t)).amplitude for t in times])
    return times, amps


def settings(**kw: float) -> AdaptiveSettings:
    return AdaptiveSettings(onset_ms=ONSET_MS, settle_ms=500.0, **kw)  # type: ignore[arg-type]


def test_smoother_is_a_trailing_boxcar_in_model_time() -> None:
    s = Smoother(60.0)
    assert s.add(20.0, 1.0) == 1.0
    assert s.add(40.0, 2.0) == pytest.approx(1.5)
    assert s.add(60.0, 3.0) == pytest.approx(2.0)
    assert s.add(80.0, 7.0) == pytest.approx(4.0)  # 2, 3, 7: the sample at 20 ms has left
    s.reset()
    assert s.add(100.0, 5.0) == 5.0
    with pytest.raises(ConfigError, match="width_ms"):
        Smoother(0.0)


def test_calibration_uses_the_lead_in_only() -> None:
    c = LeadInCalibration(onset_ms=100.0, settle_ms=40.0)
    assert not c.offer(20.0, 1000.0)  # before settling: ignored
    assert not c.offer(40.0, 2.0)
    assert not c.offer(80.0, 4.0)
    assert c.offer(100.0, 6.0)  # the last lead-in window, then frozen
    assert c.offer(120.0, 1e9)  # after the onset: never used
    assert c.mean == pytest.approx(4.0)
    assert c.n_samples == 3
    assert c.percentile(50) == pytest.approx(4.0)
    late = LeadInCalibration(onset_ms=0.0)
    assert late.offer(20.0, 3.0)  # no lead-in seen: the first observation is all there is
    assert late.mean == 3.0


def test_threshold_comes_from_this_seeds_lead_in() -> None:
    """Scaling the whole sequence scales the thresholds: same decisions, per-seed calibration."""

    def power(t: float) -> float:
        return 50.0 if t <= ONSET_MS else (80.0 if t < 3000.0 else 5.0)

    base = drive(OnOffPolicy(settings()), power, 4000.0)[1]
    scaled = drive(OnOffPolicy(settings()), lambda t: 1000.0 * power(t), 4000.0)[1]
    np.testing.assert_allclose(base, scaled)
    p = OnOffPolicy(settings(), threshold_fraction=0.5)
    drive(p, power, 4000.0)
    assert p.reference == pytest.approx(50.0)
    assert p.threshold == pytest.approx(25.0)
    # A lead-in value that differs changes the reference; values after the onset never do.
    drive(p, lambda t: 1e6 if t > ONSET_MS else 50.0, 2400.0)
    assert p.reference == pytest.approx(50.0)


def test_onoff_ramps_on_then_off_then_on_with_the_ramp_slope() -> None:
    """Band power high, falls below the threshold, rises again: on, ramp off, ramp on."""

    def power(t: float) -> float:
        if t <= ONSET_MS:
            return 100.0
        if t < 4000.0:
            return 100.0
        if t < 6000.0:
            return 10.0
        return 100.0

    t, amp = drive(OnOffPolicy(settings(), threshold_fraction=0.5, ramp_ms=250.0), power, 8000.0)
    step = 100.0 * PERIOD_MS / 250.0  # 8 mV per 20 ms tick
    assert np.all(amp[t < ONSET_MS] == 0.0)
    rising = amp[(t >= ONSET_MS) & (t < ONSET_MS + 240.0)]  # 12.5 ticks to the top
    np.testing.assert_allclose(np.diff(np.concatenate([[0.0], rising])), step)
    assert np.all(amp[(t >= 2300.0) & (t < 4000.0)] == 100.0)
    # After the fall the 400 ms boxcar crosses 50 when over half its samples are low (~4200 ms).
    off_start = t[np.nonzero((t >= 4000.0) & (amp < 100.0))[0][0]]
    assert 4000.0 < off_start <= 4400.0
    falling = amp[(t >= off_start - PERIOD_MS) & (t < 5000.0)]
    d = -np.diff(falling)
    assert np.all(d[falling[1:] > 0.0] == pytest.approx(step))
    assert np.all(amp[(t >= 4800.0) & (t < 6000.0)] == 0.0)
    on_again = t[np.nonzero((t >= 6000.0) & (amp > 0.0))[0][0]]
    assert 6000.0 < on_again <= 6400.0
    assert np.all(amp[t >= 6800.0] == 100.0)


def test_single_threshold_waits_for_its_onset_timers() -> None:
    """B3-ST: threshold 0.75 x the lead-in mean; crossings shorter than 200 ms are ignored."""
    pol = SingleThresholdPolicy(settings(smoothing_ms=20.0))

    def power(t: float) -> float:
        if t <= ONSET_MS:
            return 100.0  # above 75 from the onset: on once 200 ms have passed
        if 3000.0 <= t < 3100.0:
            return 50.0  # 100 ms below: ignored
        if 4000.0 <= t < 5000.0:
            return 50.0  # 1 s below: off after 200 ms
        return 100.0

    t, amp = drive(pol, power, 6000.0)
    assert pol.threshold == pytest.approx(75.0)
    assert np.all(amp[t < ONSET_MS + 200.0 - 1.0] == 0.0)
    assert amp[t == ONSET_MS + 200.0][0] == pytest.approx(8.0)  # 250 ms ramp: 8 mV per tick
    assert np.all(amp[(t >= 2500.0) & (t < 4200.0)] == 100.0)
    assert amp[t == 4200.0][0] == pytest.approx(92.0)
    assert np.all(amp[(t >= 4500.0) & (t < 5200.0)] == 0.0)
    assert amp[-1] == 100.0


def test_dual_threshold_holds_between_thresholds() -> None:
    """Ramp up above the upper threshold, hold when the power sits between the two."""
    pol = DualThresholdPolicy(settings(smoothing_ms=20.0), upper_fraction=0.5,
                              lower_fraction=0.25, ramp_up_ms=500.0, ramp_down_ms=1000.0,
                              onset_up_ms=0.0, onset_down_ms=0.0, blanking_ms=0.0)  # fmt: skip

    def power(t: float) -> float:
        if t <= ONSET_MS or t < 2200.0:
            return 100.0  # above the upper threshold (50)
        if t < 5000.0:
            return 40.0  # between 25 and 50: hold
        return 10.0  # below 25: ramp down

    t, amp = drive(pol, power, 7000.0)
    up_step = 100.0 * PERIOD_MS / 500.0
    rising = amp[(t >= ONSET_MS) & (t < 2200.0)]
    np.testing.assert_allclose(np.diff(rising), up_step)
    held = amp[(t >= 2200.0) & (t < 5000.0)]
    assert np.all(held == held[0])
    assert 0.0 < held[0] < 100.0
    falling = amp[(t >= 5000.0) & (amp > 0.0)]
    np.testing.assert_allclose(-np.diff(falling), 100.0 * PERIOD_MS / 1000.0)
    assert amp[-1] == 0.0


def test_dual_threshold_onset_timers_and_blanking() -> None:
    """Short excursions past a threshold do nothing; after a change, the detector is blanked."""
    pol = DualThresholdPolicy(settings(smoothing_ms=20.0), onset_up_ms=200.0,
                              onset_down_ms=400.0, blanking_ms=300.0)  # fmt: skip

    def power(t: float) -> float:
        if t <= ONSET_MS:
            return 100.0  # reference 100: upper 50, lower 25
        if t < 2400.0:
            return 40.0  # hold
        if t < 2540.0:
            return 80.0  # above for 140 ms < 200 ms: no ramp
        if t < 3000.0:
            return 40.0
        return 80.0  # above for good: ramp up after 200 ms

    t, amp = drive(pol, power, 4000.0)
    assert np.all(amp[t < 3000.0 + 200.0 - 1.0] == 0.0)
    first_up = t[np.nonzero(amp > 0.0)[0][0]]
    assert first_up == pytest.approx(3200.0)
    # Blanking: once ramping, a dip below the lower threshold is ignored for 300 ms.
    pol2 = DualThresholdPolicy(settings(smoothing_ms=20.0), onset_up_ms=0.0,
                               onset_down_ms=0.0, blanking_ms=300.0)  # fmt: skip

    def power2(t: float) -> float:
        if t <= ONSET_MS:
            return 100.0
        if t < 2100.0:
            return 80.0  # up at once (state change at the onset observation, 2000 ms)
        return 5.0  # below the lower threshold from 2100 ms

    t2, amp2 = drive(pol2, power2, 3000.0)
    assert np.all(np.diff(amp2[(t2 >= 2000.0) & (t2 < 2300.0)]) > 0.0)  # still ramping up
    peak = int(np.argmax(amp2))
    assert t2[peak] == pytest.approx(2280.0)  # blanking over at 2300 ms: turns down
    assert np.all(np.diff(amp2[peak:]) <= 0.0)


def test_proportional_follows_the_power_between_thresholds() -> None:
    pol = ProportionalPolicy(settings(smoothing_ms=20.0), upper_fraction=0.5,
                             lower_fraction=0.25, ramp_ms=250.0)  # fmt: skip

    def power(t: float) -> float:
        if t <= ONSET_MS:
            return 100.0
        return 37.5 if t < 4000.0 else 10.0  # halfway between 25 and 50, then below

    t, amp = drive(pol, power, 5000.0)
    assert amp[(t > 3000.0) & (t < 4000.0)] == pytest.approx(50.0)
    assert amp[-1] == 0.0
    assert np.max(np.abs(np.diff(amp))) <= 100.0 * PERIOD_MS / 250.0 + 1e-9


def test_ftsts_sensed_probes_and_latches_on_a_quiet_probe() -> None:
    """A probe ends early when the power rises; a probe that stays quiet trips the latch."""
    pol = FtstsSensedPolicy(onset_ms=ONSET_MS, probe_every_ms=1000.0, probe_ms=400.0,
                            latch_fraction=0.25)  # fmt: skip

    def power(t: float) -> float:
        if t <= ONSET_MS:
            return 100.0  # reference 100: latch level 25
        if 3100.0 <= t < 4000.0:
            return 60.0  # the first probe (from 3000 ms) sees the network resynchronise
        if 4200.0 <= t < 4300.0:
            return 30.0  # so does the second (from 4100 ms), 100 ms in
        return 5.0  # the third (from 5200 ms) stays quiet for 400 ms: latch

    t, amp = drive(pol, power, 8000.0)
    on = amp > 0.0
    assert not on[t < ONSET_MS].any()
    assert on[(t >= ONSET_MS) & (t < 3000.0)].all()
    assert not on[(t >= 3000.0) & (t < 3100.0)].any()
    assert on[(t >= 3100.0) & (t < 4100.0)].all()  # resumed at once, 1000 ms to the next
    assert not on[(t >= 4100.0) & (t < 4200.0)].any()
    assert on[(t >= 4200.0) & (t < 5200.0)].all()
    assert not on[t >= 5200.0].any()
    assert pol.latched_at_ms == pytest.approx(5600.0)
    assert [p["length_ms"] for p in pol.probes] == pytest.approx([100.0, 100.0, 400.0])
    assert [p["peak"] for p in pol.probes] == pytest.approx([60.0, 30.0, 5.0])
    assert np.all(amp[on] == 100.0)


@pytest.mark.parametrize("name", SENSED_BASELINES)
def test_factory_builds_every_baseline_for_the_model_envelope_only(name: str) -> None:
    pol = build_policy(name, load_envelope("simulator"), onset_ms=1980.0)
    assert pol.name == name
    assert pol.required_fields == ("lfp_band_uv2",)
    # Only what an implant measures: the sensed features and the charge it delivered.
    assert set(pol.required_fields) <= {*SENSED_FIELDS, "charge_mv_ms"}
    assert pol.action_map is None
    with pytest.raises(ConfigError, match="model-domain"):
        build_policy(name, load_envelope("device"))
    with pytest.raises(ConfigError, match="amplitude"):
        build_policy(name, load_envelope("simulator"), amplitude=500.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="lower_fraction"):
        DualThresholdPolicy(settings(), upper_fraction=0.3, lower_fraction=0.4)
    with pytest.raises(ConfigError, match="ramp_ms"):
        OnOffPolicy(settings(), ramp_ms=0.0)
    with pytest.raises(ConfigError, match="probe_ms"):
        FtstsSensedPolicy(probe_ms=0.0)
    pol = OnOffPolicy(settings())
    pol.reset()
    for k in range(1, 100):
        pol.act({FEATURE: 0.0}, 20.0 * k)
    with pytest.raises(ConfigError, match="lead-in mean"):
        pol.act({FEATURE: 0.0}, ONSET_MS)


def test_onoff_in_the_control_loop_against_the_in_process_simulator() -> None:
    """``--policy adbs-onoff`` as the controller runs it: sensed fields, ramps in the envelope."""
    from controller.backends.inprocess import InProcessConnection
    from controller.envelope.governor import SafetyGovernor
    from controller.loop import ControlLoop, LoopSettings
    from simulator.config import NetworkConfig

    env = load_envelope("simulator")
    policy = build_policy("adbs-onoff", env, onset_ms=600.0)
    assert isinstance(policy, OnOffPolicy)
    backend = InProcessConnection.simulator(NetworkConfig(n_e=160, n_i=40), seed=3)
    gov = SafetyGovernor(env, 0.02)
    loop = ControlLoop(backend, policy, gov, LoopSettings(period_ms=20.0, duration_s=2.0,
                                                          pace="fast"))  # fmt: skip
    result = loop.run()
    assert result.end_reason == "completed"
    assert policy.reference is not None
    assert policy.reference > 0.0
    applied = [0.0 if a is None else a.amplitude for a in backend.applied]
    first_on = next(i for i, a in enumerate(applied) if a > 0.0)
    assert first_on * 20.0 >= 600.0
    # The policy's 250 ms ramp (8 mV per tick) is gentler than the envelope's: no ramp clamp.
    assert max(np.diff(applied)) <= 8.0 + 1e-9
    assert gov.counts.get("ramp_up", 0) == 0
    assert result.stats.charge > 0.0
