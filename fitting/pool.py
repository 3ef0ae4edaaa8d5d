"""Parallel evaluation in worker processes that build the model themselves.

Workers are started with the ``spawn`` (default) or ``forkserver`` context, so no NEURON state
is ever inherited through ``fork`` (a forked child of a process that already ran NEURON records
empty vectors without raising — see docs/fitting.md). Each worker builds the model once, reports
``ready``, then evaluates parameter sets on request. A simulation that exceeds ``timeout_s`` gets
its worker killed and replaced, and is returned as a ``timeout`` failure.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import structlog

from core.errors import FittingError
from fitting.features import STATUS_SIMULATION_ERROR, STATUS_TIMEOUT
from fitting.measurements import MeasurementSet
from fitting.model import ModelSpec
from fitting.objective import Evaluation, failed_evaluation

log = structlog.get_logger()

STARTUP_TIMEOUT_S = 180.0


def _worker_main(conn: Connection, model_spec: ModelSpec, measurements: MeasurementSet) -> None:
    """Worker loop: build the model, then answer ``eval``/``traces``/``call`` requests."""
    from fitting.evaluator import Evaluator

    try:
        evaluator = Evaluator(model_spec, measurements)
        _ = evaluator.model
    except Exception as err:
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        try:
            if kind == "eval":
                conn.send(("ok", evaluator.evaluate(payload).to_dict()))
            elif kind == "traces":
                traces = evaluator.simulate(payload)
                conn.send(("ok", {k: (t.tolist(), v.tolist()) for k, (t, v) in traces.items()}))
            elif kind == "call":
                func, args = payload
                conn.send(("ok", func(evaluator, *args)))
            else:
                conn.send(("error", f"unknown request {kind!r}"))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}"))


class _Worker:
    def __init__(self, ctx: Any, model_spec: ModelSpec, measurements: MeasurementSet) -> None:
        parent, child = ctx.Pipe()
        self.conn: Connection = parent
        self.process = ctx.Process(
            target=_worker_main, args=(child, model_spec, measurements), daemon=True
        )
        self.process.start()
        child.close()
        self.task: int | None = None
        self.started_s = 0.0

    def wait_ready(self, timeout_s: float) -> None:
        if not self.conn.poll(timeout_s):
            self.kill()
            raise FittingError(
                f"Expected a worker to build the model within {timeout_s:.0f} s, actual no reply"
            )
        kind, payload = self.conn.recv()
        if kind != "ready":
            self.kill()
            raise FittingError(f"Worker could not build the model: {payload}")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()


class WorkerPool:
    """A fixed set of model-building worker processes.

    Args:
        model_spec: The model; call ``ModelSpec.prepare`` first so mods are compiled once.
        measurements: Stimuli and targets.
        workers: Number of processes.
        timeout_s: Longest allowed evaluation of one parameter set.
        start_method: ``spawn`` or ``forkserver`` (``fork`` is refused).
    """

    def __init__(
        self,
        model_spec: ModelSpec,
        measurements: MeasurementSet,
        workers: int = 1,
        timeout_s: float = 60.0,
        start_method: str = "spawn",
    ) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise FittingError(
                f"Expected start method spawn or forkserver, actual {start_method!r}: "
                "fork would inherit NEURON state"
            )
        if workers < 1:
            raise FittingError(f"Expected workers >= 1, actual {workers}")
        if timeout_s <= 0:
            raise FittingError(f"Expected timeout_s > 0, actual {timeout_s}")
        self.model_spec = model_spec
        self.measurements = measurements
        self.timeout_s = timeout_s
        self._ctx = multiprocessing.get_context(start_method)
        self._workers = [_Worker(self._ctx, model_spec, measurements) for _ in range(workers)]
        try:
            for worker in self._workers:
                worker.wait_ready(STARTUP_TIMEOUT_S)
        except FittingError:
            self.close()
            raise
        self.timeouts = 0

    @property
    def size(self) -> int:
        """Number of workers."""
        return len(self._workers)

    def _replace(self, index: int) -> None:
        self._workers[index].kill()
        fresh = _Worker(self._ctx, self.model_spec, self.measurements)
        fresh.wait_ready(STARTUP_TIMEOUT_S)
        self._workers[index] = fresh

    def _run(self, kind: str, payloads: Sequence[Any]) -> list[tuple[str, Any]]:
        results: list[tuple[str, Any] | None] = [None] * len(payloads)
        pending = list(range(len(payloads)))
        pending.reverse()
        while pending or any(w.task is not None for w in self._workers):
            for worker in self._workers:
                if worker.task is None and pending:
                    worker.task = pending.pop()
                    worker.started_s = time.monotonic()
                    worker.conn.send((kind, payloads[worker.task]))
            busy = [w for w in self._workers if w.task is not None]
            now = time.monotonic()
            next_deadline = min(w.started_s + self.timeout_s for w in busy) - now
            ready = wait([w.conn for w in busy], timeout=max(next_deadline, 0.0))
            for index, worker in enumerate(self._workers):
                if worker.task is None:
                    continue
                if worker.conn in ready:
                    try:
                        results[worker.task] = worker.conn.recv()
                    except (EOFError, OSError):
                        results[worker.task] = ("crash", "worker process died")
                        log.warning("worker_died", task=worker.task)
                        worker.task = None
                        self._replace(index)
                        continue
                    worker.task = None
                elif time.monotonic() - worker.started_s > self.timeout_s:
                    log.warning("simulation_timeout", task=worker.task, timeout_s=self.timeout_s)
                    results[worker.task] = ("timeout", f"no result within {self.timeout_s} s")
                    self.timeouts += 1
                    worker.task = None
                    self._replace(index)
        return [r if r is not None else ("crash", "lost") for r in results]

    def evaluate(self, params_list: Sequence[Mapping[str, float]]) -> list[Evaluation]:
        """Evaluate parameter sets in parallel; order of results matches the input."""
        evaluations = []
        for params, (kind, payload) in zip(
            params_list, self._run("eval", [dict(p) for p in params_list]), strict=True
        ):
            if kind == "ok":
                evaluations.append(Evaluation.from_dict(payload))
            elif kind == "timeout":
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
        """Stop every worker (idempotent)."""
        for worker in self._workers:
            if worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.conn.send(("stop", None))
                worker.process.join(timeout=5.0)
            worker.kill()
        self._workers = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
