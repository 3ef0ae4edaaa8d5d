"""Choosing an engine from the command line: ``--ray [ADDRESS]`` and ``--workers``."""

from __future__ import annotations

import argparse

from core.executor.base import DEFAULT_MAX_ATTEMPTS, Executor, ExecutorError
from core.executor.local import LocalExecutor
from core.threads import cpus_per_network, warn_if_oversubscribed

RAY_HELP = (
    "Run tasks on a Ray cluster instead of local processes (pip install -e '.[cluster]'): "
    "'auto' joins the cluster this machine belongs to (after `ray start`), HOST:PORT a head "
    "node's address (its GCS port, 6379 by default), 'local' a private one-machine Ray. "
    "Results are the same as with local processes (docs/cluster.md)."
)


def parse_ray_address(text: str) -> str:
    """Check a ``--ray`` value: ``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``.

    Raises:
        argparse.ArgumentTypeError: Anything else.
    """
    if text in ("auto", "local"):
        return text
    body = text.removeprefix("ray://")
    host, sep, port = body.rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        return text
    raise argparse.ArgumentTypeError(
        f"Expected 'auto', 'local', HOST:PORT or ray://HOST:PORT, actual {text!r}"
    )


def add_executor_arguments(parser: argparse._ActionsContainer) -> None:
    """Add ``--ray`` to a command's parser (``--workers`` is each command's own)."""
    parser.add_argument(
        "--ray", type=parse_ray_address, default=None, metavar="ADDRESS", help=RAY_HELP
    )


def make_executor(
    ray: str | None,
    workers: int = 1,
    start_method: str = "spawn",
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    threads: int | str = 1,
) -> Executor:
    """The local pool (``ray is None``) or the Ray engine at address ``ray``.

    Args:
        ray: ``None`` or a ``--ray`` value.
        workers: Local processes (or CPUs of a ``--ray local`` instance).
        start_method: Local start method.
        max_attempts: Starts of a task whose worker or node is lost.
        threads: Each task's network's ``--threads``: the local pool warns when ``workers``
            of them exceed the cores (:func:`core.threads.warn_if_oversubscribed`), Ray
            reserves :func:`core.threads.cpus_per_network` CPUs for each task.

    Raises:
        ExecutorError: Ray is not installed or no cluster answers at ``ray``.
    """
    if ray is None:
        warn_if_oversubscribed(threads, workers)
        return LocalExecutor(workers, start_method, max_attempts)
    from core.executor.ray_engine import RayExecutor

    cpus = cpus_per_network(threads)
    local_cpus = workers * cpus if ray == "local" else None  # workers tasks at once
    return RayExecutor(ray, max_attempts, local_cpus, cpus)


__all__ = ["ExecutorError", "add_executor_arguments", "make_executor", "parse_ray_address"]
