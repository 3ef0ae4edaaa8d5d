"""Evaluation: desynchronisation metrics, the three methods, eval.json and figures, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.envs import SimConfig
from controller.eval_cli import main as eval_main
from controller.train_cli import main as train_main
from controller.training.evaluate import (
    FTSTS_SETPOINT,
    LATCHED_SLOW_SETPOINT_MA,
    run_one,
    running_mean,
    summarise,
    time_to_desync,
)

SMALL = {"n_scale": 0.05, "semantics": "paper"}


def test_running_mean_ignores_nan_and_trails() -> None:
    t = np.arange(0.0, 10.0)
    r = np.array([1, 1, np.nan, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    ends, mean = running_mean(t, r, 2.0, 1.0)
    np.testing.assert_allclose(ends, np.arange(2.0, 11.0))
    np.testing.assert_allclose(mean, [1, 1, 1, 0.5, 0, 0, 0, 0, 0])


def test_time_to_desync_is_the_last_crossing_that_holds() -> None:
    t = np.arange(0.0, 10_000.0, 500.0)
    m = np.full(t.size, 0.7)
    m[6:9] = 0.1  # dips below at 3 s but comes back
    m[12:] = 0.05  # for good from 6 s
    assert time_to_desync(t, m, onset_ms=2000.0) == pytest.approx(4.0)
    m[-1] = 0.3
    assert time_to_desync(t, m, onset_ms=2000.0) is None
    m[:] = 0.1
    assert time_to_desync(t, m, onset_ms=2000.0) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaltrain") / "run"
    args = ["--n-scale", "0.05", "--control-period-ms", "100", "--onset-ms", "400",
            "--controlled-s", "1.0", "--tail-s", "0.5", "--n-envs", "1", "--vec", "dummy",
            "--n-steps", "100", "--batch-size", "50", "--total-timesteps", "200",
            "--out", str(out)]  # fmt: skip
    assert train_main(args) == 0
    return out / "bundle"


def config() -> SimConfig:
    return SimConfig(control_period_ms=100.0, onset_ms=400.0, controlled_s=1.0, tail_s=0.5)


def test_baselines_deliver_what_they_should(bundle: Path) -> None:
    off = run_one("off", 2**31, config(), SMALL, None)
    assert off.charge == 0.0
    assert np.all(off.amplitude_mv == 0.0)
    ftsts = run_one("ftsts", 2**31, config(), SMALL, None)
    # 100 mV x 1 ms x 2 phases every 12 ms, ramped 0 -> 100 mV over 0.1 s by the envelope.
    full = FTSTS_SETPOINT.amplitude * 2.0 * 1.0 * (1000.0 / 12.0)
    assert 0.85 * full <= ftsts.charge <= full
    assert ftsts.amplitude_mv.max() == pytest.approx(100.0)
    longer = SimConfig(control_period_ms=100.0, onset_ms=500.0, controlled_s=3.0, tail_s=0.5)
    latched = run_one("latched", 2**31, longer, SMALL, None)
    # 110 mV x 0.5 ms x 2 phases, the rate slewing 5 -> 180 Hz by 50 Hz per 500 ms period (never
    # latches here: the weight stays above 90 mV)
    assert latched.amplitude_mv.max() == pytest.approx(110.0)
    assert np.nanmax(latched.frequency_hz) == pytest.approx(180.0)
    assert latched.t_window_s[1] - latched.t_window_s[0] == pytest.approx(0.5)
    assert 0.5 * 110.0 * 180.0 <= latched.charge <= 3.0 * 110.0 * 180.0
    policy = run_one("policy", 2**31, config(), SMALL, str(bundle))
    assert policy.charge > 0.0
    for rec in (off, ftsts, latched, policy):
        assert 0.0 <= rec.r_tail <= 1.0
        assert rec.t_window_s[-1] == pytest.approx(1.9 if rec is not latched else 4.0)
    summary = summarise([off, ftsts, latched, policy])
    assert summary["policy_vs_ftsts"]["charge_fraction_mean"] == pytest.approx(
        policy.charge / ftsts.charge
    )
    assert summary["latched_vs_ftsts"]["charge_fraction_mean"] == pytest.approx(
        latched.charge / ftsts.charge
    )


def test_latched_slow_is_delivered_as_the_emulated_device_delivers_it() -> None:
    longer = SimConfig(control_period_ms=100.0, onset_ms=500.0, controlled_s=2.0, tail_s=0.5)
    rec = run_one("latched-slow", 2**31, longer, SMALL, None)
    gain_mv_per_ma = 40.0  # the emulator's tissue map (drivers.tissue.TissueTransfer)
    amp_ma = rec.amplitude_mv / gain_mv_per_ma
    # device units through the emulator envelope, at 100 ms periods whatever the caller's
    assert rec.t_window_s[1] - rec.t_window_s[0] == pytest.approx(0.1)
    assert amp_ma.max() == pytest.approx(LATCHED_SLOW_SETPOINT_MA.amplitude)
    # the device's amplitude ramp: at most 2 mA/s, 0.2 mA per 100 ms period
    assert np.diff(amp_ma).max() <= 0.2 + 1e-9
    on = amp_ma > 0
    assert np.nanmax(rec.frequency_hz[on]) == pytest.approx(LATCHED_SLOW_SETPOINT_MA.frequency_hz)
    assert rec.stim_off_s is None  # its latch, 75 mV, is far below this network's weight
    # a latch at 0 mV never trips: a constant train to the end of the controlled period
    constant = run_one("latched-slow", 2**31, longer, SMALL, None,
                       train=(LATCHED_SLOW_SETPOINT_MA, 0.0))  # fmt: skip
    assert constant.stim_off_s is None
    assert constant.charge == pytest.approx(rec.charge)
    # a latch above every weight trips at the first period: nothing is delivered
    high = (LATCHED_SLOW_SETPOINT_MA, 1000.0)
    stopped = run_one("latched-slow", 2**31, longer, SMALL, None, train=high)
    assert stopped.charge == 0.0
    assert stopped.stim_off_s == pytest.approx(0.5)
    with pytest.raises(ValueError, match="scripted method"):
        run_one("off", 2**31, longer, SMALL, None, train=high)
    for bad in (float("nan"), -1.0):  # a NaN latch would silently never trip
        with pytest.raises(ValueError, match="latch mV >= 0"):
            run_one("latched-slow", 2**31, longer, SMALL, None,
                    train=(LATCHED_SLOW_SETPOINT_MA, bad))  # fmt: skip


def test_eval_cli_writes_eval_json_and_figures(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code = eval_main(["--policy", str(bundle), "--seeds", "2", "--out", str(out),
                      "--n-scale", "0.05", "--tail-s", "0.5", "--workers", "1",
                      "--methods", "policy,ftsts,latched,off"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["methods"]) == {"policy", "ftsts", "latched", "off"}
    for rows in result["methods"].values():
        assert [row["seed"] for row in rows] == [2**31, 2**31 + 1]
        for row in rows:
            assert {"r_tail", "charge", "time_to_desync_s"} <= set(row)
    assert result["episode"]["tail_s"] == 0.5
    for name in ("synchrony", "weight", "rasters", "policy_settings", "summary",
                 "training_curves"):  # fmt: skip
        assert (out / f"{name}.png").stat().st_size > 1000


def test_policy_inference_does_not_import_torch(bundle: Path) -> None:
    code = (
        "import sys\n"
        "from controller.envs import SimConfig\n"
        "from controller.training.evaluate import run_one\n"
        "cfg = SimConfig(100.0, 400.0, 1.0, 0.5)\n"
        f"run_one('policy', 1, cfg, {{'n_scale': 0.05}}, {str(bundle)!r})\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "False"
