"""Training for a device: measurable observations, device units through the emulator's tissue.

A policy meant for a stimulator observes only what an implant senses (the LFP features) and
is trained against the envelope it will meet on the device (mA), through
:class:`drivers.tissue_backend.TissueBackend`, the emulator's stimulus path in lockstep.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.envs import DBSEnv, SimConfig
from controller.envs.models import LocalNetworkModel
from controller.envs.spaces import observation_set
from controller.eval_cli import main as eval_main
from controller.policies.bundle import load_bundle
from controller.policies.factory import build_policy
from controller.train_cli import main as train_main
from core.errors import ConfigError, NeuroLoopError
from drivers.bridge import device_envelope
from drivers.tissue import TissueTransfer
from drivers.tissue_backend import TissueBackend
from protocol.envelope.config import load_envelope
from protocol.envelope.wire import envelope_to_wire
from protocol.inprocess import InProcessClient
from simulator.config import NetworkConfig
from simulator.network import Network

SMALL = {"n_scale": 0.05, "device_units": True}  # 80 E / 20 I, mA in


def small_config(**changes: object) -> SimConfig:
    base = {
        "control_period_ms": 100.0, "onset_ms": 200.0, "controlled_s": 0.4, "tail_s": 0.2,
        "envelope": "emulator", "observations": "measurable",
    }  # fmt: skip
    base.update(changes)
    return SimConfig(**base)  # type: ignore[arg-type]


def test_measurable_set_is_measurable_and_the_oracle_set_is_not() -> None:
    from protocol.observables import is_measurable  # the one definition (docs/protocol.md)

    for domain in ("model", "physical"):
        assert all(is_measurable(f.field) for f in observation_set("measurable", domain))
    assert not any(is_measurable(f.field) for f in observation_set("oracle"))
    with pytest.raises(ConfigError, match="Expected an observation set in"):
        observation_set("weights")
    with pytest.raises(ConfigError, match="Expected observations 'oracle' or 'measurable'"):
        SimConfig(observations="everything")


def test_emulator_envelope_fits_the_device_and_allows_a_desynchronising_pulse() -> None:
    env = load_envelope("emulator")
    assert env.domain == "physical"
    dev = device_envelope(env, 100.0)  # representable in the device's integer units
    assert (dev.pw_max_us, dev.amp_max_ua, dev.q_max_nc) == (450, 4000, 1800)
    # 2.75 mA × 450 µs through the tissue map: 110 mV × 0.45 ms per phase, the latched
    # train's charge per phase (docs/rl.md); the clinical envelope stops at 16.8 mV·ms.
    assert env.charge_per_phase_max >= 2.75 * 450 / 1000


def test_tissue_backend_maps_a_setting_as_the_emulator_does() -> None:
    """Same network, same seed: a step in mA equals the emulator tissue's model stimulus."""
    cfg = NetworkConfig().scaled(0.05)
    client = InProcessClient(TissueBackend(network_config=cfg))
    caps = client.hello().capabilities
    assert [p.name for p in caps.stim_params] == ["amplitude_ma", "frequency_hz", "pulse_width_us"]
    assert "polarity" not in caps.config_options
    env = load_envelope("emulator")
    client.configure(envelope_to_wire(env, caps), control_period_ms=100.0, options={"seed": 3})
    client.reset()
    client.step(None, 1400.0)  # off long enough for the ramp and soft start to allow 2.75 mA
    stim = {"amplitude_ma": 2.7504, "frequency_hz": 180.04, "pulse_width_us": 449.6}
    got = client.step(stim, 100.0)
    net = Network(cfg)
    net.reset(seed=3)
    net.advance(None, 1400.0)
    want = net.advance(TissueTransfer().stimulus(amp_ua=2750, pw_us=450, freq_dhz=1800), 100.0)
    assert got.fields == pytest.approx(want.observation(), nan_ok=True)
    assert got.fields["charge_mv_ms"] == want.charge_mv_ms > 0.0


def test_tissue_backend_refuses_a_polarity_option() -> None:
    client = InProcessClient(TissueBackend(network_config=NetworkConfig().scaled(0.05)))
    caps = client.hello().capabilities
    with pytest.raises(NeuroLoopError, match="polarity"):
        client.configure(
            envelope_to_wire(load_envelope("emulator"), caps),
            control_period_ms=100.0,
            options={"polarity": "sync"},
        )


