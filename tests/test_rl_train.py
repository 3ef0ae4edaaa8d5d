"""Training end to end: it learns an easy task, exports a bundle the controller loads, resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.envs import FTSTSEnv, SimConfig
from controller.envs.reward import RewardConfig
from controller.envs.spaces import FEATURES, scale_observation
from controller.policies.bundle import load_bundle
from controller.policies.factory import build_policy
from controller.train_cli import main as train_main
from protocol.envelope.config import load_envelope

SMALL = 0.05
#: Easy task: the reward is only the charge cost, so the best policy is the weakest train.
EASY = ["--n-scale", str(SMALL), "--control-period-ms", "100", "--onset-ms", "100",
        "--controlled-s", "1.0", "--tail-s", "0.1", "--charge-weight", "1", "--tail-weight", "0",
        "--shaping-weight", "0", "--n-envs", "1", "--vec", "dummy", "--n-steps", "250",
        "--batch-size", "50", "--learning-rate", "3e-3", "--log-std-init", "-0.5",
        "--seed", "3", "--checkpoint-every", "1500"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    assert train_main([*EASY, "--total-timesteps", "3000", "--out", str(out)]) == 0
    return out


def easy_env() -> FTSTSEnv:
    cfg = SimConfig(100.0, 100.0, 1.0, 0.1,
                    reward=RewardConfig(tail_weight=0.0, shaping_weight=0.0))  # fmt: skip
    return FTSTSEnv(cfg, model_params={"n_scale": SMALL})


def mean_charge(act, seeds: range) -> float:
    env = easy_env()
    totals = []
    try:
        for seed in seeds:
            _, info = env.reset(seed=seed)
            term = False
            while not term:
                _, _, term, _, info = env.step(act(info["fields"]))
            totals.append(info["total_charge_mv_ms"])
    finally:
        env.close()
    return float(np.mean(totals))


def test_training_beats_a_random_policy_by_half(trained: Path) -> None:
    bundle = load_bundle(trained / "bundle")
    names = bundle.observation_fields
    rng = np.random.default_rng(0)

    def policy(fields: dict) -> np.ndarray:
        obs = np.array([fields[n] for n in names])
        return bundle.actor(obs).astype(np.float32)

    def random(fields: dict) -> np.ndarray:
        return rng.uniform(-1, 1, 3).astype(np.float32)

    held_out = range(2**31, 2**31 + 4)
    trained_charge = mean_charge(policy, held_out)
    random_charge = mean_charge(random, held_out)
    # Stated margin: the trained policy delivers at most half the random policy's charge.
    assert trained_charge <= 0.5 * random_charge, (trained_charge, random_charge)


def test_bundle_loads_in_the_controller_and_matches_sb3(trained: Path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    bundle_dir = trained / "bundle"
    policy = build_policy(str(bundle_dir), load_envelope("simulator"))
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    assert meta["training"]["control_period_ms"] == 100.0
    assert meta["training"]["onset_ms"] == 100.0
    assert meta["action"]["fields"][0] == {"name": "amplitude", "unit": "mV", "low": 10.0,
                                           "high": 200.0}  # fmt: skip
    model = PPO.load(str(trained / "model.zip"), device="cpu")
    norm = VecNormalize.load(str(trained / "vecnormalize.pkl"),
                             DummyVecEnv([easy_env]))  # fmt: skip
    norm.training = False
    rng = np.random.default_rng(5)
    for _ in range(50):
        fields = {f.field: float(rng.uniform(f.low, f.high)) for f in FEATURES}
        sb3_action, _ = model.predict(
            norm.normalize_obs(scale_observation(fields)[None, :]), deterministic=True
        )
        ours = policy.act(fields, 100.0)  # at the trained onset
        np.testing.assert_allclose(ours, sb3_action[0], atol=1e-5)
        assert policy.act(fields, 99.9).amplitude == 0.0  # nothing before it
    norm.close()


def test_resume_continues_from_a_checkpoint(trained: Path, tmp_path: Path) -> None:
    checkpoint = sorted((trained / "checkpoints").glob("model_*_steps.zip"))[0]
    out = tmp_path / "resumed"
    assert train_main([*EASY, "--total-timesteps", "500", "--resume", str(checkpoint),
                       "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "train.json").read_text())
    assert summary["timesteps"] >= 1500 + 500
    assert summary["resumed_from"] == str(checkpoint)
    load_bundle(out / "bundle")


def test_bad_arguments_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train_main(["--out", str(tmp_path), "--n-envs", "0"])
    assert "Expected --n-envs in [1, 64], actual 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main(["--out", str(tmp_path), "--resume", str(tmp_path / "missing.zip")])
    assert "Expected --resume to be a model .zip file" in capsys.readouterr().err


def test_sac_option_trains_and_exports(tmp_path: Path) -> None:
    out = tmp_path / "sac"
    args = [a if a != "50" else "32" for a in EASY]  # smaller batch for the short run
    assert train_main([*args, "--algo", "sac", "--total-timesteps", "120", "--out", str(out)]) == 0
    bundle = load_bundle(out / "bundle")
    assert bundle.metadata["algorithm"] == "SAC"
    assert bundle.actor.output == "tanh"
    action = bundle.actor(np.array([0.5, 10.0, 1.0, 15.0, 1.0, 200.0]))
    assert np.all(np.abs(action) <= 1.0)
