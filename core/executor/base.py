"""What every engine shares: tasks, outcomes and the executor interface."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from core.errors import NeuroLoopError
from core.logs import configure_worker

#: Tries of a task whose worker (or node) is lost before it is reported as failed.
DEFAULT_MAX_ATTEMPTS = 3
#: Longest error text kept in an outcome.
MAX_ERROR_CHARS = 2000


class ExecutorError(NeuroLoopError):
    """An engine cannot start, or a job's tasks are malformed."""


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Args:
        key: Unique within a job; names the task in outcomes and logs.
        fn: A module-level (importable) function; it runs in another process.
        args: Its positional arguments (picklable).
        params: What the task computes, for people: reported with its error if it fails.
        timeout_s: Longest run of one attempt, counted from when the task is handed to a
            worker (``None``: no limit). A task that runs longer is stopped, its worker
            replaced, and it is reported failed with ``timed_out=True`` (not started again).
        setup: A module-level function called with no arguments in the worker just before
            ``fn`` (e.g. one that builds and caches what ``fn`` needs); on the local engine its
            time is not counted against ``timeout_s``. Picklable (``functools.partial`` is).
    """

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    setup: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ExecutorError(
                f"Expected a task timeout_s > 0 or None, actual {self.timeout_s!r} "
                f"(task {self.key!r})"
            )


@dataclass(frozen=True)
class Outcome:
    """What became of one task.

    Args:
        key: The task's key.
        value: The function's return value (``None`` when it failed).
        error: ``None`` on success, else ``"ExceptionType: message"`` (or why it was lost).
        attempts: Times the task was started (more than one after a lost worker or node).
        params: The task's ``params``.
        lost: The task failed because its workers kept dying, not because its code raised.
        timed_out: The task failed because it ran longer than its ``timeout_s``.
    """

    key: str
    value: Any
    error: str | None
    attempts: int
    params: Mapping[str, Any] = field(default_factory=dict)
    lost: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the task returned a value."""
        return self.error is None


def describe_error(err: BaseException) -> str:
    """``"Type: message"``, clipped to :data:`MAX_ERROR_CHARS`."""
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def timeout_error(timeout_s: float) -> str:
    """The error text of a task that ran longer than ``timeout_s``."""
    return f"timed out after {timeout_s:g} s"


def timed_out_outcome(task: Task, attempts: int) -> Outcome:
    """The outcome of ``task`` once it ran past its ``timeout_s`` (logged; never run again)."""
    assert task.timeout_s is not None
    structlog.get_logger().warning("task_timeout", task=task.key, timeout_s=task.timeout_s)
    return Outcome(
        task.key, None, timeout_error(task.timeout_s), attempts, task.params, timed_out=True
    )


def check_tasks(tasks: Sequence[Task]) -> None:
    """Refuse duplicate keys (an outcome must name exactly one task).

    Raises:
        ExecutorError: Two tasks share a key.
    """
    seen: set[str] = set()
    for task in tasks:
        if task.key in seen:
            raise ExecutorError(f"Expected unique task keys, actual {task.key!r} twice")
        seen.add(task.key)


def call_task(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    logging: tuple[Any, str] | None = None,
    setup: Callable[[], Any] | None = None,
) -> Any:
    """Run ``setup()`` then ``fn(*args)`` (the function every engine ships to its workers).

    Args:
        fn: The task's function.
        args: Its arguments.
        logging: The parent's ``core.logs.current_settings()``: the worker logs the same way,
            on stderr.
        setup: The task's ``setup``.
    """
    configure_worker(logging)
    if setup is not None:
        setup()
    return fn(*args)


class Executor(abc.ABC):
    """Runs tasks somewhere and yields one outcome per task, in the order they finish.

    Use as a context manager, or call :meth:`close`. An executor may run several jobs in turn.
    """

    #: ``local`` or ``ray``.
    engine: str = ""

    @property
    @abc.abstractmethod
    def workers(self) -> int:
        """Tasks that can run at once (processes, or CPUs of the cluster)."""

    @abc.abstractmethod
    def run(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        """Run ``tasks``; yield exactly one :class:`Outcome` per task as each finishes.

        A task whose code raises is reported at once (the code is deterministic: it would raise
        again). A task whose worker process or node is lost is started again, elsewhere when the
        engine can, up to ``max_attempts`` times, then reported with ``lost=True``. A task that
        runs longer than its ``timeout_s`` is stopped and reported with ``timed_out=True``;
        other tasks are not charged an attempt for it and each is still reported once.

        Raises:
            ExecutorError: Duplicate keys.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release workers (idempotent)."""

    def describe(self) -> dict[str, Any]:
        """Engine and size, for the records a job writes."""
        return {"engine": self.engine, "workers": self.workers}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_ordered(executor: Executor, tasks: Sequence[Task]) -> list[Outcome]:
    """Run a job and return its outcomes in the order of ``tasks``."""
    by_key = {o.key: o for o in executor.run(tasks)}
    return [by_key[t.key] for t in tasks]
