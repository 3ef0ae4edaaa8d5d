"""Each envelope rule alone, the envelope file validation and hash, and the governor."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import structlog

from controller.envelope.action import ActionMap, check_action
from controller.envelope.governor import SafetyGovernor
from controller.envelope.lease import Lease
from controller.envelope.observation import Streak, check_observation
from core.errors import ConfigError, SafetyFaultError
from protocol.envelope.bounds import apply_bounds
from protocol.envelope.charge import apply_charge, within_charge
from protocol.envelope.config import (
    SafetyEnvelope,
    load_envelope,
    parse_envelope,
    shannon_q_max_uc,
    validate,
)
from protocol.envelope.duty import apply_duty, fits_duty
from protocol.envelope.setpoint import Setpoint
from protocol.envelope.slew import apply_slew
from protocol.envelope.softstart import apply_soft_start, soft_start_ceiling
from protocol.schema import envelope_hash

SIM = load_envelope("simulator")
DEV = load_envelope("device")
T = 0.02


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def toml_dict(env: SafetyEnvelope) -> dict:
    d = env.as_dict()
    return {
        "envelope": {k: d[k] for k in ("name", "domain", "amplitude_unit")},
        "limits": {
            k: d[k]
            for k in (
                "amplitude_min",
                "amplitude_max",
                "frequency_min_hz",
                "frequency_max_hz",
                "pulse_width_min_us",
                "pulse_width_max_us",
            )
        },
        "charge": {
            k: d[k]
            for k in ("charge_per_phase_max", "electrode_area_cm2", "charge_density_max_uc_cm2")
        },
        "duty": {k: d[k] for k in ("interphase_gap_us", "recharge_margin_us")},
        "ramp": {
            k: d[k]
            for k in (
                "amplitude_up_per_s",
                "amplitude_down_per_s",
                "frequency_step_hz",
                "pulse_width_step_us",
                "soft_start_s",
            )
        },
        "lease": {
            k: d[k] for k in ("lease_periods", "watchdog_periods", "invalid_streak_to_fault")
        },
    }


# ----------------------------------------------------------------------------- config


def test_shipped_simulator_envelope_has_the_issue_numbers():
    assert (SIM.amplitude_min, SIM.amplitude_max) == (0.0, 200.0)
    assert (SIM.frequency_min_hz, SIM.frequency_max_hz) == (5.0, 180.0)
    assert (SIM.pulse_width_min_us, SIM.pulse_width_max_us) == (50.0, 1000.0)
    assert SIM.charge_per_phase_max == 200.0
    assert SIM.amplitude_unit == "mV"
    assert SIM.charge_unit == "mV·ms"


def test_shipped_device_envelope_is_section_2_3():
    assert DEV.amplitude_max == 3.5
    assert DEV.amplitude_unit == "mA"
    assert (DEV.pulse_width_min_us, DEV.pulse_width_max_us) == (60.0, 120.0)
    assert (DEV.frequency_min_hz, DEV.frequency_max_hz) == (60.0, 185.0)
    assert DEV.electrode_area_cm2 == 0.06
    assert DEV.charge_per_phase_max == pytest.approx(1.8)
    assert DEV.charge_density_max_uc_cm2 == 30.0
    assert DEV.soft_start_s == 2.0
    assert (DEV.amplitude_up_per_s, DEV.amplitude_down_per_s) == (0.5, 1.0)


def test_shannon_bound_for_a_3387_contact():
    assert shannon_q_max_uc(0.06) == pytest.approx(1.837, abs=1e-3)


def test_charge_above_the_shannon_and_density_bound_is_refused():
    data = toml_dict(DEV)
    data["charge"]["charge_per_phase_max"] = 1.85
    with pytest.raises(
        ConfigError, match=re.escape("charge_per_phase_max in [0.0, 1.8] µC, actual 1.85")
    ):
        parse_envelope(data, "dev.toml")


def test_amplitude_above_the_absolute_cap_is_refused():
    data = toml_dict(DEV)
    data["limits"]["amplitude_max"] = 12.0
    with pytest.raises(
        ConfigError, match=re.escape("amplitude_max in [0.0, 10.0] mA, actual 12.0")
    ):
        parse_envelope(data, "dev.toml")


def test_unknown_key_missing_key_and_wrong_type_are_named():
    data = toml_dict(SIM)
    data["ramp"]["ramp_speed"] = 3
    with pytest.raises(ConfigError, match="ramp_speed"):
        parse_envelope(data)
    data = toml_dict(SIM)
    del data["limits"]["amplitude_max"]
    with pytest.raises(ConfigError, match="missing 'amplitude_max'"):
        parse_envelope(data)
    data = toml_dict(SIM)
    data["limits"]["amplitude_max"] = "200"
    with pytest.raises(ConfigError, match=re.escape("a number for limits.amplitude_max")):
        parse_envelope(data)
    data = toml_dict(SIM)
    data["limits"]["amplitude_max"] = float("nan")
    with pytest.raises(ConfigError, match="finite"):
        parse_envelope(data)


def test_model_envelope_refuses_an_electrode_area():
    data = toml_dict(SIM)
    data["charge"]["electrode_area_cm2"] = 0.06
    with pytest.raises(ConfigError, match="model"):
        parse_envelope(data)


def test_envelope_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "env.toml"
    bad.write_text("[limits\n")
    with pytest.raises(ConfigError, match="Expected TOML in"):
        load_envelope(bad)
    with pytest.raises(ConfigError, match="readable envelope"):
        load_envelope(tmp_path / "missing.toml")


def test_hash_is_stable_and_matches_the_protocol_hash():
    again = parse_envelope(toml_dict(SIM))
    assert again.sha256() == SIM.sha256()
    assert SIM.sha256() == envelope_hash(SIM.param_specs(), SIM.extra_values())
    assert SIM.to_wire().hash == SIM.sha256()
    changed = replace(SIM, amplitude_up_per_s=999.0)
    assert changed.sha256() != SIM.sha256()
    assert SIM.sha256() != DEV.sha256()
    assert re.fullmatch("[0-9a-f]{64}", SIM.sha256())


# ------------------------------------------------------------------------------ rules


def test_bounds_clamps_slightly_out_and_rejects_far_out_and_nan():
    sp, found = apply_bounds(
        Setpoint(amplitude=250.0, frequency_hz=83.0, pulse_width_us=1000.0), SIM
    )
    assert sp == Setpoint(amplitude=200.0, frequency_hz=83.0, pulse_width_us=1000.0)
    assert [f.reason for f in found] == ["amplitude_above_max"]
    assert found[0].detail == "Expected amplitude in [0.0, 200.0] mV, actual 250.0"
    sp, found = apply_bounds(Setpoint(amplitude=100.0, frequency_hz=2.0, pulse_width_us=10.0), SIM)
    assert sp == Setpoint(amplitude=100.0, frequency_hz=5.0, pulse_width_us=50.0)
    assert {f.reason for f in found} == {"frequency_hz_below_min", "pulse_width_us_below_min"}
    sp, found = apply_bounds(
        Setpoint(amplitude=401.0, frequency_hz=83.0, pulse_width_us=1000.0), SIM
    )
    assert sp is None
    assert found[0].reason == "amplitude_far_out_of_range"
    for bad in (math.nan, math.inf, -math.inf):
        sp, found = apply_bounds(
            Setpoint(amplitude=bad, frequency_hz=83.0, pulse_width_us=1000.0), SIM
        )
        assert sp is None
        assert found[0].reason == "non_finite_request"
        assert found[0].kind == "reject"


def test_duty_shortens_the_pulse_to_fit_the_period():
    env = replace(SIM, pulse_width_max_us=4000.0)
    sp, found = apply_duty(Setpoint(amplitude=10.0, frequency_hz=180.0, pulse_width_us=3000.0), env)
    # 1e6/180 = 5555.6 µs; minus 100 µs margin, halved.
    assert sp.pulse_width_us == pytest.approx((1e6 / 180.0 - 100.0) / 2.0)
    assert found[0].reason == "duty_cycle"
    assert fits_duty(sp, env)
    sp2, found2 = apply_duty(
        Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), SIM
    )
    assert sp2.pulse_width_us == 1000.0
    assert not found2


def test_charge_lowers_amplitude_per_phase_and_per_density():
    env = replace(SIM, charge_per_phase_max=50.0)
    sp, found = apply_charge(
        Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), env
    )
    assert sp.amplitude == pytest.approx(50.0)
    assert found[0].reason == "charge_per_phase"
    dev = replace(DEV, pulse_width_max_us=450.0, charge_density_max_uc_cm2=20.0)
    sp, found = apply_charge(Setpoint(amplitude=3.5, frequency_hz=130.0, pulse_width_us=450.0), dev)
    # density 20 µC/cm² × 0.06 cm² = 1.2 µC → 1.2 / 0.45 ms = 2.667 mA
    assert sp.amplitude == pytest.approx(1.2 / 0.45)
    assert found[0].reason == "charge_density"
    assert within_charge(sp, dev)


def test_slew_limits_amplitude_up_and_down_per_period():
    prev = Setpoint(amplitude=0.0, frequency_hz=83.0, pulse_width_us=1000.0)
    sp, found = apply_slew(
        Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), prev, SIM, T
    )
    assert sp.amplitude == pytest.approx(20.0)
    assert found[0].reason == "ramp_up"
    sp, found = apply_slew(
        Setpoint(amplitude=0.0, frequency_hz=83.0, pulse_width_us=1000.0),
        Setpoint(amplitude=150.0, frequency_hz=83.0, pulse_width_us=1000.0),
        SIM,
        T,
    )
    assert sp.amplitude == pytest.approx(50.0)
    assert found[0].reason == "ramp_down"


def test_paper_step_of_100_mv_is_reached_within_0_2_s():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    t = 2.0  # after soft start
    amps = []
    for k in range(20):
        amps.append(
            gov.command(
                Setpoint(amplitude=100.0, frequency_hz=1000 / 12, pulse_width_us=1000.0), t + k * T
            ).setpoint.amplitude
        )
    first_full = next(i for i, a in enumerate(amps) if a == pytest.approx(100.0))
    assert (first_full + 1) * T <= 0.2


def test_frequency_and_width_step_only_while_stimulating():
    prev_on = Setpoint(amplitude=100.0, frequency_hz=80.0, pulse_width_us=500.0)
    sp, found = apply_slew(
        Setpoint(amplitude=100.0, frequency_hz=180.0, pulse_width_us=100.0), prev_on, SIM, T
    )
    assert sp.frequency_hz == 130.0
    assert sp.pulse_width_us == 250.0
    assert {f.reason for f in found} == {"frequency_step", "pulse_width_step"}
    prev_off = replace(prev_on, amplitude=0.0)
    sp, found = apply_slew(
        Setpoint(amplitude=20.0, frequency_hz=180.0, pulse_width_us=100.0), prev_off, SIM, T
    )
    assert (sp.frequency_hz, sp.pulse_width_us) == (180.0, 100.0)
    assert not found


def test_slew_never_crosses_charge_mid_ramp():
    env = replace(
        SIM, charge_per_phase_max=100.0, pulse_width_step_us=1000.0, amplitude_down_per_s=100.0
    )
    prev = Setpoint(amplitude=180.0, frequency_hz=83.0, pulse_width_us=500.0)  # 90 mV·ms
    target = Setpoint(
        amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0
    )  # 100 mV·ms; ramping down slowly while widening would cross
    sp, found = apply_slew(target, prev, env, T)
    assert within_charge(sp, env)
    assert sp.pulse_width_us == 500.0
    assert "ramp_intermediate" in {f.reason for f in found}


def test_soft_start_ceiling_grows_linearly():
    assert soft_start_ceiling(0.0, DEV) == 0.0
    assert soft_start_ceiling(1.0, DEV) == pytest.approx(1.75)
    assert soft_start_ceiling(2.5, DEV) == 3.5
    sp, found = apply_soft_start(
        Setpoint(amplitude=3.0, frequency_hz=130.0, pulse_width_us=90.0), 1.0, DEV
    )
    assert sp.amplitude == pytest.approx(1.75)
    assert found[0].reason == "soft_start"


def test_lease_expires_after_its_duration():
    lease = Lease.for_envelope(SIM, T)
    assert lease.lease_s == pytest.approx(0.05)
    assert not lease.expired(1.0)
    lease.renew(1.0)
    assert not lease.expired(1.05)
    assert lease.expired(1.0501)


def test_action_check_rejects_nan_shape_and_huge_and_clamps_mild():
    amap = ActionMap(
        ("amplitude",), (0.0,), (200.0,), {"frequency_hz": 83.0, "pulse_width_us": 1000.0}
    )
    assert check_action([0.5], amap) == ([0.5], [])
    action, found = check_action([1.5], amap)
    assert action == [1.0]
    assert found[0].reason == "action_out_of_range"
    for bad in ([np.nan], [np.inf], [2.5], [0.1, 0.2], [[0.1]], "abc", None):
        action, found = check_action(bad, amap)
        assert action is None, bad
        assert found[0].reason == "invalid_action", bad
    assert amap.to_setpoint([-1.0]).amplitude == 0.0
    assert amap.to_setpoint([0.0]).amplitude == 100.0


def test_action_map_inverts_its_setpoints_and_names_out_of_range_values():
    amap = ActionMap(("amplitude", "frequency_hz"), (10.0, 5.0), (200.0, 180.0),
                     {"pulse_width_us": 500.0})  # fmt: skip
    for action in ([-1.0, 1.0], [0.25, -0.5]):
        assert amap.to_action(amap.to_setpoint(action)) == pytest.approx(action)
    with pytest.raises(ConfigError, match=r"amplitude in \[10.0, 200.0\], actual 250.0"):
        amap.to_action(Setpoint(amplitude=250.0, frequency_hz=100.0, pulse_width_us=500.0))


def test_action_map_validates_itself():
    with pytest.raises(ConfigError, match="fixed values"):
        ActionMap(("amplitude",), (0.0,), (1.0,))
    with pytest.raises(ConfigError, match="action names"):
        ActionMap(("volume",), (0.0,), (1.0,), {"frequency_hz": 1.0, "pulse_width_us": 1.0})


def test_observation_check_and_streak():
    assert check_observation({"a": 1.0}, ("a",)) == []
    found = check_observation({"a": math.nan}, ("a", "b"))
    assert [f.reason for f in found] == ["observation_missing", "invalid_observation"]
    # A NaN in a field the policy does not read still means the source is broken.
    assert [f.reason for f in check_observation({"a": 1.0, "z": math.inf}, ("a",))] == [
        "invalid_observation"
    ]
    streak = Streak(3)
    assert not streak.bad()
    assert not streak.bad()
    streak.good()
    assert not streak.bad()
    assert not streak.bad()
    assert streak.bad()


# --------------------------------------------------------------------------- governor


def test_governor_needs_arm_and_logs_every_clamp_with_a_reason():
    gov = SafetyGovernor(SIM, T)
    with pytest.raises(SafetyFaultError, match="arm"):
        gov.command(Setpoint(amplitude=10.0, frequency_hz=83.0, pulse_width_us=1000.0), 0.0)
    gov.arm(0.0)
    assert gov.idle(0.0).setpoint.amplitude == 0.0  # the loop's first tick: output off
    with structlog.testing.capture_logs() as logs:
        d = gov.command(Setpoint(amplitude=300.0, frequency_hz=83.0, pulse_width_us=1000.0), T)
    assert d.setpoint.amplitude == pytest.approx(20.0)
    events = [(e["event"], e["reason"]) for e in logs if e["event"].startswith("envelope_")]
    assert ("envelope_clamp", "amplitude_above_max") in events
    assert ("envelope_clamp", "ramp_up") in events
    assert gov.counts["amplitude_above_max"] == 1


def test_three_nan_actions_in_a_row_latch_a_safe_stop():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    for k in range(10):
        gov.command(
            Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), 1.0 + k * T
        )
    held = gov.command(Setpoint(amplitude=math.nan, frequency_hz=83.0, pulse_width_us=1000.0), 1.2)
    assert held.held
    assert held.setpoint.amplitude == pytest.approx(100.0)
    gov.command(Setpoint(amplitude=math.inf, frequency_hz=83.0, pulse_width_us=1000.0), 1.22)
    with structlog.testing.capture_logs() as logs:
        d = gov.command(
            Setpoint(amplitude=math.nan, frequency_hz=83.0, pulse_width_us=1000.0), 1.24
        )
    assert d.fault == "invalid_streak"
    assert d.setpoint.amplitude == 0.0
    assert any(e["event"] == "envelope_fault" for e in logs)
    assert gov.latched == "invalid_streak"
    assert (
        gov.command(
            Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), 1.36
        ).setpoint.amplitude
        == 0.0
    )
    with pytest.raises(SafetyFaultError, match="latched"):
        gov.arm(2.0)


def test_a_valid_request_resets_the_streak():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    for k in range(6):
        bad = k % 2 == 0
        d = gov.command(
            Setpoint(amplitude=math.nan if bad else 10.0, frequency_hz=83.0, pulse_width_us=1000.0),
            1.0 + k * T,
        )
        assert d.fault is None


def test_lease_expiry_restarts_from_zero_with_soft_start():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    for k in range(30):
        d = gov.command(
            Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), 1.0 + k * T
        )
    assert d.setpoint.amplitude == pytest.approx(100.0)
    d = gov.command(
        Setpoint(amplitude=100.0, frequency_hz=83.0, pulse_width_us=1000.0), 5.0
    )  # 3.4 s gap ≫ 50 ms lease
    assert "lease_expired" in {f.reason for f in d.findings}
    assert d.setpoint.amplitude == 0.0  # soft start begins again at 5.0 s


def test_hold_resends_the_last_setpoint():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    for k in range(15):
        gov.command(Setpoint(amplitude=60.0, frequency_hz=83.0, pulse_width_us=1000.0), 1.0 + k * T)
    d = gov.hold(1.3, "late_observation", "late")
    assert "lease_expired" not in {f.reason for f in d.findings}
    assert d.held
    assert d.setpoint.amplitude == pytest.approx(60.0)
    assert gov.counts["late_observation"] == 1


def test_wrong_request_type_is_invalid():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    d = gov.command({"amplitude": 3}, 0.02)
    assert d.held
    assert d.findings[0].reason == "invalid_action"


@pytest.mark.parametrize("env", [SIM, DEV], ids=["simulator", "device"])
def test_envelope_written_as_toml_reads_back_identical(env, tmp_path):
    path = tmp_path / "env.toml"
    path.write_text(env.to_toml())
    again = load_envelope(path)
    assert again == env
    assert again.sha256() == env.sha256()


def test_huge_integer_amplitude_is_a_reject_with_a_reason_not_an_overflow():
    gov = SafetyGovernor(SIM, T)
    gov.arm(0.0)
    gov.idle(0.0)
    with structlog.testing.capture_logs() as logs:
        d = gov.command(Setpoint(amplitude=10**400, frequency_hz=83.0, pulse_width_us=1000.0), T)  # type: ignore[arg-type]
    assert d.held
    assert d.setpoint.amplitude == 0.0
    assert [f.reason for f in d.findings] == ["non_finite_request"]
    assert "too large for a float" in d.findings[0].detail
    assert any(e["event"] == "envelope_reject" for e in logs)


def test_huge_integer_in_an_envelope_file_is_a_config_error(tmp_path):
    text = SIM.to_toml().replace("amplitude_max = 200.0", "amplitude_max = " + "1" + "0" * 400)
    path = tmp_path / "huge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"limits.amplitude_max, actual an integer of \d+ bits"):
        load_envelope(path)


def test_off_request_stays_off_whatever_the_minimum():
    env = validate(replace(SIM, amplitude_min=20.0))
    gov = SafetyGovernor(env, T)
    gov.arm(0.0)
    gov.idle(0.0)
    for k in range(1, 50):
        d = gov.command(Setpoint(amplitude=0.0, frequency_hz=83.0, pulse_width_us=1000.0), k * T)
        assert d.setpoint.amplitude == 0.0
    below = gov.command(Setpoint(amplitude=-3.0, frequency_hz=83.0, pulse_width_us=1000.0), 50 * T)
    assert below.setpoint.amplitude == 0.0
    assert [f.reason for f in below.findings] == ["amplitude_below_zero"]
    low = gov.command(Setpoint(amplitude=5.0, frequency_hz=83.0, pulse_width_us=1000.0), 51 * T)
    assert "amplitude_below_min" in {f.reason for f in low.findings}
