"""A vectorised environment whose members are Ray actors, anywhere in the cluster.

:class:`RayVecEnv` is a drop-in for stable-baselines3's ``SubprocVecEnv``: each environment
lives in a Ray actor (one CPU) instead of a local subprocess, steps in parallel with the others,
and resets itself at the end of an episode the way ``SubprocVecEnv`` does (the final
observation in ``info["terminal_observation"]``). Only actions, observations, rewards and infos
cross the network; each actor builds its own network from the environment factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from core.errors import ConfigError
from core.executor.ray_engine import connect, require_node_cpus

#: Longest wait for every actor's answer to one request (s): a step, a reset, a query.
CALL_TIMEOUT_S = 600.0


class EnvActor:
    """One environment inside a Ray actor; answers the requests ``SubprocVecEnv`` sends."""

    def __init__(self, env_fn: Callable[[], gym.Env[Any, Any]]) -> None:
        from stable_baselines3.common.vec_env.patch_gym import _patch_env

        self.env = _patch_env(env_fn())

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        """Observation and action spaces."""
        return self.env.observation_space, self.env.action_space

    def step(self, action: Any) -> tuple[Any, float, bool, dict[str, Any], dict[str, Any]]:
        """Step; at the end of an episode keep the final observation and reset."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        info["TimeLimit.truncated"] = truncated and not terminated
        reset_info: dict[str, Any] = {}
        if done:
            info["terminal_observation"] = obs
            obs, reset_info = self.env.reset()
        return obs, float(reward), bool(done), info, reset_info

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, Any]:
        """Reset with a seed (used once) and options."""
        return self.env.reset(seed=seed, **({"options": options} if options else {}))

    def env_method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call a method of the (wrapped) environment."""
        return self.env.get_wrapper_attr(name)(*args, **kwargs)

    def get_attr(self, name: str) -> Any:
        """An attribute of the (wrapped) environment."""
        return self.env.get_wrapper_attr(name)

    def has_attr(self, name: str) -> bool:
        """Whether the environment has ``name``."""
        try:
            self.env.get_wrapper_attr(name)
        except AttributeError:
            return False
        return True

    def set_attr(self, name: str, value: Any) -> None:
        """Set an attribute."""
        setattr(self.env, name, value)

    def is_wrapped(self, wrapper: type[gym.Wrapper[Any, Any, Any, Any]]) -> bool:
        """Whether the environment is wrapped with ``wrapper``."""
        from stable_baselines3.common.env_util import is_wrapped

        return is_wrapped(self.env, wrapper)

    def render(self) -> Any:
        """The environment's render output."""
        return self.env.render()

    def close(self) -> None:
        """Close the environment."""
        self.env.close()


class RayVecEnv(VecEnv):
    """``len(env_fns)`` environments as Ray actors of the cluster at ``address``.

    Args:
        env_fns: Environment factories (picklable closures; run inside the actors).
        address: A ``--ray`` value (see :func:`core.executor.ray_engine.connect`).
        cpus_per_env: CPUs each actor reserves (its network's ``--threads``:
            :func:`core.threads.cpus_per_network`).

    Raises:
        ConfigError: The cluster has fewer free CPUs than the environments reserve.
        ExecutorError: No node has the CPUs one environment reserves.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env[Any, Any]]],
        address: str,
        cpus_per_env: int = 1,
    ) -> None:
        wanted = len(env_fns) * cpus_per_env
        self._ray = ray = connect(address, wanted)
        free = ray.available_resources().get("CPU", 0.0)
        if free < wanted:
            raise ConfigError(
                f"Expected {cpus_per_env} free CPU(s) in the Ray cluster per environment "
                f"({len(env_fns)} environments: {wanted}), actual {free:g}; lower --n-envs or "
                "--threads, or add nodes"
            )
        require_node_cpus(ray, cpus_per_env, f"environments of {cpus_per_env} CPUs (--threads)")
        actor_class = ray.remote(num_cpus=cpus_per_env, max_restarts=0)(EnvActor)
        self.actors = [actor_class.remote(fn) for fn in env_fns]
        self.nodes = sorted(set(self._get([a.node_id.remote() for a in self.actors])))
        obs_space, act_space = self._get(self.actors[0].spaces.remote())
        self.waiting: list[Any] = []
        self.closed = False
        super().__init__(len(env_fns), obs_space, act_space)

    def _get(self, refs: Any) -> Any:
        return self._ray.get(refs, timeout=CALL_TIMEOUT_S)

    def _targets(self, indices: VecEnvIndices) -> list[Any]:
        return [self.actors[i] for i in self._get_indices(indices)]

    def step_async(self, actions: np.ndarray) -> None:
        """Send one action to each actor."""
        self.waiting = [a.step.remote(act) for a, act in zip(self.actors, actions, strict=True)]

    def step_wait(self) -> VecEnvStepReturn:
        """Collect every actor's step."""
        results = self._get(self.waiting)
        self.waiting = []
        obs, rews, dones, infos, reset_infos = zip(*results, strict=True)
        self.reset_infos = list(reset_infos)
        return np.stack(obs), np.stack(rews), np.stack(dones), list(infos)

    def reset(self) -> VecEnvObs:
        """Reset every actor with its pending seed and options (used once)."""
        refs = [a.reset.remote(self._seeds[i], self._options[i]) for i, a in enumerate(self.actors)]
        obs, reset_infos = zip(*self._get(refs), strict=True)
        self.reset_infos = list(reset_infos)
        self._reset_seeds()
        self._reset_options()
        return np.stack(obs)

    def close(self) -> None:
        """Close every environment and end its actor (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._get([a.close.remote() for a in self.actors])
        finally:
            for actor in self.actors:
                self._ray.kill(actor)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of each target environment."""
        return list(self._get([a.get_attr.remote(attr_name) for a in self._targets(indices)]))

    def has_attr(self, attr_name: str) -> bool:
        """Whether every environment has the attribute."""
        return all(self._get([a.has_attr.remote(attr_name) for a in self.actors]))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute in each target environment."""
        self._get([a.set_attr.remote(attr_name, value) for a in self._targets(indices)])

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """Call a method of each target environment."""
        refs = [a.env_method.remote(method_name, method_args, method_kwargs)
                for a in self._targets(indices)]  # fmt: skip
        return list(self._get(refs))

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper[Any, Any, Any, Any]], indices: VecEnvIndices = None
    ) -> list[bool]:
        """Whether each target environment is wrapped with ``wrapper_class``."""
        return list(self._get([a.is_wrapped.remote(wrapper_class) for a in self._targets(indices)]))

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each environment's rendered frame."""
        return list(self._get([a.render.remote() for a in self.actors]))
