"""The environment driving a real simulator server subprocess through the protocol."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from controller.backends.inprocess import InProcessConnection
from controller.backends.zmq import ZmqConnection
from controller.envs import DBSEnv, FTSTSEnv, SimConfig
from controller.envs.remote import RemoteModel
from core.errors import BackendUnavailableError, ConfigError
from protocol.process import BackendProcess, spawn_local_backend
from simulator.server import SimulatorBackend

SCALE = 0.05


@pytest.fixture(scope="module")
def server() -> BackendProcess:
    proc = spawn_local_backend(
        [sys.executable, "-m", "simulator.server"],
        "ipc",
        ready_timeout_s=120.0,
        extra_args=["--session-timeout-s", "60", "--log-level", "warning"],
        stderr=subprocess.DEVNULL,
    )
    yield proc
    proc.stop(timeout_s=5.0)


def config() -> SimConfig:
    return SimConfig(control_period_ms=100.0, onset_ms=200.0, controlled_s=0.3, tail_s=0.2)


def run(env: FTSTSEnv, actions: np.ndarray) -> tuple[np.ndarray, list[float], dict]:
    obs, _ = env.reset(seed=21)
    seen, rewards = [obs], []
    info: dict = {}
    for a in actions:
        obs, r, term, _, info = env.step(a)
        seen.append(obs)
        rewards.append(float(r))
        if term:
            break
    return np.array(seen), rewards, info


def test_remote_episode_matches_the_in_process_network(server: BackendProcess) -> None:
    actions = np.random.default_rng(2).uniform(-1, 1, size=(3, 3)).astype(np.float32)
    local = FTSTSEnv(config(), model_params={"n_scale": SCALE})
    remote = FTSTSEnv(config(), model_class=RemoteModel,
                      model_params={"address": server.address, "n_scale": SCALE})  # fmt: skip
    try:
        obs_l, rew_l, info_l = run(local, actions)
        obs_r, rew_r, info_r = run(remote, actions)
    finally:
        local.close()
        remote.close()
    # Same network code, same seed, same envelope: the same episode, bit for bit.
    np.testing.assert_array_equal(obs_l, obs_r)
    assert rew_l == rew_r
    assert info_r["r_tail"] == info_l["r_tail"]
    assert info_r["total_charge_mv_ms"] == pytest.approx(info_l["total_charge_mv_ms"])
    assert server.alive()


def test_remote_model_refuses_a_physical_envelope(server: BackendProcess) -> None:
    model = RemoteModel(server.address, n_scale=SCALE)
    try:
        from protocol.envelope.config import load_envelope

        with pytest.raises(ConfigError, match="model-domain envelope"):
            model.bind(load_envelope("device"), 100.0)
        with pytest.raises(ConfigError, match="bind"):
            model.reset(1)
    finally:
        model.close()


def test_unreachable_backend_fails_within_the_deadline(tmp_path) -> None:
    address = f"ipc://{tmp_path / 'nobody.sock'}"
    with pytest.raises(BackendUnavailableError, match="Expected a backend connected"):
        FTSTSEnv(config(), model_class=RemoteModel,
                 model_params={"address": address, "n_scale": SCALE, "timeout_s": 0.3})  # fmt: skip


#: The simulator's configure options of a small network (the same in process and served).
SIM_OPTIONS: dict[str, Any] = {"n_scale": SCALE, "polarity": "desync", "stim_noise_e_mv": 0.0}
SMALL_EPISODE = SimConfig(control_period_ms=20.0, onset_ms=100.0, controlled_s=0.2, tail_s=0.1)
ACTIONS = np.random.default_rng(5).uniform(-1, 1, size=(10, 3)).astype(np.float32)


def simulator_in_process() -> InProcessConnection:
    """The simulator backend object, configured by options exactly as a server would be."""
    return InProcessConnection(
        SimulatorBackend(session_timeout_s=60.0), options=SIM_OPTIONS, warm_up=None
    )


def test_simulator_in_process_and_over_zeromq_give_the_same_episode(
    server: BackendProcess,
) -> None:
    local = DBSEnv(SMALL_EPISODE, model_class=simulator_in_process)
    remote = DBSEnv(SMALL_EPISODE, model_class=ZmqConnection,
                    model_params={"address": server.address, "timeout_s": 30.0,
                                  "options": SIM_OPTIONS})  # fmt: skip
    try:
        obs_l, rew_l, info_l = run(local, ACTIONS)
        obs_r, rew_r, info_r = run(remote, ACTIONS)
    finally:
        local.close()
        remote.close()
    # One path: the same backend object's code in process or behind a socket.
    np.testing.assert_array_equal(obs_l, obs_r)
    assert rew_l == rew_r
    assert info_l["r_tail"] == info_r["r_tail"]
    assert info_l["total_charge_mv_ms"] == info_r["total_charge_mv_ms"] > 0.0
