"""Synthetic targets: features of a known parameter set turned into measurement targets.

Used to train the RL fitting policy across randomised targets and by the benchmark, where the
ground truth is known.
"""

from __future__ import annotations

from collections.abc import Sequence

from fitting.features import target_std
from fitting.measurements import Target
from fitting.objective import Evaluation

DEFAULT_STD_FRACTION = 0.05


def targets_from_evaluation(
    evaluation: Evaluation, template: Sequence[Target], std_fraction: float = DEFAULT_STD_FRACTION
) -> tuple[Target, ...] | None:
    """Targets whose means are ``evaluation``'s values; ``None`` if any feature failed.

    Each std is ``std_fraction × |value|`` floored at the feature's ``min_std`` (potentials use
    a fixed 1 mV); weights are copied from ``template``.
    """
    targets = []
    for target in template:
        value = evaluation.values.get(target.key)
        if value is None or evaluation.statuses.get(target.key) != "ok":
            return None
        std = target_std(target.feature, value, std_fraction)
        targets.append(Target(target.stimulus, target.feature, value, std, target.weight))
    return tuple(targets)
