"""The environment step's cheaper paths give what the general ones gave (bench_env_speed.py)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict

import numpy as np
import pytest
import structlog
from structlog.testing import capture_logs

from controller.envelope.governor import SafetyGovernor
from controller.envs import SimConfig
from controller.envs.dbs import DBSEnv
from controller.envs.models import LocalNetworkModel
from controller.envs.reward import RewardTerms
from controller.envs.spaces import FEATURES, scale_observation
from core.errors import SafetyFaultError
from core.logs import configure_logging, enabled_for
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from simulator.network import Network
from simulator.stimulus import stimulus_for

T = 0.02


@pytest.fixture(autouse=True)
def _defaults():
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _ramp(gov: SafetyGovernor) -> list[dict]:
    target = Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)
    with capture_logs() as logs:
        gov.arm(0.0)
        gov.idle(0.0)
        for k in range(1, 15):
            gov.command(target, k * T)
        gov.flush_log()
    return [e for e in logs if e.get("reason") == "ramp_up"]


def test_enabled_for_follows_the_configured_level() -> None:
    assert enabled_for(logging.DEBUG)  # structlog's default logs everything
    configure_logging("console", "info")
    assert not enabled_for(logging.DEBUG)
    assert enabled_for(logging.INFO)
    configure_logging("console", "warning")
    assert not enabled_for(logging.INFO)
    assert enabled_for(logging.ERROR)


@pytest.mark.parametrize(
    ("level", "events"),
    [
        ("debug", ["envelope_clamp"] * 4 + ["envelope_clamp_end"]),
        ("info", ["envelope_clamp", "envelope_clamp_end"]),
        ("warning", []),
    ],
)
def test_folded_clamp_lines_at_each_level(level: str, events: list[str]) -> None:
    configure_logging("console", level)
    gov = SafetyGovernor(load_envelope("simulator"), T)
    ramp = _ramp(gov)
    assert [e["event"] for e in ramp] == events
    assert gov.counts["ramp_up"] == 4  # counted whatever is logged
    if level != "warning":
        assert ramp[0]["applied"] == 20.0
        assert ramp[-1]["last_applied"] == 80.0


def _scale_reference(fields: dict[str, float]) -> np.ndarray:
    """The element-wise scaling the list-based one replaced."""
    out = np.empty(len(FEATURES), dtype=np.float32)
    for i, feat in enumerate(FEATURES):
        scaled = (float(fields[feat.field]) - feat.low) / (feat.high - feat.low)
        out[i] = min(1.0, max(0.0, scaled))
    return out


def test_scale_observation_is_the_element_wise_scaling_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        fields = {f.field: float(rng.uniform(f.low - 20.0, f.high + 20.0)) for f in FEATURES}
        got = scale_observation(fields)
        assert got.dtype == np.float32
        assert got.shape == (len(FEATURES),)
        assert got.tobytes() == _scale_reference(fields).tobytes()
    bad = {f.field: 0.5 for f in FEATURES} | {"weight_mv": math.nan}
    with pytest.raises(SafetyFaultError, match="finite weight_mv"):
        scale_observation(bad)


def test_reward_terms_dict_is_the_dataclass_with_its_total() -> None:
    terms = RewardTerms(charge=-0.1, tail=-0.3, sync=-0.02, shaping=0.125)
    assert terms.as_dict() == {**asdict(terms), "total": terms.total}


def test_environment_observations_are_the_networks_on_the_same_stimuli() -> None:
    """The route around the kernel adds no simulation: a bare network replays the episode."""
    config = SimConfig(control_period_ms=20.0, onset_ms=20.0, controlled_s=0.2, tail_s=0.1)
    env = DBSEnv(config, LocalNetworkModel, {"n_scale": 0.05})
    try:
        obs, info = env.reset(seed=5)
        net = Network(LocalNetworkModel(n_scale=0.05).config)
        net.reset(seed=5)
        first = net.advance(None, 20.0).observation()
        # the environment's fields: the backend's, and the controller's own dose account
        assert {k: info["fields"][k] for k in first} == first
        assert obs.tobytes() == scale_observation(first).tobytes()
        rng = np.random.default_rng(0)
        for _ in range(6):
            obs, reward, *_, info = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
            sp = info["setpoint"]
            stim = stimulus_for(amplitude_mv=sp["amplitude"], frequency_hz=sp["frequency_hz"],
                                pulse_width_us=sp["pulse_width_us"])  # fmt: skip
            fields = net.advance(stim, 20.0).observation()
            assert {k: info["fields"][k] for k in fields} == fields
            assert obs.tobytes() == scale_observation(fields).tobytes()
            assert reward == info["reward_terms"]["total"]
    finally:
        env.close()
