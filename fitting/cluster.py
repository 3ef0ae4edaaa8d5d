"""The fitting pool on the shared executor: parameter sets evaluated as independent tasks.

:class:`ExecutorPool` answers a fit's requests (``evaluate``, ``traces``, ``call``) by sending
each one as a task to a :class:`core.executor.Executor`: local worker processes by default
(:class:`fitting.pool.WorkerPool`), or a Ray cluster with ``neuroloop-fit --ray ADDRESS``. Each
worker process builds the model once, before its first task, and keeps it for the next ones.
A simulation that runs longer than ``timeout_s`` has its worker stopped and replaced and is
scored as a ``timeout`` failure; a worker or node lost mid-evaluation has its parameter set
evaluated again elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from core.errors import FittingError
from core.executor.base import Executor, Task
from fitting.features import STATUS_SIMULATION_ERROR, STATUS_TIMEOUT
from fitting.measurements import MeasurementSet
from fitting.model import ModelSpec
from fitting.objective import Evaluation, failed_evaluation

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
    """One request (``eval``, ``traces`` or ``call``), answered in a worker process."""
    evaluator = _evaluator(model_spec, measurements)
    if kind == "eval":
        return evaluator.evaluate(payload).to_dict()
    if kind == "traces":
        traces = evaluator.simulate(payload)
        return {k: (t.tolist(), v.tolist()) for k, (t, v) in traces.items()}
    func, args = payload
    return func(evaluator, *args)


class ExecutorPool:
    """Evaluation requests as tasks on ``executor`` (owned: closed here).

    Args:
        model_spec: The model, prepared (on a cluster: its files at the same path on every
            machine).
        measurements: Stimuli and targets.
        executor: The engine: a ``LocalExecutor``, or ``make_executor("auto")`` for Ray.
        timeout_s: Longest allowed evaluation of one parameter set (``inf``: no limit); the
            worker's model build is not counted on the local engine.
        max_in_flight: Most tasks this pool has on the executor at once (default: the
            executor's workers). Several pools sharing a cluster (a folder's lanes) each take
            their share, so that no task waits in the cluster's queue on its own timeout.
    """

    def __init__(
        self,
        model_spec: ModelSpec,
        measurements: MeasurementSet,
        executor: Executor,
        timeout_s: float = math.inf,
        max_in_flight: int | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise FittingError(f"Expected timeout_s > 0, actual {timeout_s}")
        if max_in_flight is not None and max_in_flight < 1:
            raise FittingError(f"Expected max_in_flight >= 1, actual {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.model_spec = model_spec
        self.measurements = measurements
        self.timeout_s = timeout_s
        self.timeouts = 0
        self.executor = executor
        self._batch = 0

    @property
    def size(self) -> int:
        """Tasks that can run at once for this pool."""
        workers = self.executor.workers
        return workers if self.max_in_flight is None else min(workers, self.max_in_flight)

    def _run(self, kind: str, payloads: Sequence[Any]) -> list[tuple[str, Any]]:
        """``(kind, payload)`` per request, in order: ``ok``, ``timeout``, ``error``, ``crash``."""
        if self.max_in_flight is not None and len(payloads) > self.size:
            out: list[tuple[str, Any]] = []
            for start in range(0, len(payloads), self.size):
                out += self._run(kind, payloads[start : start + self.size])
            return out
        self._batch += 1
        setup = functools.partial(_evaluator, self.model_spec, self.measurements)
        timeout_s = self.timeout_s if math.isfinite(self.timeout_s) else None
        tasks = [
            Task(f"{self._batch}/{i}", pool_task, (self.model_spec, self.measurements, kind, p),
                 {"request": kind, "index": i}, timeout_s=timeout_s, setup=setup)
            for i, p in enumerate(payloads)
        ]  # fmt: skip
        by_key = {o.key: o for o in self.executor.run(tasks)}
        results: list[tuple[str, Any]] = []
        for task in tasks:
            o = by_key[task.key]
            if o.ok:
                results.append(("ok", o.value))
            elif o.timed_out:
                results.append(("timeout", o.error))
            else:
                results.append(("crash" if o.lost else "error", o.error))
        return results

    def evaluate(self, params_list: Sequence[Mapping[str, float]]) -> list[Evaluation]:
        """Evaluate parameter sets in parallel; order of results matches the input.

        A timed-out set scores as a ``timeout`` failure (and counts in :attr:`timeouts`), a
        crashed or raising simulation as a ``simulation_error``; a ``FittingError`` (a bad
        parameter name, say) is raised.
        """
        evaluations = []
        for params, (kind, payload) in zip(
            params_list, self._run("eval", [dict(p) for p in params_list]), strict=True
        ):
            if kind == "ok":
                evaluations.append(Evaluation.from_dict(payload))
            elif kind == "timeout":
                self.timeouts += 1
                evaluations.append(
                    failed_evaluation(
                        params,
                        self.measurements.targets,
                        STATUS_TIMEOUT,
                        str(payload),
                        self.timeout_s,
                    )
                )
            elif kind == "error" and str(payload).startswith("FittingError"):
                raise FittingError(str(payload))
            else:
                evaluations.append(
                    failed_evaluation(
                        params, self.measurements.targets, STATUS_SIMULATION_ERROR, str(payload)
                    )
                )
        return evaluations

    def traces(self, params: Mapping[str, float]) -> dict[str, tuple[list[float], list[float]]]:
        """Voltage traces ``stimulus → (t_ms, v_mv)`` for one parameter set."""
        kind, payload = self._run("traces", [dict(params)])[0]
        if kind != "ok":
            raise FittingError(f"Expected traces for {dict(params)}, actual {kind}: {payload}")
        return dict(payload)

    def call(self, func: Any, *args: Any) -> Any:
        """Run ``func(evaluator, *args)`` in one worker (``func`` must be importable)."""
        kind, payload = self._run("call", [(func, args)])[0]
        if kind != "ok":
            raise FittingError(f"Worker call {getattr(func, '__name__', func)} failed: {payload}")
        return payload

    def close(self) -> None:
        """Release the executor (idempotent)."""
        self.executor.close()

    def __enter__(self) -> ExecutorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
