"""The objective shared by every optimiser: per-feature z-scores with explicit failures.

``z = (model − mean) / std`` for each target. A target whose feature failed (no spike, invalid
trace, eFEL failure, timeout, simulation error) scores :data:`FAILURE_PENALTY` (250, as in
BluePyOpt) and keeps its failure status, so failures are visible rather than NaN. The scalar
score is the weighted mean of ``|z|``; a parameter set *reproduces* the measurements when every
``|z| <= k``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fitting.features import STATUS_OK, FeatureResult
from fitting.measurements import Target

FAILURE_PENALTY = 250.0


@dataclass(frozen=True)
class Evaluation:
    """The outcome of simulating one parameter set on every stimulus.

    Attributes:
        params: Physical parameter values.
        values: ``stimulus/feature`` → model value (``None`` when it failed).
        statuses: ``stimulus/feature`` → ``ok`` or a failure status.
        z: ``stimulus/feature`` → signed z-score (penalty on failure).
        score: Weighted mean ``|z|``.
        max_abs_z: Largest ``|z|``.
        status: ``ok`` if every feature computed, else the first failure status.
        elapsed_s: Wall time of the simulation and feature extraction.
    """

    params: dict[str, float]
    values: dict[str, float | None]
    statuses: dict[str, str]
    z: dict[str, float]
    score: float
    max_abs_z: float
    status: str
    elapsed_s: float = 0.0

    def reproduces(self, k: float) -> bool:
        """True when every ``|z| <= k``."""
        return self.max_abs_z <= k

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for the archive."""
        return asdict(self)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Evaluation:
        """Inverse of :meth:`to_dict`."""
        return Evaluation(
            params={k: float(v) for k, v in data["params"].items()},
            values={k: (None if v is None else float(v)) for k, v in data["values"].items()},
            statuses=dict(data["statuses"]),
            z={k: float(v) for k, v in data["z"].items()},
            score=float(data["score"]),
            max_abs_z=float(data["max_abs_z"]),
            status=str(data["status"]),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
        )


def score_features(
    params: Mapping[str, float],
    targets: Sequence[Target],
    results: Mapping[str, FeatureResult],
    elapsed_s: float = 0.0,
) -> Evaluation:
    """Turn feature results (keyed ``stimulus/feature``) into an :class:`Evaluation`."""
    values: dict[str, float | None] = {}
    statuses: dict[str, str] = {}
    z: dict[str, float] = {}
    weighted = 0.0
    total_weight = 0.0
    first_failure = STATUS_OK
    for target in targets:
        result = results[target.key]
        values[target.key] = result.value
        statuses[target.key] = result.status
        if result.status == STATUS_OK and result.value is not None and math.isfinite(result.value):
            score = (result.value - target.mean) / target.std
            z[target.key] = max(-FAILURE_PENALTY, min(FAILURE_PENALTY, score))
        else:
            z[target.key] = FAILURE_PENALTY
            if first_failure == STATUS_OK:
                first_failure = result.status
        weighted += target.weight * abs(z[target.key])
        total_weight += target.weight
    return Evaluation(
        params=dict(params),
        values=values,
        statuses=statuses,
        z=z,
        score=weighted / total_weight,
        max_abs_z=max(abs(v) for v in z.values()),
        status=first_failure,
        elapsed_s=elapsed_s,
    )


def failed_evaluation(
    params: Mapping[str, float],
    targets: Sequence[Target],
    status: str,
    detail: str,
    elapsed_s: float = 0.0,
) -> Evaluation:
    """An evaluation where every feature failed with ``status`` (timeout, crash)."""
    results = {t.key: FeatureResult(t.feature, None, status, detail) for t in targets}
    return score_features(params, targets, results, elapsed_s)


def rescore(evaluation: Evaluation, targets: Sequence[Target]) -> Evaluation:
    """Score an existing evaluation's feature values against other targets (no simulation)."""
    results = {
        t.key: FeatureResult(
            t.feature,
            evaluation.values.get(t.key),
            evaluation.statuses.get(t.key, "feature_failed"),
        )
        for t in targets
    }
    return score_features(evaluation.params, targets, results, evaluation.elapsed_s)
