"""Policy bundles: export from SB3, numpy inference matching SB3, checks on load, no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import structlog
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from controller.policies.bundle import FieldSpec, export_sb3, load_bundle
from controller.policies.factory import build_policy
from core.errors import ConfigError
from protocol.envelope.config import load_envelope

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SIM = load_envelope("simulator")
OBS = (
    FieldSpec("synchrony", "1", 0.0, 1.0),
    FieldSpec("weight_mv", "mV", 0.0, 300.0),
    FieldSpec("rate_e_hz", "Hz", 0.0, 500.0),
    FieldSpec("chi", "1", 0.0, 1.0),
)
ACT = (FieldSpec("amplitude", "mV", 0.0, 200.0), FieldSpec("pulse_width_us", "us", 50.0, 1000.0))
FIXED = {"frequency_hz": 1000.0 / 12.0}


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


class TargetEnv(gym.Env):
    """Observation in a Box of 4; reward for an action that tracks a linear map of it."""

    observation_space = gym.spaces.Box(-5.0, 5.0, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._obs = self.np_random.normal(0.0, 1.0, 4).astype(np.float32) * np.float32(3.0) + 1.0
        return self._obs, {}

    def step(self, action):
        target = np.tanh(self._obs[:2] - self._obs[2:])
        reward = -float(np.sum((np.asarray(action) - target) ** 2))
        self._obs = self.np_random.normal(0.0, 1.0, 4).astype(np.float32) * np.float32(3.0) + 1.0
        return self._obs, reward, False, False, {}


def observations(n: int = 64) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.normal(0.0, 3.0, (n, 4)) + 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def ppo_bundle(tmp_path_factory):
    venv = VecNormalize(DummyVecEnv([TargetEnv]), norm_obs=True, norm_reward=True, clip_obs=5.0)
    venv.seed(1)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        seed=1,
        policy_kwargs={"net_arch": [16, 16]},
        device="cpu",
    )
    model.learn(256)
    venv.training = False
    path = export_sb3(
        model,
        venv,
        tmp_path_factory.mktemp("b") / "ppo",
        observation_fields=OBS,
        action_fields=ACT,
        envelope_hash=SIM.sha256(),
        fixed=FIXED,
    )
    return model, venv, path


@pytest.fixture(scope="module")
def sac_bundle(tmp_path_factory):
    env = TargetEnv()
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=100,
        batch_size=32,
        seed=2,
        train_freq=2,
        policy_kwargs={"net_arch": [16, 16]},
        device="cpu",
    )
    model.learn(300)
    path = export_sb3(
        model,
        None,
        tmp_path_factory.mktemp("b") / "sac",
        observation_fields=OBS,
        action_fields=ACT,
        envelope_hash=SIM.sha256(),
        fixed=FIXED,
    )
    return model, path


def test_ppo_bundle_matches_sb3_deterministic_predict(ppo_bundle):
    model, venv, path = ppo_bundle
    bundle = load_bundle(path)
    obs = observations()
    expected, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    got = np.stack([bundle.actor(o.astype(np.float64)) for o in obs])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert bundle.metadata["algorithm"] == "PPO"
    assert bundle.actor.output == "clip"
    assert bundle.actor.normalizer is not None


def test_sac_bundle_matches_sb3_deterministic_predict(sac_bundle):
    model, path = sac_bundle
    bundle = load_bundle(path)
    obs = observations()
    expected, _ = model.predict(obs, deterministic=True)
    got = np.stack([bundle.actor(o.astype(np.float64)) for o in obs])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert bundle.actor.output == "tanh"
    assert bundle.actor.normalizer is None
    assert [layer.activation for layer in bundle.actor.layers] == ["relu", "relu", "identity"]


def test_bundle_maps_actions_to_physical_setpoints(ppo_bundle):
    bundle = load_bundle(ppo_bundle[2])
    sp = bundle.action_map.to_setpoint([-1.0, 1.0])
    assert (sp.amplitude, sp.pulse_width_us, sp.frequency_hz) == (0.0, 1000.0, 1000.0 / 12.0)


def _edit(path: Path, tmp_path: Path, change) -> Path:
    import shutil

    target = tmp_path / "edited"
    shutil.copytree(path, target)
    meta = json.loads((target / "bundle.json").read_text())
    change(meta)
    (target / "bundle.json").write_text(json.dumps(meta))
    return target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("envelope_hash"), "field 'envelope_hash'"),
        (lambda m: m.update(format_version=99), "format_version 1"),
        (lambda m: m.update(envelope_hash="xyz"), "64 lower-case hex"),
        (lambda m: m["observation"]["fields"].pop(), "first layer input size 3"),
        (lambda m: m["action"]["fields"][0].update(name="volume"), "action field names"),
        (lambda m: m["action"].update(output="softmax"), "action.output"),
        (lambda m: m["network"]["layers"][0].update(activation="gelu"), "activation"),
        (lambda m: m["network"]["layers"][0].update(weight="nope"), "array 'nope'"),
        (lambda m: m.update(weights_sha256="0" * 64), "weights.npz with sha256"),
        (lambda m: m["observation"]["normalization"].update(clip_obs="big"), "clip_obs"),
        (lambda m: m["action"]["fields"][0].update(low=5.0, high=1.0), "low < high"),
    ],
)
def test_load_names_the_bad_field(ppo_bundle, tmp_path, change, message):
    bad = _edit(ppo_bundle[2], tmp_path, change)
    with pytest.raises(ConfigError, match=message):
        load_bundle(bad)


def test_load_refuses_non_finite_weights(ppo_bundle, tmp_path):
    import shutil

    target = tmp_path / "nan"
    shutil.copytree(ppo_bundle[2], target)
    with np.load(target / "weights.npz") as npz:
        arrays = dict(npz)
    arrays["layer0.weight"][0, 0] = np.nan
    np.savez(target / "weights.npz", **arrays)
    meta = json.loads((target / "bundle.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256((target / "weights.npz").read_bytes()).hexdigest()
    (target / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=re.escape("finite values in array 'layer0.weight'")):
        load_bundle(target)


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("bundle.json and weights.npz")):
        load_bundle(tmp_path)


def test_factory_refuses_a_bundle_of_another_envelope(ppo_bundle):
    with pytest.raises(ConfigError, match="trained against envelope"):
        build_policy(str(ppo_bundle[2]), load_envelope("device"))


def test_controller_runs_a_bundle_without_importing_torch(ppo_bundle, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        "[controller]\nin_process = true\npace = 'fast'\nduration_s = 0.4\nno_record = true\n"
        "[simulator]\nn_e = 80\nn_i = 20\n"
    )
    code = (
        "import sys\n"
        "from controller.cli import main\n"
        f"rc = main(['--config', {str(config)!r}, '--policy', {str(ppo_bundle[2])!r},\n"
        "           '--log-level', 'warning'])\n"
        "assert rc == 0, rc\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('torch', 'stable_baselines3'))\n"
        "print('IMPORTED', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IMPORTED []" in proc.stdout
    assert "ticks (period)" in proc.stdout


def _with_training(ppo_bundle, tmp_path, training) -> Path:
    """Re-export the module's PPO model with ``training`` metadata."""
    model, venv, _ = ppo_bundle
    return export_sb3(
        model,
        venv,
        tmp_path / "timed",
        observation_fields=OBS,
        action_fields=ACT,
        envelope_hash=SIM.sha256(),
        fixed=FIXED,
        metadata={"training": training},
    )


