"""The default engine: a pool of worker processes on this machine."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import structlog

from core.executor.base import (
    DEFAULT_MAX_ATTEMPTS,
    Executor,
    ExecutorError,
    Outcome,
    Task,
    check_tasks,
    describe_error,
    timed_out_outcome,
)
from core.logs import configure_worker, current_settings

log = structlog.get_logger()

#: How often the driver looks for start reports of tasks that have a timeout (s).
START_POLL_S = 0.1
#: In a worker: where it reports the tasks it starts (set by the pool's initializer).
_STARTS: Any = None


def _set_start_queue(starts: Any) -> None:
    global _STARTS
    _STARTS = starts


def _start_and_call(
    token: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    logging: tuple[Any, str] | None,
    setup: Callable[[], Any] | None,
) -> Any:
    """Run the task's ``setup``, report ``(token, start time)`` to the driver, run the task.

    A timeout counts from the report, so neither a worker's own start-up (a fresh process
    importing its modules) nor the task's setup is charged to it.
    """
    configure_worker(logging)
    if setup is not None:
        setup()
    if _STARTS is not None:
        _STARTS.put((token, time.monotonic()))
    return fn(*args)


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
        self._starts: Any = None
        self._tokens = 0

    @property
    def workers(self) -> int:
        """Worker processes."""
        return self._workers

    def _fresh_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # One start queue per pool: a worker killed mid-report can only spoil its own.
            self._starts = self._ctx.SimpleQueue()
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=self._ctx,
                initializer=_set_start_queue,
                initargs=(self._starts,),
            )
        return self._pool

    def _read_starts(self, started_s: dict[int, float]) -> None:
        """Collect the start times the workers reported so far, by token."""
        while self._starts is not None and not self._starts.empty():
            token, t_s = self._starts.get()
            started_s[token] = t_s

    def _drop_pool(self, kill: bool = False) -> None:
        if self._pool is not None:
            if kill:
                # ProcessPoolExecutor cannot stop one worker: stop them all (the pool breaks).
                for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                    process.kill()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._starts.close()
            self._starts = None

    def run(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        """Run ``tasks`` (see :meth:`Executor.run`).

        A task past its ``timeout_s`` is reported timed out, and the pool is restarted (one
        worker cannot be stopped alone): the other tasks that were running are started again
        on the fresh pool without being charged an attempt.
        """
        check_tasks(tasks)
        queue = list(reversed(tasks))
        attempts = {t.key: 0 for t in tasks}
        running: dict[Future[object], Task] = {}
        token_of: dict[Future[object], int] = {}
        started_s: dict[int, float] = {}
        while queue or running:
            pool = self._fresh_pool()
            while queue and len(running) < self._workers:
                task = queue.pop()
                attempts[task.key] += 1
                self._tokens += 1
                try:
                    future = pool.submit(
                        _start_and_call,
                        self._tokens,
                        task.fn,
                        task.args,
                        current_settings(),
                        task.setup,
                    )
                except BrokenProcessPool:
                    # A worker died since the last look: the running tasks will say which.
                    attempts[task.key] -= 1
                    queue.append(task)
                    break
                running[future] = task
                token_of[future] = self._tokens
            if not running:
                self._drop_pool()
                continue
            self._read_starts(started_s)
            done, _ = wait(running, timeout=self._wait_s(running, token_of, started_s),
                           return_when=FIRST_COMPLETED)  # fmt: skip
            self._read_starts(started_s)
            broken = False
            for future in done:
                task = running.pop(future)
                started_s.pop(token_of.pop(future), None)
                outcome = self._settle(future, task, attempts[task.key], queue)
                broken = broken or outcome is None or outcome.lost
                if outcome is not None:
                    yield outcome
            expired = [f for f in running if self._expired(running[f], started_s.get(token_of[f]))]
            if expired and not broken:
                yield from self._time_out(expired, running, attempts, queue)
                self._drop_pool(kill=True)
            elif broken:
                # Every task still in the broken pool was running on it: charge and requeue.
                for future, task in list(running.items()):
                    del running[future]
                    outcome = self._lost(task, attempts[task.key], queue)
                    if outcome is not None:
                        yield outcome
                self._drop_pool()

    @staticmethod
    def _expired(task: Task, started_s: float | None) -> bool:
        if task.timeout_s is None or started_s is None:
            return False
        return time.monotonic() - started_s >= task.timeout_s

    @staticmethod
    def _wait_s(
        running: dict[Future[object], Task],
        token_of: dict[Future[object], int],
        started_s: dict[int, float],
    ) -> float | None:
        """How long to wait for a result: until the next deadline or the next start report."""
        waits: list[float] = []
        for future, task in running.items():
            if task.timeout_s is None:
                continue
            begun = started_s.get(token_of[future])
            left_s = START_POLL_S if begun is None else begun + task.timeout_s - time.monotonic()
            waits.append(left_s)
        return max(0.0, min(waits)) if waits else None

    def _settle(
        self, future: Future[object], task: Task, attempt: int, queue: list[Task]
    ) -> Outcome | None:
        """The outcome of a finished future (``None``: its worker died and it was requeued)."""
        try:
            value = future.result()
        except BrokenProcessPool:
            return self._lost(task, attempt, queue)
        except Exception as err:
            return Outcome(task.key, None, describe_error(err), attempt, task.params)
        return Outcome(task.key, value, None, attempt, task.params)

    def _time_out(
        self,
        expired: list[Future[object]],
        running: dict[Future[object], Task],
        attempts: dict[str, int],
        queue: list[Task],
    ) -> Iterator[Outcome]:
        """Report the expired tasks; take or requeue (uncharged) every other running one."""
        for future in expired:
            task = running.pop(future)
            yield timed_out_outcome(task, attempts[task.key])
        for future, task in list(running.items()):
            del running[future]
            if future.done() and future.exception() is None:
                # Finished just now: keep its result rather than run it twice.
                yield Outcome(task.key, future.result(), None, attempts[task.key], task.params)
                continue
            if future.done() and not isinstance(future.exception(), BrokenProcessPool):
                outcome = self._settle(future, task, attempts[task.key], queue)
                assert outcome is not None
                yield outcome
                continue
            # Stopped only because the pool is restarted: not an attempt of its own.
            attempts[task.key] -= 1
            queue.append(task)

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
