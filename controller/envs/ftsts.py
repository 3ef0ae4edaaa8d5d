"""``FTSTSEnv``: :class:`DBSEnv` on the paper's FTSTS network with desynchronising pulses.

Defaults: the Fig 3 network of Schmalz & Kumar (2019) at N = 2000 in the released code's
semantics, without the stimulus-noise term (docs/rl.md explains why), desynchronising polarity
(I leads E on every pulse), 2 s unstimulated lead-in, 20 s controlled period in 20 ms steps and a
5 s stimulation-free tail. ``model_params`` such as ``{"n_scale": 0.25}`` change the network;
``model_class=RemoteModel`` with ``{"address": ...}`` runs the same episode on a backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.envs.config import SimConfig
from controller.envs.dbs import DBSEnv
from controller.envs.models import LocalNetworkModel, NeuralModel


class FTSTSEnv(DBSEnv):
    """Learn to desynchronise the FTSTS network with less charge than the open-loop protocol.

    Args:
        sim_config: Episode timing, envelope and reward (default :class:`SimConfig`).
        model_class: The model (default: the in-process network).
        model_params: Its keyword arguments (default: N = 2000, paper semantics, desync).
        render_mode: ``None``, ``rgb_array`` or ``human``.
    """

    def __init__(
        self,
        sim_config: SimConfig | None = None,
        model_class: Callable[..., NeuralModel] = LocalNetworkModel,
        model_params: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        params: dict[str, Any] = {"polarity": "desync"}
        params.update(model_params or {})
        if params["polarity"] != "desync":
            from core.errors import ConfigError

            raise ConfigError(
                f"Expected polarity 'desync' for FTSTSEnv (use DBSEnv otherwise), actual "
                f"{params['polarity']!r}"
            )
        super().__init__(sim_config, model_class, params, render_mode)
