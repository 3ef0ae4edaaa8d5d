"""Normalised policy actions: shape and finiteness check, [-1, 1] clamp, mapping to a setpoint.

A policy acts in ``[-1, 1]`` per action dimension; :class:`ActionMap` maps each dimension
linearly onto its physical range. Quantities the policy does not control take fixed values.
A NaN, an Inf, a wrong shape or a value with ``|a| > 2`` means the policy or the pipeline is
broken: the action is rejected, never repaired. A finite ``1 < |a| <= 2`` is clamped and flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import ConfigError
from protocol.envelope.setpoint import Finding, Setpoint

#: Quantities a policy may control, in setpoint order.
ACTION_NAMES = ("amplitude", "frequency_hz", "pulse_width_us")
#: Beyond this magnitude a normalised action is treated as invalid rather than clamped.
INVALID_ABOVE = 2.0


@dataclass(frozen=True)
class ActionMap:
    """How a normalised action vector becomes a setpoint.

    Args:
        names: Controlled quantities in action order, each one of :data:`ACTION_NAMES`.
        low: Physical value at ``a = -1`` for each name.
        high: Physical value at ``a = +1`` for each name.
        fixed: Values of the quantities the policy does not control.
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    fixed: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("Expected at least one action name, actual none")
        for name in self.names:
            if name not in ACTION_NAMES:
                raise ConfigError(f"Expected action names from {ACTION_NAMES}, actual {name!r}")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"Expected distinct action names, actual {self.names}")
        if not len(self.low) == len(self.high) == len(self.names):
            raise ConfigError(
                f"Expected {len(self.names)} low/high values, "
                f"actual {len(self.low)}/{len(self.high)}"
            )
        for name, lo, hi in zip(self.names, self.low, self.high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(
                    f"Expected finite low < high for action {name!r}, actual {lo}, {hi}"
                )
        missing = [n for n in ACTION_NAMES if n not in self.names and n not in self.fixed]
        if missing:
            raise ConfigError(f"Expected fixed values for uncontrolled {missing}, actual none")
        for name, value in self.fixed.items():
            if name not in ACTION_NAMES or not math.isfinite(value):
                raise ConfigError(
                    f"Expected fixed {ACTION_NAMES} with finite values, actual {name}={value}"
                )

    @property
    def size(self) -> int:
        """Number of action dimensions."""
        return len(self.names)

    def to_setpoint(self, action: Sequence[float]) -> Setpoint:
        """Map an already validated action in ``[-1, 1]`` to physical values."""
        values = dict(self.fixed)
        for name, lo, hi, a in zip(self.names, self.low, self.high, action, strict=True):
            values[name] = lo + (float(a) + 1.0) * 0.5 * (hi - lo)
        return Setpoint(
            amplitude=values["amplitude"],
            frequency_hz=values["frequency_hz"],
            pulse_width_us=values["pulse_width_us"],
        )

    def to_action(self, setpoint: Setpoint) -> list[float]:
        """The action that :meth:`to_setpoint` maps onto ``setpoint`` (controlled fields only).

        Raises:
            ConfigError: A controlled value lies outside its ``[low, high]`` range.
        """
        action = []
        for name, lo, hi in zip(self.names, self.low, self.high, strict=True):
            value = float(getattr(setpoint, name))
            if not lo <= value <= hi:
                raise ConfigError(f"Expected {name} in [{lo}, {hi}], actual {value}")
            action.append(2.0 * (value - lo) / (hi - lo) - 1.0)
        return action


def check_action(raw: Any, action_map: ActionMap) -> tuple[list[float] | None, list[Finding]]:
    """Validate and clamp one normalised action.

    Args:
        raw: The policy output (anything: checked for type, shape, dtype and finiteness).
        action_map: The expected action layout.

    Returns:
        ``(action, findings)``: the clamped action as floats, or ``None`` when rejected.
    """
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except OverflowError:
        detail = "Expected a numeric action vector, actual an integer too large for a float"
        return None, [_invalid("action", detail)]
    except (TypeError, ValueError) as err:
        return None, [
            _invalid("action", f"Expected a numeric action vector, actual {raw!r} ({err})")
        ]
    if arr.shape != (action_map.size,):
        return None, [
            _invalid("action", f"Expected action shape ({action_map.size},), actual {arr.shape}")
        ]
    out: list[float] = []
    findings: list[Finding] = []
    for i, a in enumerate(arr.tolist()):
        label = f"action[{i}]"
        if not math.isfinite(a):
            return None, [_invalid(label, f"Expected a finite action, actual {a}")]
        if abs(a) > INVALID_ABOVE:
            return None, [
                _invalid(label, f"Expected |action| <= {INVALID_ABOVE} (clamp zone), actual {a}")
            ]
        if abs(a) > 1.0:
            clamped = max(-1.0, min(1.0, a))
            findings.append(
                Finding(
                    "action_out_of_range",
                    "clamp",
                    label,
                    a,
                    clamped,
                    f"Expected {label} in [-1, 1], actual {a}",
                )
            )
            a = clamped
        out.append(a)
    return out, findings


def _invalid(field_name: str, detail: str) -> Finding:
    return Finding("invalid_action", "reject", field_name, math.nan, math.nan, detail)