def test_measurable_env_observes_lfp_features_in_device_units() -> None:
    env = DBSEnv(small_config(), LocalNetworkModel, SMALL)
    try:
        features = observation_set("measurable", "physical")
        assert [f.field for f in features][-1] == "dose_uc"
        assert env.observation_space.shape == (len(features),)
        assert env.action_map.low == (0.0, 60.0, 60.0)
        assert env.action_map.high == (4.0, 185.0, 450.0)
        obs, info = env.reset(seed=5)
        assert obs.shape == (5,)
        assert obs[-1] == 0.0  # nothing delivered in the lead-in
        assert np.all((obs >= 0.0) & (obs <= 1.0))
        total = 0.0
        done = False
        while not done:
            obs, _, done, _, info = env.step(np.array([0.4, 1.0, 1.0], dtype=np.float32))
            total += info["charge_mv_ms"]
            assert info["fields"]["dose_uc"] >= 0.0
            assert info["setpoint"]["pulse_width_us"] <= 450.0
        assert info["total_charge_mv_ms"] == pytest.approx(total)
        # the dose in µC: what 2 phases × amplitude × width × rate delivered, > 0
        assert info["fields"]["dose_uc"] > 0.0
        assert total > 0.0
    finally:
        env.close()


def test_wrong_domain_envelope_for_the_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="envelope"):
        DBSEnv(small_config(envelope="simulator"), LocalNetworkModel, SMALL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PPO run for the emulator envelope on measurable observations (its bundle dir)."""
    out = tmp_path_factory.mktemp("measurable") / "run"
    code = train_main([
        "--out", str(out), "--n-scale", "0.05", "--control-period-ms", "100",
        "--onset-ms", "200", "--controlled-s", "0.4", "--tail-s", "0.2",
        "--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8", "--n-envs", "1",
        "--envelope", "emulator", "--observations", "measurable",
        "--init-setpoint", "2.75,180,450", "--log-level", "warning",
    ])  # fmt: skip
    assert code == 0
    return out / "bundle"


def test_training_exports_a_measurable_bundle_in_device_units(trained: Path) -> None:
    bundle = load_bundle(trained)
    assert bundle.observation_fields == tuple(
        f.field for f in observation_set("measurable", "physical")
    )
    meta = json.loads((trained / "bundle.json").read_text("utf-8"))
    units = [f["unit"] for f in meta["action"]["fields"]]
    assert units == ["mA", "Hz", "us"]
    assert meta["training"]["observations"] == "measurable"
    env = load_envelope("emulator")
    policy = build_policy(str(trained), env)
    fields = {f.field: 0.5 for f in observation_set("measurable", "physical")}
    action = policy.act(fields, 10_000.0)
    assert policy.action_map is not None
    sp = policy.action_map.to_setpoint(np.clip(np.asarray(action), -1.0, 1.0))
    assert 0.0 <= sp.amplitude <= 4.0
    assert 60.0 <= sp.pulse_width_us <= 450.0


def test_eval_runs_a_device_unit_bundle_next_to_model_unit_baselines(
    trained: Path, tmp_path: Path
) -> None:
    """The policy in mA through the tissue map, FTSTS in mV, one network: charges compare."""
    out = tmp_path / "eval"
    code = eval_main([
        "--policy", str(trained), "--seeds", "1", "--n-scale", "0.05", "--tail-s", "0.2",
        "--methods", "policy,ftsts,off", "--workers", "1", "--out", str(out),
        "--log-level", "warning",
    ])  # fmt: skip
    assert code == 0
    result = json.loads((out / "eval.json").read_text("utf-8"))
    summary = result["summary"]
    assert summary["policy"]["charge_mean"] > 0.0
    assert summary["off"]["charge_mean"] == 0.0
    assert "50%" in summary["policy_vs_ftsts"]["target"]


def test_the_environment_notes_its_reward_reads_the_truth_at_debug_only() -> None:
    """The reward reads the weight by design: no warning per episode, a debug line."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        env = DBSEnv(small_config(), LocalNetworkModel, SMALL)
        env.close()
    found = [e for e in logs if e["event"] == "policy_uses_unobservable"]
    assert [e["log_level"] for e in found] == ["debug"]
    assert "weight_mv" in found[0]["fields"]
