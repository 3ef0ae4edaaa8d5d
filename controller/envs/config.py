"""Timing of an episode: lead-in, control period, controlled period and stimulation-free tail.

An episode is ``reset`` → ``onset_ms`` of unstimulated lead-in (the network settles into its
pathological synchronous state, as in the paper's first 1.98 s) → ``controlled_s`` of control
steps of ``control_period_ms`` each → a stimulation-free tail of ``tail_s`` simulated inside the
last step, whose mean offline Kuramoto R scores how long the effect lasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from controller.envs.reward import RewardConfig
from core.errors import ConfigError

#: The simulator's paper-semantics chunk: every window must be a whole number of these.
CHUNK_MS = 20.0


def _whole_chunks(name: str, value_ms: float, chunk_ms: float) -> int:
    n = value_ms / chunk_ms
    if not math.isfinite(n) or abs(n - round(n)) > 1e-9:
        raise ConfigError(
            f"Expected {name} to be a whole multiple of {chunk_ms:g} ms, actual {value_ms!r} ms"
        )
    return round(n)


@dataclass(frozen=True)
class SimConfig:
    """Timing, sampling and reward of an episode.

    Args:
        control_period_ms: One agent decision per window of this length (multiple of 20 ms).
        onset_ms: Unstimulated lead-in simulated inside ``reset`` (multiple of the period; at
            least one period is always simulated so the first observation is real).
        controlled_s: Length of the controlled period (a whole number of periods).
        tail_s: Stimulation-free tail simulated inside the last step (the spec asks >= 5 s
            for evaluation; shorter tails are for tests).
        envelope: Safety envelope every action passes through (``simulator``, ``device`` or a
            TOML path); it is hashed into the policy bundle.
        keep_spikes: Keep every spike of the episode (for rendering and evaluation).
        reward: Reward weights.
        observations: The agent's observation set (``controller.envs.spaces.OBSERVATION_SETS``):
            ``oracle`` (population statistics and the mean E→I weight: simulation studies
            only) or ``measurable`` (the LFP features a sensing implant computes).
    """

    control_period_ms: float = 20.0
    onset_ms: float = 2000.0
    controlled_s: float = 20.0
    tail_s: float = 5.0
    envelope: str = "simulator"
    keep_spikes: bool = False
    reward: RewardConfig = field(default_factory=RewardConfig)
    observations: str = "oracle"

    def __post_init__(self) -> None:
        if self.observations not in ("oracle", "measurable"):
            raise ConfigError(
                f"Expected observations 'oracle' or 'measurable', actual {self.observations!r}"
            )
        if not (math.isfinite(self.control_period_ms) and 20.0 <= self.control_period_ms <= 5000.0):
            raise ConfigError(
                f"Expected control_period_ms in [20, 5000], actual {self.control_period_ms!r}"
            )
        _whole_chunks("control_period_ms", self.control_period_ms, CHUNK_MS)
        if not (math.isfinite(self.onset_ms) and self.onset_ms >= 0.0):
            raise ConfigError(f"Expected onset_ms >= 0, actual {self.onset_ms!r}")
        if self.onset_ms > 0.0:
            _whole_chunks("onset_ms", self.onset_ms, self.control_period_ms)
        if not (math.isfinite(self.controlled_s) and self.controlled_s > 0.0):
            raise ConfigError(f"Expected controlled_s > 0, actual {self.controlled_s!r}")
        _whole_chunks("controlled_s", self.controlled_s * 1000.0, self.control_period_ms)
        if not (math.isfinite(self.tail_s) and 0.1 <= self.tail_s <= 10.0):
            raise ConfigError(f"Expected tail_s in [0.1, 10], actual {self.tail_s!r}")
        _whole_chunks("tail_s", self.tail_s * 1000.0, CHUNK_MS)
        if not isinstance(self.reward, RewardConfig):
            raise ConfigError(f"Expected reward as a RewardConfig, actual {self.reward!r}")

    @property
    def n_steps(self) -> int:
        """Control steps per episode."""
        return round(self.controlled_s * 1000.0 / self.control_period_ms)

    @property
    def period_s(self) -> float:
        """Control period in seconds."""
        return self.control_period_ms / 1000.0

    @property
    def tail_ms(self) -> float:
        """Tail length in ms."""
        return self.tail_s * 1000.0

    @property
    def episode_ms(self) -> float:
        """Model time of a whole episode (lead-in, controlled period and tail)."""
        return self.onset_ms + self.controlled_s * 1000.0 + self.tail_ms
