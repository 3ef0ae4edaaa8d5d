"""The paper's latch: stimulate from an onset until a mean weight crosses a threshold, never after.

Schmalz & Kumar (2019) switch their pulse train off for good once the mean effective E→I weight
falls below a threshold (75 mV in Fig 3), or rises above one when the run synchronises (Fig 4);
Fig 11 also waits for the mean I→E weight. :class:`LatchRule` is that test and :class:`Latch`
the switch that holds it. This one definition serves the open-loop experiments
(:mod:`simulator.run`), the controller's ``ftsts`` policy and the RL evaluation's scripted
baselines, so all three stop stimulating on the same window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LatchDirection = Literal["below", "above"]

#: A window starting this close before the onset counts as at the onset (float sums of periods).
ONSET_SLACK_MS = 1e-9


@dataclass(frozen=True)
class LatchRule:
    """When the latch trips.

    Args:
        threshold_mv: The mean effective weight at which stimulation stops for good.
        direction: ``below`` (desynchronising runs: the E→I weight falls under the threshold)
            or ``above`` (synchronising runs: it rises over it).
        on_ie: With ``below``, also require the mean I→E weight under the threshold (Fig 11).
    """

    threshold_mv: float
    direction: LatchDirection = "below"
    on_ie: bool = False

    def trips(self, weight_mv: float, weight_ie_mv: float = math.nan) -> bool:
        """Whether these mean effective weights (E→I, I→E, in mV) trip the latch."""
        if self.direction == "below":
            hit = weight_mv < self.threshold_mv
            return hit and weight_ie_mv < self.threshold_mv if self.on_ie else hit
        return weight_mv > self.threshold_mv


@dataclass
class Latch:
    """Stimulation on from ``onset_ms`` until :attr:`rule` trips, then off for the rest of the run.

    Args:
        rule: When to stop (``None``: never; stimulation then runs from the onset to the end).
        onset_ms: Model time of the first stimulated window.
        latched_at_ms: Start of the window at which the latch tripped (``None`` until it does).
    """

    rule: LatchRule | None
    onset_ms: float = 0.0
    latched_at_ms: float | None = None

    def reset(self) -> None:
        """Open the latch again (a new run)."""
        self.latched_at_ms = None

    @property
    def latched(self) -> bool:
        """Whether the latch has tripped."""
        return self.latched_at_ms is not None

    def stimulating(self, t_ms: float, weight_mv: float, weight_ie_mv: float = math.nan) -> bool:
        """Whether the window starting at ``t_ms`` is stimulated, given the weights before it.

        Before the onset: off, and the weights are not looked at. From the onset on: the
        first window whose weights trip the rule is off and latches; every later one is off.

        Args:
            t_ms: Model time at the start of the window.
            weight_mv: Mean effective E→I weight observed before the window.
            weight_ie_mv: Mean effective I→E weight (used by rules with ``on_ie``).
        """
        if self.latched_at_ms is not None or t_ms < self.onset_ms - ONSET_SLACK_MS:
            return False
        if self.rule is not None and self.rule.trips(weight_mv, weight_ie_mv):
            self.latched_at_ms = t_ms
            return False
        return True