def test_export_keeps_metadata_and_refuses_to_overwrite_format_keys(ppo_bundle, tmp_path):
    path = _with_training(ppo_bundle, tmp_path, {"control_period_ms": np.float64(500.0)})
    assert load_bundle(path).metadata["training"] == {"control_period_ms": 500.0}
    model, venv, _ = ppo_bundle
    with pytest.raises(ConfigError, match="other than the format's own"):
        export_sb3(model, venv, tmp_path / "x", observation_fields=OBS, action_fields=ACT,
                   envelope_hash=SIM.sha256(), fixed=FIXED, metadata={"network": {}})  # fmt: skip
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        export_sb3(model, venv, tmp_path / "y", observation_fields=OBS, action_fields=ACT,
                   envelope_hash=SIM.sha256(), fixed=FIXED, metadata={"t": object()})  # fmt: skip


def test_bundle_is_off_until_the_onset_it_was_trained_with(ppo_bundle, tmp_path):
    path = _with_training(ppo_bundle, tmp_path, {"onset_ms": 2000.0, "control_period_ms": 500.0})
    policy = build_policy(str(path), SIM)
    assert policy.onset_ms == 2000.0
    fields = {"synchrony": 0.5, "weight_mv": 150.0, "rate_e_hz": 10.0, "chi": 0.5}
    before = policy.act(fields, 1999.0)
    assert before.amplitude == 0.0
    after = policy.act(fields, 2000.0)
    assert isinstance(after, np.ndarray)
    assert after.shape == (2,)
    # an explicit onset wins over the bundle's
    assert build_policy(str(path), SIM, bundle_onset_ms=0.0).onset_ms == 0.0
    # bundles without training metadata act from t = 0, as before
    assert build_policy(str(ppo_bundle[2]), SIM).onset_ms == 0.0


@pytest.mark.parametrize(
    ("extra", "period", "warned"),
    [([], 500.0, False), (["--period-ms", "100"], 100.0, True)],
    ids=["bundle-period", "explicit-period"],
)
def test_controller_runs_a_bundle_at_its_training_period(
    ppo_bundle, tmp_path, capsys, extra, period, warned
):
    from controller.cli import main

    path = _with_training(ppo_bundle, tmp_path, {"onset_ms": 200.0, "control_period_ms": 500.0})
    config = tmp_path / "run.toml"
    config.write_text(
        "[controller]\nin_process = true\npace = 'fast'\nduration_s = 1.0\nno_record = true\n"
        "[simulator]\nn_e = 80\nn_i = 20\n"
    )
    rc = main(["--config", str(config), "--policy", str(path), "--log-format", "json",
               "--log-level", "info", *extra])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert f"({period:g} ms)" in out, out
    assert ("period_differs_from_training" in out + err) == warned
    assert ("period_from_bundle" in out + err) == (not warned)
