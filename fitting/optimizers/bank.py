"""The simulation bank kept with an RL policy: where its rollouts start.

Training simulates a few hundred to a few thousand parameter sets (the random bank plus SAC's
own steps). Their unit-cube points and feature values are saved next to the policy
(``bank.npz``), and a fit starts its rollouts at the members whose features are nearest the new
measurements in z (every |z| first, then the mean |z|), instead of at the box centre. The start
points are simulated again in the fit and counted against its budget like every other
simulation; the bank's own cost is the policy's training cost. The bank holds simulated
parameter sets, not the truth of any target, so no fit starts at its answer by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError
from fitting.measurements import Target
from fitting.objective import FAILURE_PENALTY, Evaluation
from fitting.parameters import FloatArray

BANK_NAME = "bank.npz"


@dataclass(frozen=True)
class Bank:
    """Simulated parameter sets and their features.

    Attributes:
        points: Unit-cube points, shape ``(members, parameters)``.
        values: Feature values in ``keys`` order, shape ``(members, keys)``; NaN where the
            feature failed.
        keys: Target keys (``stimulus/feature``).
    """

    points: FloatArray
    values: FloatArray
    keys: tuple[str, ...]

    @staticmethod
    def from_samples(samples: Sequence[tuple[FloatArray, Evaluation]], keys: Sequence[str]) -> Bank:
        """A bank from simulated ``(point, evaluation)`` pairs."""
        points = np.array([np.asarray(u, dtype=np.float64) for u, _ in samples])
        values = np.full((len(samples), len(keys)), np.nan)
        for row, (_, evaluation) in enumerate(samples):
            for col, key in enumerate(keys):
                value = evaluation.values.get(key)
                if value is not None and evaluation.statuses.get(key) == "ok":
                    values[row, col] = value
        return Bank(points.reshape(len(samples), -1), values, tuple(keys))

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def z_scores(self, targets: Sequence[Target]) -> FloatArray:
        """Signed z of every member against ``targets`` (failed features score the penalty)."""
        given = [t.key for t in targets]
        if given != list(self.keys):
            raise ConfigError(f"Expected targets {list(self.keys)} (the bank's), actual {given}")
        means = np.array([t.mean for t in targets])
        stds = np.array([t.std for t in targets])
        z = np.clip((self.values - means) / stds, -FAILURE_PENALTY, FAILURE_PENALTY)
        result: FloatArray = np.where(np.isfinite(self.values), z, FAILURE_PENALTY)
        return result

    def ranked(self, targets: Sequence[Target]) -> npt.NDArray[np.int64]:
        """Member indices, nearest first: smallest largest |z|, then smallest weighted mean |z|.

        Members at the same point (SAC may revisit one) appear once.
        """
        z = np.abs(self.z_scores(targets))
        weights = np.array([t.weight for t in targets])
        order = np.lexsort((z @ weights / weights.sum(), z.max(axis=1)))
        _, first = np.unique(np.round(self.points[order], 12), axis=0, return_index=True)
        ranked: npt.NDArray[np.int64] = order[np.sort(first)].astype(np.int64)
        return ranked

    def save(self, path: Path) -> None:
        """Write the bank as a NumPy ``.npz`` file."""
        np.savez(path, points=self.points, values=self.values, keys=np.array(self.keys))

    @staticmethod
    def load(path: Path, keys: Sequence[str], dim: int) -> Bank:
        """Read a bank written by :meth:`save`, checking it belongs to this run."""
        try:
            with np.load(path, allow_pickle=False) as data:
                bank = Bank(
                    np.asarray(data["points"], dtype=np.float64),
                    np.asarray(data["values"], dtype=np.float64),
                    tuple(str(k) for k in data["keys"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(
                f"{path}: expected a policy bank (points, values, keys arrays), actual {exc}"
            ) from exc
        rows = bank.points.shape[0]
        if (
            bank.keys != tuple(keys)
            or bank.points.shape != (rows, dim)
            or bank.values.shape != (rows, len(keys))
        ):
            raise ConfigError(
                f"{path}: expected {dim} parameters and targets {list(keys)}, actual points "
                f"{bank.points.shape}, values {bank.values.shape}, keys {list(bank.keys)}"
            )
        return bank
