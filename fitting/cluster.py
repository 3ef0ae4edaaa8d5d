"""The fitting pool on the shared executor: parameter sets evaluated as independent tasks.

:class:`ExecutorPool` answers the same requests as :class:`fitting.pool.WorkerPool`
(``evaluate``, ``traces``, ``call``) but sends each one as a task to a
:class:`core.executor.Executor`, so ``neuroloop-fit --ray ADDRESS`` evaluates on a Ray cluster.
Each worker process builds the model once, on its first task, and keeps it for the next ones.
A worker or node lost mid-evaluation has its parameter set evaluated again elsewhere. There is
no per-simulation timeout on this path (the local :class:`WorkerPool` keeps it).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from typing import Any

from core.executor.base import Executor, Task
from fitting.measurements import MeasurementSet
from fitting.model import ModelSpec
from fitting.pool import WorkerPool

#: Evaluators built in this (worker) process, by model and measurement set.
_EVALUATORS: dict[str, Any] = {}


def _evaluator(model_spec: ModelSpec, measurements: MeasurementSet) -> Any:
    key = hashlib.sha256(pickle.dumps((model_spec, measurements))).hexdigest()
    if key not in _EVALUATORS:
        from fitting.evaluator import Evaluator

        evaluator = Evaluator(model_spec, measurements)
        _ = evaluator.model
        _EVALUATORS[key] = evaluator
    return _EVALUATORS[key]


def pool_task(model_spec: ModelSpec, measurements: MeasurementSet, kind: str, payload: Any) -> Any:
    """One request of :class:`WorkerPool`'s protocol, answered in a worker process."""
    evaluator = _evaluator(model_spec, measurements)
    if kind == "eval":
        return evaluator.evaluate(payload).to_dict()
    if kind == "traces":
        traces = evaluator.simulate(payload)
        return {k: (t.tolist(), v.tolist()) for k, (t, v) in traces.items()}
    func, args = payload
    return func(evaluator, *args)


class ExecutorPool(WorkerPool):
    """A :class:`WorkerPool` whose requests run as tasks on ``executor`` (owned: closed here).

    Args:
        model_spec: The model, prepared (its files at the same path on every machine).
        measurements: Protocols and targets.
        executor: The engine, e.g. ``make_executor("auto")`` for a Ray cluster.
    """

    def __init__(
        self, model_spec: ModelSpec, measurements: MeasurementSet, executor: Executor
    ) -> None:
        self.model_spec = model_spec
        self.measurements = measurements
        self.timeout_s = float("inf")
        self.timeouts = 0
        self.executor = executor
        self._workers = []
        self._batch = 0

    @property
    def size(self) -> int:
        """Tasks that can run at once on the executor."""
        return self.executor.workers

    def _run(self, kind: str, payloads: Sequence[Any]) -> list[tuple[str, Any]]:
        self._batch += 1
        tasks = [
            Task(f"{self._batch}/{i}", pool_task, (self.model_spec, self.measurements, kind, p),
                 {"request": kind, "index": i})
            for i, p in enumerate(payloads)
        ]  # fmt: skip
        by_key = {o.key: o for o in self.executor.run(tasks)}
        out: list[tuple[str, Any]] = []
        for task in tasks:
            o = by_key[task.key]
            out.append(("ok", o.value) if o.ok else ("crash" if o.lost else "error", o.error))
        return out

    def close(self) -> None:
        """Release the executor (idempotent)."""
        self.executor.close()
