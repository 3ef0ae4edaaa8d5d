"""The clinical baselines in ``neuroloop-eval``: same network as the other methods, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.envs.config import SimConfig
from controller.envs.ftsts import FTSTSEnv
from controller.eval_cli import main as eval_main
from controller.policies.builtin import FTSTS_SETPOINT
from controller.training.evaluate import stepped_lead_in
from protocol.envelope.setpoint import Setpoint

SMALL = {"n_scale": 0.05, "semantics": "paper"}


def _ftsts_from(cfg: SimConfig, onset_ms: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    off = Setpoint(amplitude=0.0, frequency_hz=FTSTS_SETPOINT.frequency_hz,
                   pulse_width_us=FTSTS_SETPOINT.pulse_width_us)  # fmt: skip
    env = FTSTSEnv(cfg, model_params=SMALL)
    try:
        _, info = env.reset(seed=7)
        terminal = False
        while not terminal:
            sp = FTSTS_SETPOINT if info["t_ms"] >= onset_ms - 1e-6 else off
            _, _, terminal, _, info = env.step_setpoint(sp)
        times, neurons = env.trace.spikes()
        return times, neurons, float(info["r_tail"]), float(info["total_charge_mv_ms"])
    finally:
        env.close()


def test_stepped_lead_in_runs_the_same_network() -> None:
    """The baselines' lead-in in 20 ms steps gives the spikes of the one-window lead-in."""
    cfg = SimConfig(20.0, 400.0, 1.0, 0.5, keep_spikes=True)
    stepped = stepped_lead_in(cfg)
    assert stepped.onset_ms == 20.0
    assert stepped.episode_ms == cfg.episode_ms
    a = _ftsts_from(cfg, 400.0)
    b = _ftsts_from(stepped, 400.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert a[3] == b[3] > 0.0


def test_eval_cli_runs_baselines_without_a_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two clinical baselines and FTSTS on a tiny network, no policy bundle: table and JSON."""
    out = tmp_path / "eval"
    code = eval_main(["--seeds", "2", "--out", str(out), "--n-scale", "0.05",
                      "--onset-ms", "1000", "--controlled-s", "2", "--tail-s", "0.5",
                      "--methods", "ftsts,ftsts-sensed,adbs-onoff", "--workers", "1"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("ftsts", "ftsts-sensed", "adbs-onoff", "r_tail ≤ FTSTS"):
        assert name in printed
    result = json.loads((out / "eval.json").read_text())
    assert result["policy"] is None
    assert result["episode"]["onset_s"] == 1.0
    assert set(result["methods"]) == {"ftsts", "ftsts-sensed", "adbs-onoff"}
    for name in ("ftsts-sensed", "adbs-onoff"):
        rows = result["methods"][name]
        assert [row["seed"] for row in rows] == [2**31, 2**31 + 1]
        for row in rows:
            details = row["details"]
            assert details["feature"] == "lfp_band_uv2"
            assert details["reference"] > 0.0
            assert 0.0 <= row["on_fraction"] <= 1.0
            assert row["charge"] > 0.0  # the lead-in is above any threshold: it stimulates
        vs = result["summary"][f"{name}_vs_ftsts"]
        assert vs["seeds"] == 2
        assert vs["charge_fraction_min"] <= vs["charge_fraction_median"]
        assert vs["charge_fraction_median"] <= vs["charge_fraction_max"]
    assert result["methods"]["adbs-onoff"][0]["details"]["threshold"] == pytest.approx(
        0.5 * result["methods"]["adbs-onoff"][0]["details"]["reference"]
    )
    assert (out / "summary.png").stat().st_size > 1000
    assert not (out / "training_curves.png").exists()


def test_eval_cli_refuses_policy_without_bundle_and_unknown_methods(tmp_path: Path) -> None:
    assert eval_main(["--out", str(tmp_path), "--methods", "policy,ftsts"]) == 2
    assert eval_main(["--out", str(tmp_path), "--methods", "adbs-magic"]) == 2


def test_eval_first_seed_moves_the_held_out_networks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    code = eval_main(["--seeds", "2", "--first-seed", "100", "--out", str(out),
                      "--n-scale", "0.05", "--onset-ms", "500", "--controlled-s", "0.5",
                      "--tail-s", "0.5", "--methods", "off", "--workers", "1"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert [row["seed"] for row in result["methods"]["off"]] == [2**31 + 100, 2**31 + 101]
    with pytest.raises(SystemExit):
        eval_main(["--seeds", "2", "--first-seed", "-1", "--out", str(out)])
    assert "Expected --first-seed in [0, 2**31 - seeds], actual -1" in capsys.readouterr().err
