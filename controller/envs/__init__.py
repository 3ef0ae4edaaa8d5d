"""Gymnasium environments for closed-loop DBS; importing registers ``neuroloop/FTSTS-v0``.

Example:
    >>> import gymnasium as gym
    >>> import controller.envs
    >>> env = gym.make("neuroloop/FTSTS-v0", model_params={"n_scale": 0.25})
"""

from __future__ import annotations

import gymnasium as gym

from controller.envs.config import SimConfig
from controller.envs.dbs import DBSEnv
from controller.envs.ftsts import FTSTSEnv
from controller.envs.models import LocalNetworkModel, ModelWindow, NeuralModel
from controller.envs.reward import RewardConfig

ENV_ID = "neuroloop/FTSTS-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="controller.envs.ftsts:FTSTSEnv")

__all__ = [
    "ENV_ID",
    "DBSEnv",
    "FTSTSEnv",
    "LocalNetworkModel",
    "ModelWindow",
    "NeuralModel",
    "RewardConfig",
    "SimConfig",
]
