"""Each reward component, alone and as the environment computes it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.envs import FTSTSEnv, RewardConfig, SimConfig
from controller.envs import reward as rw
from controller.envs.dbs import tail_synchrony
from core.errors import ConfigError, SafetyFaultError

SMALL = {"n_scale": 0.05}


def test_ftsts_charge_rate_is_the_papers_train() -> None:
    # 2 phases x 100 mV x 1 ms per pulse, one pulse every 12 ms.
    assert pytest.approx(200.0 / 0.012) == rw.FTSTS_CHARGE_RATE_MV_MS_PER_S


def test_charge_cost_is_one_weight_for_ftsts_over_the_whole_period() -> None:
    cfg = RewardConfig(charge_weight=1.5)
    whole = rw.FTSTS_CHARGE_RATE_MV_MS_PER_S * 20.0
    assert rw.charge_cost(whole, 20.0, cfg) == pytest.approx(-1.5)
    assert rw.charge_cost(0.0, 20.0, cfg) == 0.0
    assert rw.charge_cost(whole / 4, 20.0, cfg) == pytest.approx(-0.375)
    with pytest.raises(ConfigError, match="charge_mv_ms >= 0"):
        rw.charge_cost(-1.0, 20.0, cfg)
    with pytest.raises(ConfigError, match="finite charge"):
        rw.charge_cost(math.nan, 20.0, cfg)


def test_tail_penalty_is_linear_in_tail_synchrony() -> None:
    cfg = RewardConfig(tail_weight=10.0)
    assert rw.tail_penalty(0.0, cfg) == 0.0
    assert rw.tail_penalty(0.73, cfg) == pytest.approx(-7.3)
    for bad in (-0.1, 1.1, math.nan):
        with pytest.raises(ConfigError, match=r"r_tail in \[0, 1\]"):
            rw.tail_penalty(bad, cfg)


def test_sync_cost_sums_to_the_mean_window_synchrony() -> None:
    cfg = RewardConfig(sync_weight=2.0)
    r = np.random.default_rng(0).uniform(0, 1, 200)
    total = sum(rw.sync_cost(x, 0.1, 20.0, cfg) for x in r)
    assert total == pytest.approx(-2.0 * r.mean())
    assert rw.sync_cost(0.9, 0.1, 20.0, RewardConfig()) == 0.0  # off by default


def test_potential_is_flat_below_the_floor_and_linear_above() -> None:
    cfg = RewardConfig(shaping_weight=3.0, weight_floor_mv=75.0)
    assert rw.potential(290.0, cfg) == pytest.approx(-3.0)
    assert rw.potential(75.0, cfg) == 0.0
    assert rw.potential(20.0, cfg) == 0.0
    assert rw.potential(182.5, cfg) == pytest.approx(-1.5)


@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_shaping_telescopes_to_minus_initial_potential(gamma: float) -> None:
    """Sum_t gamma^t F_t = -Phi(s_0) for any weight path: the optimum cannot change."""
    cfg = RewardConfig(shaping_weight=3.0, gamma=gamma)
    w = np.concatenate([[270.0], np.random.default_rng(1).uniform(10.0, 290.0, 50)])
    total = 0.0
    for t in range(len(w) - 1):
        total += gamma**t * rw.shaping(w[t], w[t + 1], t == len(w) - 2, cfg)
    assert total == pytest.approx(-rw.potential(w[0], cfg))


def test_shaping_pays_for_a_weight_drop_and_charges_a_rise() -> None:
    cfg = RewardConfig(shaping_weight=3.0, gamma=1.0)
    assert rw.shaping(200.0, 190.0, False, cfg) > 0.0
    assert rw.shaping(190.0, 200.0, False, cfg) < 0.0
    assert rw.shaping(60.0, 50.0, False, cfg) == 0.0


def test_reward_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="charge_weight >= 0"):
        RewardConfig(charge_weight=-1.0)
    with pytest.raises(ConfigError, match=r"gamma in \(0, 1\]"):
        RewardConfig(gamma=0.0)
    with pytest.raises(ConfigError, match="weight_floor_mv"):
        RewardConfig(weight_floor_mv=300.0)


def test_environment_reward_is_the_sum_of_its_terms() -> None:
    rcfg = RewardConfig(charge_weight=2.0, tail_weight=5.0, sync_weight=1.0, shaping_weight=3.0)
    cfg = SimConfig(control_period_ms=100.0, onset_ms=200.0, controlled_s=0.3, tail_s=0.4,
                    reward=rcfg)  # fmt: skip
    env = FTSTSEnv(cfg, model_params=SMALL)
    try:
        _, info = env.reset(seed=8)
        weight = info["weight_mv"]
        charge = 0.0
        term = False
        while not term:
            _, r, term, _, info = env.step(np.array([0.5, 0.0, 1.0], dtype=np.float32))
            terms = info["reward_terms"]
            assert float(r) == pytest.approx(terms["total"])
            assert terms["charge"] == pytest.approx(
                -2.0 * info["charge_mv_ms"] / (rw.FTSTS_CHARGE_RATE_MV_MS_PER_S * 0.3)
            )
            assert terms["sync"] == pytest.approx(-info["synchrony"] * 0.1 / 0.3)
            assert terms["shaping"] == pytest.approx(
                rw.shaping(weight, info["weight_mv"], term, rcfg)
            )
            weight = info["weight_mv"]
            charge += info["charge_mv_ms"]
            assert info["charge_mv_ms"] > 0.0
        assert terms["tail"] == pytest.approx(-5.0 * info["r_tail"])
        assert info["total_charge_mv_ms"] == pytest.approx(charge)
    finally:
        env.close()


def test_tail_synchrony_of_synchronous_and_asynchronous_firing() -> None:
    n_e, period = 50, 25.0
    times = np.arange(0.0, 1000.0, period)
    sync_t = np.repeat(times, n_e)
    sync_n = np.tile(np.arange(n_e), times.size).astype(np.int32)
    assert tail_synchrony(sync_t, sync_n, n_e, 100.0, 900.0) > 0.99
    rng = np.random.default_rng(3)
    offsets = rng.uniform(0, period, n_e)
    async_t = (times[:, None] + offsets[None, :]).ravel()
    assert tail_synchrony(async_t, sync_n, n_e, 100.0, 900.0) < 0.35
    with pytest.raises(SafetyFaultError, match="defined order parameter"):
        tail_synchrony(np.zeros(0), np.zeros(0, dtype=np.int32), n_e, 0.0, 100.0)
