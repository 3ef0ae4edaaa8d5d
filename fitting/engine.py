"""The evaluation engine: one budget, one archive, resume from a checkpoint, a progress bar.

Every optimiser asks the engine to evaluate points of the unit cube. The engine

* counts each evaluated parameter set as one *simulation* against the budget (every stimulus of
  the measurement set is run for it), whatever the method — RL training included;
* appends every evaluation to ``archive.jsonl`` (flushed and fsynced per batch), headed by a
  fingerprint of the model, measurements, parameters, method and seed;
* on resume, answers points that were already simulated from the archive (they still count
  against the budget, but are not simulated again). All optimisers are deterministic for a
  given seed, so a resumed run retraces the interrupted one and continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import structlog
from tqdm import tqdm

from core.errors import ConfigError, FittingError
from fitting.objective import Evaluation
from fitting.parameters import FloatArray, ParameterSpace
from fitting.report import best_max_abs_z

log = structlog.get_logger()

ARCHIVE_NAME = "archive.jsonl"
EvaluateFn = Callable[[Sequence[dict[str, float]]], list[Evaluation]]


class BudgetExhaustedError(Exception):
    """Raised inside an optimiser when no simulations are left (control flow, not an error)."""


def fingerprint(config: dict[str, Any]) -> str:
    """SHA-256 of a canonical JSON rendering of ``config``."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _key(u: FloatArray) -> tuple[float, ...]:
    return tuple(round(float(x), 12) for x in u)


class Engine:
    """Budgeted, archived evaluation of unit-cube points.

    Args:
        space: The parameter space.
        evaluate: Batch evaluator of physical parameter sets (usually ``WorkerPool.evaluate``).
        budget: Maximum number of simulations.
        out_dir: Where ``archive.jsonl`` lives; ``None`` keeps everything in memory.
        config: Run description hashed into the archive header; a resume with a different
            configuration is refused.
        progress: Show a tqdm progress bar.
        resume: Reuse an existing archive in ``out_dir`` (else start it afresh).
        k: Acceptance threshold: a solution has every ``|z| <= k``.
        stop_after_solutions: End the run (as if the budget were spent) once this many
            solutions were found; ``None`` spends the whole budget.
    """

    def __init__(
        self,
        space: ParameterSpace,
        evaluate: EvaluateFn,
        budget: int,
        out_dir: Path | None = None,
        config: dict[str, Any] | None = None,
        progress: bool = False,
        resume: bool = True,
        k: float = 2.0,
        stop_after_solutions: int | None = None,
    ) -> None:
        if budget < 1:
            raise ConfigError(f"Expected a budget >= 1 simulation, actual {budget}")
        self.space = space
        self._evaluate = evaluate
        self.budget = budget
        self.used = 0
        self.k = k
        self.stop_after_solutions = stop_after_solutions
        self.first_fit_at: int | None = None
        self.solutions = 0
        self.simulated = 0
        self.history: list[tuple[FloatArray, Evaluation]] = []
        self._cache: dict[tuple[float, ...], deque[Evaluation]] = defaultdict(deque)
        self._handle: TextIO | None = None
        digest = fingerprint(config or {})
        header = {"fingerprint": digest, "parameters": space.to_dict()}
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / ARCHIVE_NAME
            if path.exists() and resume:
                self._load(path, digest)
                self._handle = path.open("a")
            else:
                self._handle = path.open("w")
                self._write([header])
        self._bar = tqdm(total=budget, desc="simulations", unit="sim", disable=not progress)

    def _load(self, path: Path, expected: str) -> None:
        lines = path.read_text().splitlines()
        if not lines:
            raise ConfigError(f"{path}: expected an archive header line, actual empty file")
        header = json.loads(lines[0])
        if header.get("fingerprint") != expected:
            raise ConfigError(
                f"{path}: expected an archive of the same run (fingerprint {expected}), actual "
                f"{header.get('fingerprint')}; use a fresh --out directory or --restart"
            )
        kept = 0
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
                u = np.array(record["u"], dtype=np.float64)
                evaluation = Evaluation.from_dict(record["evaluation"])
            except (ValueError, KeyError, TypeError):
                log.warning(
                    "archive_line_skipped",
                    path=str(path),
                    line=number,
                    reason="torn or corrupt record (interrupted write)",
                )
                continue
            self._cache[_key(u)].append(evaluation)
            kept += 1
        log.info("archive_resumed", path=str(path), evaluations=kept)

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._handle is None:
            return
        for record in records:
            self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    @property
    def remaining(self) -> int:
        """Simulations left in the budget (0 once enough solutions were found)."""
        if self.stop_after_solutions is not None and self.solutions >= self.stop_after_solutions:
            return 0
        return self.budget - self.used

    def evaluate(self, points: Sequence[FloatArray]) -> list[Evaluation]:
        """Evaluate unit-cube points (clipped to [0, 1]); truncated to the remaining budget.

        Raises:
            BudgetExhaustedError: If the budget is already spent.
        """
        if self.remaining <= 0:
            raise BudgetExhaustedError
        for point in points:
            if not np.all(np.isfinite(np.asarray(point, dtype=np.float64))):
                values = [float(x) for x in point]
                log.error("nonfinite_point_rejected", point=values, reason="NaN/Inf is a fault")
                raise FittingError(
                    f"Expected finite parameters from the optimiser, actual {values}"
                )
        clipped = [
            np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0) for p in points[: self.remaining]
        ]
        for raw, kept in zip(points, clipped, strict=False):
            if not np.array_equal(np.asarray(raw, dtype=np.float64), kept):
                log.debug(
                    "point_clipped_to_bounds",
                    requested=[float(x) for x in raw],
                    applied=kept.tolist(),
                    reason="outside the parameter bounds",
                )
        results: list[Evaluation | None] = []
        misses: list[int] = []
        for index, u in enumerate(clipped):
            cached = self._cache.get(_key(u))
            if cached:
                results.append(cached.popleft())
            else:
                results.append(None)
                misses.append(index)
        if misses:
            fresh = self._evaluate([self.space.from_unit(clipped[i]) for i in misses])
            for index, evaluation in zip(misses, fresh, strict=True):
                results[index] = evaluation
            self._write(
                [
                    {"u": clipped[i].tolist(), "evaluation": results[i].to_dict()}  # type: ignore[union-attr]
                    for i in misses
                ]
            )
            self.simulated += len(misses)
        done = [r for r in results if r is not None]
        self.used += len(done)
        self._bar.update(len(done))
        for u, evaluation in zip(clipped, done, strict=True):
            self.history.append((u, evaluation))
            if evaluation.reproduces(self.k):
                self.solutions += 1
                if self.first_fit_at is None:
                    self.first_fit_at = len(self.history)
        best = best_max_abs_z([e for _, e in self.history])
        if best is not None:
            self._bar.set_postfix_str(f"best max|z| = {best:.3g}")
        return done

    def close(self) -> None:
        """Close the archive and the progress bar."""
        self._bar.close()
        if self._handle is not None:
            self._handle.close()
            self._handle = None
