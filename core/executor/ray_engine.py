"""Tasks on a Ray cluster (``pip install 'neuroloop[cluster]'``; imported only when chosen)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

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
    timed_out_outcome,
)
from core.logs import current_settings

log = structlog.get_logger()

#: ``--ray local``: start a private single-machine Ray instance for this process.
LOCAL_ADDRESS = "local"
#: Longest wait for any one result before the driver checks the cluster again (s).
POLL_S = 5.0
#: A job gives up when the cluster has had no CPU for this long (s): every node is gone.
NO_CPU_GRACE_S = 120.0


def import_ray() -> Any:
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError as err:
        raise ExecutorError(
            "Expected the Ray engine to be installed for --ray, actual: import ray failed "
            f"({err}); install it with pip install -e '.[cluster]'"
        ) from None
    return ray


def connect(address: str, workers: int | None = None) -> Any:
    """Join the Ray cluster at ``address`` (once per process) and return ``ray``.

    Args:
        address: ``auto`` (the cluster this machine belongs to, or ``RAY_ADDRESS``),
            ``HOST:PORT`` of a head node, ``ray://HOST:PORT`` (Ray client), or ``local``
            (a private instance with ``workers`` CPUs, for trying things out).
        workers: CPUs of a ``local`` instance (default: all).
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address not in ("auto", LOCAL_ADDRESS):
        _check_reachable(address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address == LOCAL_ADDRESS:
        kwargs.update(num_cpus=workers, include_dashboard=False)
        target = None
    else:
        target = address
    # Workers import our packages by module name: hand them this driver's search path.
    path = os.environ.get("PYTHONPATH")
    if path and address == LOCAL_ADDRESS:
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    try:
        ray.init(address=target, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ExecutorError(
            f"Expected a Ray cluster at {address!r} (start one with `ray start --head`), "
            f"actual: {err}"
        ) from None
    log.info("ray_connected", address=address, resources=ray.cluster_resources())
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (Ray itself waits minutes) when nothing listens at ``HOST:PORT``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as err:
        raise ExecutorError(
            f"Expected a Ray head node listening at {address!r} (start one with "
            f"`ray start --head`), actual: {err}"
        ) from None


def require_node_cpus(ray: Any, cpus: int, what: str) -> None:
    """Fail unless some node of the cluster has ``cpus`` CPUs (Ray would wait for ever).

    Args:
        ray: The joined ``ray`` module.
        cpus: CPUs one task or actor reserves.
        what: What reserves them, for the message.

    Raises:
        ExecutorError: No node alive has that many CPUs.
    """
    sizes = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]
    largest = max(sizes, default=0.0)
    if largest < cpus:
        raise ExecutorError(
            f"Expected a node with at least {cpus} CPUs for {what}, actual at most {largest:g} "
            "per node; lower --threads or add larger nodes"
        )


class RayExecutor(Executor):
    """Tasks as Ray remote functions, ``cpus_per_task`` CPUs each (default one).

    Ray itself does not retry here (``max_retries=0``): the driver starts a task again when its
    worker or node is lost, so attempts are counted the same way as on the local pool, and each
    task's result is taken exactly once. A task past its ``timeout_s`` is force-cancelled
    (``ray.cancel(force=True)`` kills its worker process) and reported timed out.

    Args:
        address: See :func:`connect`.
        max_attempts: Starts of a task whose worker or node is lost before it is reported.
        workers: CPUs of a ``local`` instance.
        cpus_per_task: CPUs Ray reserves for each task.
    """

    engine = "ray"

    def __init__(
        self,
        address: str = "auto",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        workers: int | None = None,
        cpus_per_task: int = 1,
    ) -> None:
        if max_attempts < 1:
            raise ExecutorError(f"Expected max_attempts >= 1, actual {max_attempts}")
        if cpus_per_task < 1:
            raise ExecutorError(f"Expected cpus_per_task >= 1, actual {cpus_per_task}")
        self.address = address
        self.max_attempts = max_attempts
        self.cpus_per_task = cpus_per_task
        self._ray = connect(address, workers)
        require_node_cpus(self._ray, cpus_per_task, f"tasks of {cpus_per_task} CPUs (--threads)")
        self._remote = self._ray.remote(num_cpus=cpus_per_task, max_retries=0)(call_task)

    @property
    def workers(self) -> int:
        """CPUs of the cluster now."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def describe(self) -> dict[str, Any]:
        """Engine, address, CPUs and nodes alive."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        return {
            "engine": self.engine,
            "address": self.address,
            "workers": self.workers,
            "cpus_per_task": self.cpus_per_task,
            "nodes": len(nodes),
        }

    def run(self, tasks: Sequence[Task]) -> Iterator[Outcome]:
        """Run ``tasks`` (see :meth:`Executor.run`)."""
        ray = self._ray
        from ray import exceptions as rx

        lost_errors = (
            rx.WorkerCrashedError,
            rx.NodeDiedError,
            rx.ObjectLostError,
            rx.OwnerDiedError,
            rx.TaskUnschedulableError,
            rx.LocalRayletDiedError,
        )
        check_tasks(tasks)
        attempts = {t.key: 0 for t in tasks}
        pending: dict[Any, Task] = {}
        started_s: dict[Any, float] = {}
        queue = list(reversed(tasks))
        # A timeout counts from submission, so with timeouts only as many tasks as the cluster
        # has CPUs are submitted at a time (none waits in Ray's queue on its own clock).
        timed = any(t.timeout_s is not None for t in tasks)

        def submit(task: Task) -> None:
            attempts[task.key] += 1
            ref = self._remote.remote(task.fn, task.args, current_settings(), task.setup)
            pending[ref] = task
            started_s[ref] = time.monotonic()

        no_cpu_since: float | None = None
        while pending or queue:
            limit = self.workers if timed else len(tasks)
            while queue and len(pending) < limit:
                submit(queue.pop())
            ready, _ = ray.wait(
                list(pending), num_returns=1, timeout=self._wait_s(pending, started_s)
            )
            if not ready:
                if ray.cluster_resources().get("CPU", 0.0) > 0:
                    no_cpu_since = None
                elif no_cpu_since is None:
                    no_cpu_since = time.monotonic()
                elif time.monotonic() - no_cpu_since > NO_CPU_GRACE_S:
                    raise ExecutorError(
                        f"Expected CPUs in the Ray cluster at {self.address!r}, actual none for "
                        f"{NO_CPU_GRACE_S:.0f} s with {len(pending)} tasks left (every node lost?)"
                    )
            for ref in ready:
                task = pending.pop(ref)
                del started_s[ref]
                try:
                    value = ray.get(ref)
                except rx.RayTaskError as err:
                    if isinstance(err, lost_errors):
                        yield from self._retry(task, attempts[task.key], err, submit)
                        continue
                    cause = err.cause if err.cause is not None else err
                    yield Outcome(
                        task.key, None, describe_error(cause), attempts[task.key], task.params
                    )
                    continue
                except lost_errors as err:
                    yield from self._retry(task, attempts[task.key], err, submit)
                    continue
                yield Outcome(task.key, value, None, attempts[task.key], task.params)
            for ref, task in list(pending.items()):
                if task.timeout_s is None or time.monotonic() - started_s[ref] < task.timeout_s:
                    continue
                # Force-cancelling kills the task's worker process; Ray starts another.
                ray.cancel(ref, force=True)
                del pending[ref]
                del started_s[ref]
                yield timed_out_outcome(task, attempts[task.key])

    @staticmethod
    def _wait_s(pending: dict[Any, Task], started_s: dict[Any, float]) -> float:
        deadlines = [started_s[r] + t.timeout_s for r, t in pending.items() if t.timeout_s]
        if not deadlines:
            return POLL_S
        return max(0.0, min(POLL_S, min(deadlines) - time.monotonic()))

    def _retry(
        self, task: Task, attempt: int, err: BaseException, submit: Any
    ) -> Iterator[Outcome]:
        log.warning("ray_task_lost", task=task.key, attempt=attempt, reason=type(err).__name__)
        if attempt < self.max_attempts:
            submit(task)
            return
        yield Outcome(
            task.key,
            None,
            f"lost on each of {attempt} attempts, last: {describe_error(err)}",
            attempt,
            task.params,
            lost=True,
        )

    def close(self) -> None:
        """Leave the cluster's tasks alone; the connection closes with the process."""
