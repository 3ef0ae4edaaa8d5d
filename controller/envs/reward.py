"""The reward: lasting desynchronisation for as little charge as possible.

Per control step ``t`` (window of ``T`` ms, charge ``q_t``, weights before/after ``w_t``,
``w_{t+1}``) and once at the end of the episode:

* **charge cost** ``-λ_q · q_t / (ρ_ref · T_ctrl)``: the charge of the window as a fraction of
  what the paper's open-loop FTSTS train (100 mV, 1 ms phases, 83.3 Hz: ``ρ_ref`` ≈ 16 667
  mV·ms/s) would deliver over the whole controlled period ``T_ctrl``. Stimulating like FTSTS
  for the whole period costs ``λ_q``.
* **tail penalty** ``-λ_R · R_tail`` at the last step: the mean offline Kuramoto order parameter
  over a stimulation-free tail simulated inside that step. This is the clinical goal (the
  effect must outlast stimulation) and it cannot be gamed by entraining the network while
  stimulating, unlike the seed's χ-based reward (spec §9 item 2).
* **optional window synchrony** ``-λ_s · R_t · T / T_ctrl`` (default off): rewards
  desynchronising early, at the price of favouring entrainment while stimulating.
* **potential-based shaping** ``γ·Φ(w_{t+1}) - Φ(w_t)`` with
  ``Φ(w) = -λ_w · max(0, w - w_floor) / (290 mV - w_floor)`` and ``Φ = 0`` at the terminal
  state (Ng, Harada & Russell 1999): it pays for each drop of the mean E→I weight as it
  happens, which shortens the credit assignment from the final tail to the step that caused
  it, and sums to the constant ``-Φ(s_0)`` over an episode, so the optimal policy is
  unchanged. Below ``w_floor`` (default 75 mV, the paper's latch: the asynchronous state is
  self-sustaining there) further depression earns nothing, so the potential stays close to
  the true value of the state. ``γ`` must be the agent's discount factor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from core.errors import ConfigError

#: Charge rate of the paper's open-loop FTSTS train: 2 phases × 100 mV × 1 ms × 1000/12 Hz.
FTSTS_CHARGE_RATE_MV_MS_PER_S = 2.0 * 100.0 * 1.0 * 1000.0 / 12.0
#: Normalisation of the weight potential: the upper bound of the effective E→I weight.
WEIGHT_SCALE_MV = 290.0


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the reward terms.

    Args:
        charge_weight: λ_q, cost of delivering the FTSTS charge rate for the whole period.
        tail_weight: λ_R, penalty per unit of tail synchrony R_tail.
        sync_weight: λ_s, penalty per unit of window synchrony averaged over the period.
        shaping_weight: λ_w, scale of the weight potential (0 disables shaping).
        weight_floor_mv: w_floor, weight below which the potential is flat.
        gamma: Discount factor of the agent (used by the shaping term only).
        charge_rate_ref_mv_ms_per_s: ρ_ref, the charge rate that costs ``charge_weight``.
    """

    charge_weight: float = 1.0
    tail_weight: float = 10.0
    sync_weight: float = 0.0
    shaping_weight: float = 3.0
    weight_floor_mv: float = 75.0
    gamma: float = 0.99
    charge_rate_ref_mv_ms_per_s: float = FTSTS_CHARGE_RATE_MV_MS_PER_S

    def __post_init__(self) -> None:
        for name in ("charge_weight", "tail_weight", "sync_weight", "shaping_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"Expected {name} >= 0 (finite), actual {value!r}")
        if not (
            math.isfinite(self.weight_floor_mv) and 0.0 <= self.weight_floor_mv < WEIGHT_SCALE_MV
        ):
            raise ConfigError(
                f"Expected weight_floor_mv in [0, {WEIGHT_SCALE_MV}), "
                f"actual {self.weight_floor_mv!r}"
            )
        if not (math.isfinite(self.gamma) and 0.0 < self.gamma <= 1.0):
            raise ConfigError(f"Expected gamma in (0, 1], actual {self.gamma!r}")
        rate = self.charge_rate_ref_mv_ms_per_s
        if not (math.isfinite(rate) and rate > 0.0):
            raise ConfigError(f"Expected charge_rate_ref_mv_ms_per_s > 0, actual {rate!r}")

    def as_dict(self) -> dict[str, float]:
        """Plain mapping (for bundle metadata and logs)."""
        return asdict(self)


@dataclass(frozen=True)
class RewardTerms:
    """The components of one step's reward (their sum is the reward)."""

    charge: float = 0.0
    tail: float = 0.0
    sync: float = 0.0
    shaping: float = 0.0

    @property
    def total(self) -> float:
        """The reward."""
        return self.charge + self.tail + self.sync + self.shaping

    def as_dict(self) -> dict[str, float]:
        """Plain mapping with the total (for ``info``).

        Written out: ``dataclasses.asdict`` deep-copies each float, a tenth of the
        environment's own time per step.
        """
        return {
            "charge": self.charge,
            "tail": self.tail,
            "sync": self.sync,
            "shaping": self.shaping,
            "total": self.total,
        }


def charge_cost(charge_mv_ms: float, controlled_s: float, cfg: RewardConfig) -> float:
    """``-λ_q · q / (ρ_ref · T_ctrl)`` for a window that delivered ``charge_mv_ms``."""
    if not (math.isfinite(charge_mv_ms) and charge_mv_ms >= 0.0):
        raise ConfigError(f"Expected a finite charge_mv_ms >= 0, actual {charge_mv_ms!r}")
    budget = cfg.charge_rate_ref_mv_ms_per_s * controlled_s
    return -cfg.charge_weight * charge_mv_ms / budget


def tail_penalty(r_tail: float, cfg: RewardConfig) -> float:
    """``-λ_R · R_tail``; ``R_tail`` must be a finite order parameter in [0, 1]."""
    if not (math.isfinite(r_tail) and 0.0 <= r_tail <= 1.0):
        raise ConfigError(f"Expected r_tail in [0, 1], actual {r_tail!r}")
    return -cfg.tail_weight * r_tail


def sync_cost(r_window: float, period_s: float, controlled_s: float, cfg: RewardConfig) -> float:
    """``-λ_s · R_t · T / T_ctrl`` (sums to ``-λ_s`` times the mean window R of the period)."""
    if not (math.isfinite(r_window) and 0.0 <= r_window <= 1.0):
        raise ConfigError(f"Expected window synchrony in [0, 1], actual {r_window!r}")
    return -cfg.sync_weight * r_window * period_s / controlled_s


def potential(weight_mv: float, cfg: RewardConfig) -> float:
    """``Φ(w) = -λ_w · max(0, w - w_floor) / (290 mV - w_floor)``: higher for weaker coupling."""
    if not math.isfinite(weight_mv):
        raise ConfigError(f"Expected a finite weight_mv, actual {weight_mv!r}")
    excess = max(0.0, weight_mv - cfg.weight_floor_mv)
    return -cfg.shaping_weight * excess / (WEIGHT_SCALE_MV - cfg.weight_floor_mv)


def shaping(
    weight_before_mv: float, weight_after_mv: float, terminal: bool, cfg: RewardConfig
) -> float:
    """``γ·Φ(s') - Φ(s)`` with ``Φ(terminal) = 0``."""
    after = 0.0 if terminal else potential(weight_after_mv, cfg)
    return cfg.gamma * after - potential(weight_before_mv, cfg)
