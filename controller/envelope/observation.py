"""Observation rule: the policy only sees finite observations that carry every field it needs.

A NaN or Inf (a diverged simulation, a sensor fault) or a missing field means the policy is not
run for that tick and the last command is held; a run of them latches a safe stop (see
:class:`Streak`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.envelope.setpoint import Finding


def check_observation(values: Mapping[str, float], required: Sequence[str]) -> list[Finding]:
    """Return a ``reject`` finding per non-finite field and per missing required field.

    Every field is checked for finiteness, not only the ones the policy reads: a NaN anywhere
    means the source (simulation, sensor) is broken.
    """
    findings: list[Finding] = []
    for name in required:
        if name not in values:
            detail = f"Expected observation field {name!r}, actual fields {sorted(values)}"
            findings.append(
                Finding("observation_missing", "reject", name, math.nan, math.nan, detail)
            )
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            detail = f"Expected a finite {name}, actual {value!r}"
            findings.append(
                Finding("invalid_observation", "reject", name, math.nan, math.nan, detail)
            )
    return findings


@dataclass
class Streak:
    """Counts consecutive bad inputs; reaching ``limit`` means a fault.

    Args:
        limit: Consecutive bad inputs that trip the fault.
    """

    limit: int
    count: int = 0

    def bad(self) -> bool:
        """Count one bad input; return whether the streak reached the limit."""
        self.count += 1
        return self.count >= self.limit

    def good(self) -> None:
        """A valid input ends the streak."""
        self.count = 0
