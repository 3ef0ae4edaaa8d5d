"""The clinical baselines in ``neuroloop-eval``: same network as the other methods, the table."""

from __future__ import annotations

import numpy as np

from controller.envs.config import SimConfig
from controller.envs.ftsts import FTSTSEnv
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
