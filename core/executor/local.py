"""The default engine: a pool of worker processes on this machine."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import structlog

from core.executor.base import (
    DEFAULT_MAX_ATTEMPTS,
    Executor,
    ExecutorError,
    Outcome,
    Task,
    call_task,
    check_tasks,
    describe_error,
)
from core.logs import current_settings

log = structlog.get_logger()


class LocalExecutor(Executor):
    """Tasks in ``workers`` processes started with ``start_method``.

    At most ``workers`` tasks are in the pool at a time, so when a worker dies (the pool then
    breaks as a whole) only the tasks that were running are charged an attempt; the pool is
    rebuilt and they are started again.

    Args:
        workers: Processes.
        start_method: ``spawn`` (default: nothing inherited), ``forkserver`` or ``fork``.
        max_attempts: Starts of a task whose worker dies before it is reported as lost.
    """

    engine = "local"

    def __init__(
        self,
        workers: int = 1,
        start_method: str = "spawn",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if workers < 1:
            raise ExecutorError(f"Expected workers >= 1, actual {workers}")
        if max_attempts < 1:
            raise ExecutorError(f"Expected max_attempts >= 1, actual {max_attempts}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ExecutorError(
                f"Expected a start method from {multiprocessing.get_all_start_methods()}, "
                f"actual {start_method!r}"
            )
        self._workers = workers
        self._ctx = multiprocessing.get_context(start_method)
        self.max_attempts = max_attempts
        self._pool: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        """Worker processes."""
        return self._workers

    def _fresh_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=self._ctx)
        return self._pool

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        """Run ``tasks`` (see :meth:`Executor.run`)."""
        check_tasks(tasks)
        queue = list(reversed(tasks))
        attempts = {t.key: 0 for t in tasks}
        running: dict[Future[object], Task] = {}
        while queue or running:
            pool = self._fresh_pool()
            while queue and len(running) < self._workers:
                task = queue.pop()
                attempts[task.key] += 1
                running[pool.submit(call_task, task.fn, task.args, current_settings())] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                task = running.pop(future)
                try:
                    value = future.result()
                except BrokenProcessPool:
                    broken = True
                    outcome = self._lost(task, attempts[task.key], queue)
                    if outcome is not None:
                        yield outcome
                    continue
                except Exception as err:
                    yield Outcome(
                        task.key, None, describe_error(err), attempts[task.key], task.params
                    )
                    continue
                yield Outcome(task.key, value, None, attempts[task.key], task.params)
            if broken:
                # Every task still in the broken pool was running on it: charge and requeue.
                for future, task in list(running.items()):
                    del running[future]
                    outcome = self._lost(task, attempts[task.key], queue)
                    if outcome is not None:
                        yield outcome
                self._drop_pool()

    def _lost(self, task: Task, attempt: int, queue: list[Task]) -> Outcome | None:
        log.warning("worker_lost", task=task.key, attempt=attempt, max_attempts=self.max_attempts)
        if attempt < self.max_attempts:
            queue.append(task)
            return None
        return Outcome(
            task.key,
            None,
            f"worker process died on each of {attempt} attempts",
            attempt,
            task.params,
            lost=True,
        )

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        self._drop_pool()
