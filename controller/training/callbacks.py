"""Training callbacks: tqdm progress, episode metrics for TensorBoard, a wall-clock budget."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import structlog
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm


class TqdmCallback(BaseCallback):
    """Progress bar over the timesteps of this ``learn`` call (no ``rich`` needed).

    The postfix shows the episodes finished and the mean return, tail R and charge of the last
    ten episodes.

    Args:
        total_timesteps: Timesteps this call will run (the bar's length).
    """

    def __init__(self, total_timesteps: int) -> None:
        super().__init__()
        self.total_timesteps = total_timesteps
        self._bar: tqdm[Any] | None = None
        self._returns: list[float] = []
        self._r_tail: list[float] = []
        self._charge: list[float] = []

    def _on_training_start(self) -> None:
        self._bar = tqdm(total=self.total_timesteps, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        bar = self._bar
        if bar is None:
            return True
        bar.update(self.training_env.num_envs)
        for info in self.locals.get("infos", []):
            episode = info.get("episode")
            if episode is not None:
                self._returns.append(float(episode["r"]))
                if "r_tail" in info:
                    self._r_tail.append(float(info["r_tail"]))
                    self._charge.append(float(info["total_charge_mv_ms"]))
                bar.set_postfix(
                    episodes=len(self._returns),
                    ret=f"{np.mean(self._returns[-10:]):.3f}",
                    r_tail=f"{np.mean(self._r_tail[-10:]):.3f}" if self._r_tail else "-",
                    charge=f"{np.mean(self._charge[-10:]):.0f}" if self._charge else "-",
                )
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EpisodeMetricsCallback(BaseCallback):
    """Log each finished episode's tail synchrony, charge and final weight to the SB3 logger."""

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "r_tail" in info:
                self.logger.record_mean("episode/r_tail", float(info["r_tail"]))
                self.logger.record_mean("episode/charge_mv_ms", float(info["total_charge_mv_ms"]))
                self.logger.record_mean("episode/weight_end_mv", float(info["weight_end_mv"]))
        return True


class WallClockBudget(BaseCallback):
    """Stop training once ``budget_s`` of wall time has passed since training started.

    Args:
        budget_s: Seconds of training allowed (the rollout in progress finishes its step).
    """

    def __init__(self, budget_s: float) -> None:
        super().__init__()
        self.budget_s = budget_s
        self._start = 0.0
        self.expired = False

    def _on_training_start(self) -> None:
        self._start = time.monotonic()

    def _on_step(self) -> bool:
        if time.monotonic() - self._start >= self.budget_s:
            if not self.expired:
                structlog.get_logger().warning(
                    "training_budget_reached",
                    budget_s=self.budget_s,
                    timesteps=self.num_timesteps,
                    reason="wall-clock budget",
                )
            self.expired = True
            return False
        return True
