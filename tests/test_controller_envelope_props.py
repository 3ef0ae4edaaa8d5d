"""Property tests: no sequence of policy outputs yields a command outside the envelope."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.envelope.action import ActionMap
from controller.envelope.governor import SafetyGovernor
from protocol.envelope.config import SafetyEnvelope, load_envelope, validate
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.softstart import soft_start_ceiling

SIM = load_envelope("simulator")
DEV = load_envelope("device")
# Variants where the charge and duty rules bind (with the defaults they never do).
SIM_TIGHT = validate(replace(SIM, charge_per_phase_max=60.0, pulse_width_step_us=475.0))
DEV_WIDE = validate(
    replace(
        DEV,
        amplitude_max=10.0,
        pulse_width_min_us=20.0,
        pulse_width_max_us=450.0,
        frequency_min_hz=2.0,
        frequency_max_hz=250.0,
        pulse_width_step_us=60.0,
        frequency_step_hz=50.0,
        amplitude_up_per_s=2.0,
        amplitude_down_per_s=5.0,
        soft_start_s=1.0,
    )
)
ENVS = [SIM, DEV, SIM_TIGHT, DEV_WIDE]
IDS = ["simulator", "device", "simulator-tight-charge", "device-wide"]
T = 0.02
EPS = 1e-9

wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e3, max_value=1e3),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, math.nan, math.inf, -math.inf, 5e-324]),
)
setpoint_requests = st.builds(Setpoint, amplitude=wild, frequency_hz=wild, pulse_width_us=wild)
normalised = st.one_of(
    st.lists(st.floats(min_value=-1.5, max_value=1.5), min_size=3, max_size=3),
    st.lists(wild, min_size=0, max_size=5),
    st.sampled_from([None, "x", {"a": 1}, [[0.1, 0.2, 0.3]]]),
)
oscillating = st.integers(min_value=1, max_value=10).map(
    lambda n: [
        Setpoint(
            amplitude=200.0 * (k % 2),
            frequency_hz=5.0 + 175.0 * (k % 2),
            pulse_width_us=50.0 + 950.0 * (k % 2),
        )
        for k in range(n)
    ]
)
gaps = st.sampled_from([T, T, T, T, 1.5 * T, 3.0 * T, 10.0 * T])


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def make_map(env: SafetyEnvelope) -> ActionMap:
    return ActionMap(
        ("amplitude", "frequency_hz", "pulse_width_us"),
        (env.amplitude_min, env.frequency_min_hz, env.pulse_width_min_us),
        (env.amplitude_max, env.frequency_max_hz, env.pulse_width_max_us),
    )


def check_sequence(
    env: SafetyEnvelope, requests: list[object], gap_list: list[float], amap: ActionMap | None
) -> None:
    gov = SafetyGovernor(env, T, amap)
    gov.arm(0.0)
    t = 0.0
    since_off = 0  # periods since the start of the last off setpoint (the soft start's clock)
    prev = gov.last
    for i, req in enumerate(requests):
        t += gap_list[i % len(gap_list)]
        d = gov.command(req, t)
        sp = d.setpoint
        reasons = {f.reason for f in d.findings}
        if "lease_expired" in reasons:
            prev = Setpoint(
                amplitude=0.0, frequency_hz=prev.frequency_hz, pulse_width_us=prev.pulse_width_us
            )
            since_off = 0
        assert all(math.isfinite(v) for v in (sp.amplitude, sp.frequency_hz, sp.pulse_width_us))
        assert 0.0 <= sp.amplitude <= env.amplitude_max + EPS
        assert env.frequency_min_hz - EPS <= sp.frequency_hz <= env.frequency_max_hz + EPS
        assert env.pulse_width_min_us - EPS <= sp.pulse_width_us <= env.pulse_width_max_us + EPS
        period_us = 1e6 / sp.frequency_hz
        assert (
            2 * sp.pulse_width_us + env.interphase_gap_us + env.recharge_margin_us
            <= period_us + EPS
        )
        assert sp.amplitude * sp.pulse_width_us / 1000.0 <= env.charge_per_phase_max * (1 + 1e-9)
        if env.domain == "physical":
            density = sp.amplitude * sp.pulse_width_us / 1000.0 / env.electrode_area_cm2
            assert density <= env.charge_density_max_uc_cm2 * (1 + 1e-9)
        if gov.latched is None:
            assert sp.amplitude - prev.amplitude <= env.amplitude_up_per_s * T + EPS
            assert prev.amplitude - sp.amplitude <= env.amplitude_down_per_s * T + EPS
            assert sp.amplitude <= soft_start_ceiling(since_off * T, env) + EPS
            if prev.is_on:
                assert abs(sp.frequency_hz - prev.frequency_hz) <= env.frequency_step_hz + EPS
                assert abs(sp.pulse_width_us - prev.pulse_width_us) <= env.pulse_width_step_us + EPS
        else:
            assert sp.amplitude == 0.0
        since_off = since_off + 1 if sp.is_on else 1
        prev = sp


@pytest.fixture(autouse=True)
def _quiet_logs():
    with structlog.testing.capture_logs():
        yield


@pytest.mark.parametrize("env", ENVS, ids=IDS)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(setpoint_requests, min_size=1, max_size=60),
    gap_list=st.lists(gaps, min_size=1, max_size=8),
)
def test_setpoint_requests_never_leave_the_envelope(env, requests, gap_list):
    check_sequence(env, requests, gap_list, None)


@pytest.mark.parametrize("env", ENVS, ids=IDS)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(normalised, min_size=1, max_size=60),
    gap_list=st.lists(gaps, min_size=1, max_size=8),
)
def test_normalised_actions_never_leave_the_envelope(env, requests, gap_list):
    arrays = [
        np.asarray(r, dtype=object) if isinstance(r, list) and r and isinstance(r[0], list) else r
        for r in requests
    ]
    check_sequence(env, arrays, gap_list, make_map(env))


@pytest.mark.parametrize("env", ENVS, ids=IDS)
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blocks=st.lists(oscillating, min_size=1, max_size=8))
def test_bang_bang_oscillation_is_slew_limited(env, blocks):
    requests = [sp for block in blocks for sp in block]
    scale = env.amplitude_max / 200.0
    scaled = [
        Setpoint(
            amplitude=sp.amplitude * scale,
            frequency_hz=sp.frequency_hz,
            pulse_width_us=sp.pulse_width_us,
        )
        for sp in requests
    ]
    check_sequence(env, scaled, [T], None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.integers(min_value=1, max_value=19),
    excess=st.floats(min_value=0.0, max_value=1e-7),
)
def test_a_target_a_rounding_beyond_a_ramp_step_never_makes_a_breach(
    steps: int, excess: float
) -> None:
    """A float32 action lands ``excess`` beyond a whole number of 0.2 mA ramp steps.

    The governor used to snap the last step onto such a target (3e-9 mA too far for the
    backends' check), which the monitor called ``governor_breach``: a safe stop while ramping
    to a legitimate setting. Every step must now pass the monitor, and the ramp must end on the
    target.
    """
    env = load_envelope("emulator")
    gov = SafetyGovernor(env, 0.1)
    gov.arm(0.0)
    target = Setpoint(amplitude=0.2 * steps + excess, frequency_hz=92.0, pulse_width_us=450.0)
    t = 0.0
    for _ in range(steps + 3):
        decision = gov.command(target, t)
        assert decision.fault is None, decision
        t += 0.1
    assert decision.setpoint.amplitude == pytest.approx(target.amplitude, abs=1e-12)


def test_the_float32_ramp_of_the_constant_train_grid_reaches_2_2_ma() -> None:
    """The case the constant-train grid hit: 2.2 mA through a float32 action."""
    env = load_envelope("emulator")
    amap = ActionMap(("amplitude", "frequency_hz", "pulse_width_us"), (0.0, 60.0, 60.0),
                     (4.0, 185.0, 450.0))  # fmt: skip
    action = np.array([2 * 2.2 / 4.0 - 1.0, 2 * (80.0 - 60.0) / 125.0 - 1.0, 1.0], np.float32)
    target = amap.to_setpoint(action)
    assert target.amplitude != 2.2  # 2.2000000029802322
    gov = SafetyGovernor(env, 0.1)
    gov.arm(0.0)
    for k in range(15):
        assert gov.command(target, 0.1 * k).fault is None
