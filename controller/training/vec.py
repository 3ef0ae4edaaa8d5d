"""Vectorised training environments: one FTSTS env per worker, monitored and normalised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecMonitor,
    VecNormalize,
)

from controller.envs.config import SimConfig
from controller.training.thread_vec import ThreadVecEnv
from core.errors import ConfigError
from core.threads import check_threads, cpus_per_network

#: How the environments of one process run: one after the other, on threads, one process each
VEC_KINDS = ("dummy", "threads", "subproc")
#: Per-episode info keys that the monitor CSV keeps (the training curves read them).
MONITOR_KEYS = ("r_tail", "total_charge_mv_ms", "weight_end_mv")


def _make_env(
    sim_config: SimConfig, model_params: dict[str, Any], logging: tuple[str, str] | None
) -> Callable[[], gym.Env[Any, Any]]:
    def build() -> gym.Env[Any, Any]:
        import controller.envs  # noqa: F401 - registers the env id in the worker

        if logging is not None:
            # A worker process starts with structlog's defaults; log like the parent does.
            from core.logs import configure_logging

            configure_logging(logging[0], logging[1])  # type: ignore[arg-type]

        return gym.make("neuroloop/FTSTS-v0", sim_config=sim_config, model_params=model_params)

    return build


def make_training_env(
    n_envs: int,
    seed: int,
    sim_config: SimConfig,
    model_params: dict[str, Any],
    monitor_file: Path | None,
    vec: str,
    gamma: float,
    vecnormalize_path: Path | None = None,
    logging: tuple[str, str] | None = None,
    ray: str | None = None,
) -> VecNormalize:
    """Build ``n_envs`` environments (in one process or one process each) with a monitor.

    Args:
        n_envs: Number of parallel environments.
        seed: Base seed: worker ``k`` starts from network seed ``seed + k`` and draws the
            following ones (all below 2**31) from its seeded ``np_random``.
        sim_config: Episode configuration.
        model_params: Network parameters (``n_scale``, ``semantics`` …) and ``threads`` (each
            network's; checked here, before any worker starts).
        monitor_file: CSV for per-episode return, length, tail R and charge.
        vec: ``"dummy"``: stepped one after the other in this process (``DummyVecEnv``);
            ``"threads"``: stepped at once on threads of this process
            (:class:`~controller.training.thread_vec.ThreadVecEnv`); ``"subproc"``: one
            process each (``SubprocVecEnv``). Ignored with ``ray``.
        gamma: Discount of the reward normaliser (the agent's γ).
        vecnormalize_path: Load the normalisation statistics from here (resume).
        logging: ``(format, level)`` for :func:`core.logs.configure_logging` in worker
            processes (``None``: leave logging alone).
        ray: Run the environments as actors of the Ray cluster at this address
            (:class:`controller.training.ray_vec.RayVecEnv`) instead.

    Returns:
        The ``VecNormalize``-wrapped vectorised environment.

    Raises:
        ConfigError: ``vec`` is none of the three, or ``"threads"`` with networks on more
            than one thread each.
    """
    if vec not in VEC_KINDS:
        raise ConfigError(f"Expected vec in {VEC_KINDS}, actual {vec!r}")
    threads = check_threads(model_params.get("threads", 1))
    if vec == "threads" and threads != 1 and ray is None:
        raise ConfigError(
            "Expected --threads 1 with --vec threads (networks stepped on threads share the "
            f"process's helper threads, so their kernel calls would take turns), actual {threads}"
        )
    remote = vec == "subproc" or ray is not None
    fns = [_make_env(sim_config, model_params, logging if remote else None)
           for _ in range(n_envs)]  # fmt: skip
    venv: VecEnv
    if ray is not None:
        from controller.training.ray_vec import RayVecEnv

        venv = RayVecEnv(fns, ray, cpus_per_network(threads))
    elif vec == "subproc":
        venv = SubprocVecEnv(fns)  # type: ignore[arg-type]
    elif vec == "threads":
        venv = ThreadVecEnv(fns)
    else:
        venv = DummyVecEnv(fns)  # type: ignore[arg-type]
    venv.seed(seed)
    venv = VecMonitor(
        venv, None if monitor_file is None else str(monitor_file), info_keywords=MONITOR_KEYS
    )
    if vecnormalize_path is not None:
        norm = VecNormalize.load(str(vecnormalize_path), venv)
        norm.training = True
        return norm
    return VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=gamma, clip_obs=10.0)
