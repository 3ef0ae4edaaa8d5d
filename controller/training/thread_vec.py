"""Several environments in one process, stepped side by side on threads.

:class:`ThreadVecEnv` is stable-baselines3's ``DummyVecEnv`` with one change: the environments'
``step`` (and the reset that follows an episode's end) and ``reset`` calls of one vector step
run at the same time on a pool of threads, and the results are gathered in environment order.
The FTSTS kernel releases the GIL while it integrates (it is compiled ``nogil``), so on a
machine with two cores two networks integrate at once while the Python around them (the
envelope, the protocol session, the reward) takes turns. Nothing is pickled and no process is
started: a vector step costs the slowest environment's step plus the Python the others could
not overlap.

Each environment owns its network, its backend session and its random streams, and nothing in
a step reads another environment's state, so the observations, rewards and episode ends are
the same as ``DummyVecEnv``'s, bit for bit, whatever the threads' timing
(``tests/test_training_thread_vec.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from core.errors import ConfigError
from core.threads import usable_cores


class ThreadVecEnv(DummyVecEnv):
    """``DummyVecEnv`` whose environments step concurrently on ``workers`` threads.

    Args:
        env_fns: Functions that build the environments (each called once, in order).
        workers: Threads that step environments at once (default: the smaller of the number
            of environments and this process's usable cores). The networks must run on one
            thread each (``--threads 1``; :func:`controller.training.vec.make_training_env`
            refuses others): networks on more threads share the process's helper threads,
            and their kernel calls would take turns.

    Attributes:
        workers: Environments stepped at once; 1 steps them in order on the calling thread,
            as ``DummyVecEnv`` does. It may be changed between steps, from 1 up to the value
            given here (a benchmark compares both ways on the same networks).

    A failing environment's exception is raised after every other environment has finished
    its step (with one worker too); the failing one's observation and info are not stored,
    so reset the vector before stepping it again.

    Raises:
        ConfigError: ``workers`` is not an integer ≥ 1, or an environment renders to a
            window (``render_mode="human"``: plotting belongs to the main thread).

    Example:
        >>> venv = ThreadVecEnv([lambda: gym.make("neuroloop/FTSTS-v0")] * 2)  # doctest: +SKIP
    """

    def __init__(
        self, env_fns: Sequence[Callable[[], gym.Env[Any, Any]]], workers: int | None = None
    ) -> None:
        if workers is None:
            workers = min(len(env_fns), usable_cores())
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"Expected workers to be an integer >= 1, actual {workers!r}")
        super().__init__(list(env_fns))
        windowed = [i for i, env in enumerate(self.envs) if env.render_mode == "human"]
        if windowed:
            super().close()
            raise ConfigError(
                "Expected environments without render_mode='human' in a ThreadVecEnv (they "
                f"would plot from worker threads), actual render_mode='human' at index {windowed}"
            )
        self._max_workers = workers
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="neuroloop-env"
        )

    @property
    def workers(self) -> int:
        """Environments stepped at once (1: in order, on the calling thread)."""
        return self._workers

    @workers.setter
    def workers(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Expected workers to be an integer, actual {value!r}")
        if not 1 <= value <= self._max_workers:
            raise ConfigError(
                f"Expected workers in [1, {self._max_workers}] (the pool's size), actual {value}"
            )
        self._workers = value

    def _run_all(self, job: Callable[[int], Any]) -> None:
        """Run ``job(i)`` for every environment; re-raise the failure of the lowest index.

        Every job runs to its end before this returns, also after another one failed, so a
        failure in one environment never leaves the others unstepped.
        """
        if self._pool is None:
            raise ConfigError("Expected an open ThreadVecEnv, actual closed")
        if self.num_envs == 1 or self._workers == 1:
            errors: list[BaseException] = []
            for i in range(self.num_envs):
                try:
                    job(i)
                except Exception as err:  # re-raised below, once the others have run
                    errors.append(err)
            if errors:
                raise errors[0]
            return
        futures: list[Future[Any]] = [self._pool.submit(job, i) for i in range(self.num_envs)]
        wait(futures)
        for fut in futures:
            fut.result()  # raises the job's exception, lowest index first

    def _step_one(self, env_idx: int) -> None:
        """One environment's step, with ``DummyVecEnv``'s bookkeeping (auto-reset included)."""
        obs, reward, terminated, truncated, info = self.envs[env_idx].step(self.actions[env_idx])
        self.buf_rews[env_idx] = float(reward)
        self.buf_dones[env_idx] = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        if self.buf_dones[env_idx]:
            info["terminal_observation"] = obs
            obs, self.reset_infos[env_idx] = self.envs[env_idx].reset()
        self.buf_infos[env_idx] = info
        self._save_obs(env_idx, obs)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every environment with its action from ``step_async``, concurrently."""
        self._run_all(self._step_one)
        return (
            self._obs_from_buf(),
            np.copy(self.buf_rews),
            np.copy(self.buf_dones),
            deepcopy(self.buf_infos),
        )

    def _reset_one(self, env_idx: int) -> None:
        options = self._options[env_idx]
        extra = {"options": options} if options else {}
        obs, self.reset_infos[env_idx] = self.envs[env_idx].reset(
            seed=self._seeds[env_idx], **extra
        )
        self._save_obs(env_idx, obs)

    def reset(self) -> VecEnvObs:
        """Reset every environment (with the seeds and options set since the last reset)."""
        self._run_all(self._reset_one)
        self._reset_seeds()
        self._reset_options()
        return self._obs_from_buf()

    def close(self) -> None:
        """Stop the threads, then close every environment (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            super().close()
