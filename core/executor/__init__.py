"""One interface to run independent tasks on a local process pool or on a Ray cluster.

A job is a list of :class:`Task` (an importable function, its arguments and a unique key). An
:class:`Executor` runs them and yields exactly one :class:`Outcome` per task, in the order they
finish. Two engines implement it:

* :class:`LocalExecutor` (the default): a pool of worker processes on this machine;
* :class:`RayExecutor`: tasks on a Ray cluster (``ray`` is imported only when it is chosen).

Both retry a task whose worker process (or, on Ray, whose node) is lost, up to
``max_attempts`` times, and report a task whose own code raises, with its parameters and error,
without stopping the others. Results depend only on a task's arguments, so a job gives the same
numbers on either engine.
"""

from core.executor.base import (
    Executor,
    ExecutorError,
    Outcome,
    Task,
    run_ordered,
)
from core.executor.factory import add_executor_arguments, make_executor, parse_ray_address
from core.executor.local import LocalExecutor

__all__ = [
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "Outcome",
    "Task",
    "add_executor_arguments",
    "make_executor",
    "parse_ray_address",
    "run_ordered",
]
