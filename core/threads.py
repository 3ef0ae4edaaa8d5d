"""``--threads``: how many threads integrate each network, for every command that simulates.

Like ``--workers`` (:mod:`core.executor.factory`), it lives in ``core`` so that every command can
offer it without importing the simulator before it runs.

One definition for every command that runs the FTSTS network (``neuroloop-sim run`` and
``serve``, ``neuroloop-controller --backend sim``, ``neuroloop-train``, ``neuroloop-eval``,
``neuroloop-sweep``, ``neuroloop-device-emulator``): an integer ≥ 1, or ``auto`` (each kernel
call on one thread or on all cores, whichever the network has measured faster:
:class:`simulator.thread_choice.ThreadChoice`). The thread count is a speed setting: every
count gives the same bits (:mod:`simulator.threaded`), so it is never part of a result's
identity.

The default is one thread everywhere. Where several workers run at once (``--workers``,
``--n-envs``) each worker's network gets ``--threads`` threads, so workers × threads should
not exceed the cores (:func:`warn_if_oversubscribed`): threads that take turns on a core wait
for each other at every barrier and run slower than one thread (``docs/simulator.md#threads``).
"""

from __future__ import annotations

import argparse
import numbers
import os
from typing import Any

import structlog

from core.errors import ConfigError

#: What ``--threads`` takes: an integer ≥ 1, or this word
AUTO = "auto"
#: The default of every command
DEFAULT_THREADS = 1
#: Most threads one network may be given (a plan per thread; far more than any gain)
MAX_THREADS = 256


def usable_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_threads(value: object, what: str = "threads") -> int | str:
    """``value`` as a thread count (an integer in [1, 256], NumPy's too, or ``"auto"``, any case).

    Raises:
        ConfigError: Anything else, naming ``what``, the expected and the actual value.
    """
    if isinstance(value, str) and value.lower() == AUTO:
        return AUTO
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        count = int(value)
        if 1 <= count <= MAX_THREADS:
            return count
    raise ConfigError(
        f"Expected {what} to be an integer in [1, {MAX_THREADS}] or 'auto', actual {value!r}"
    )


def parse_threads(text: str) -> int | str:
    """The ``type`` of ``--threads`` for argparse (a clear message on bad input)."""
    try:
        return check_threads(AUTO if text.lower() == AUTO else int(text), "--threads")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"expected an integer in [1, {MAX_THREADS}] or 'auto', actual {text!r}"
        ) from None


def add_threads_option(
    parser: Any, *, per_worker: bool = False, default: int | None = DEFAULT_THREADS, note: str = ""
) -> None:
    """Add ``--threads N|auto`` to ``parser`` (an ``ArgumentParser`` or an argument group).

    Args:
        parser: Where the option goes.
        per_worker: The command runs several networks at once (its help says that each
            worker's network gets this many threads).
        default: The option's value when not given (``None``: a configuration file may set it;
            the command then uses :data:`DEFAULT_THREADS`).
        note: Said after the help's first clause (which networks it applies to).
    """
    scope = "each worker's network" if per_worker else "the network"
    parser.add_argument(
        "--threads", type=parse_threads, default=default, metavar="N|auto",
        help=f"threads that integrate {scope}{note} (default {DEFAULT_THREADS}; auto: one or "
        "all cores, whichever the run measures faster as it goes); every N gives the same "
        "results; more threads than free cores are slower (docs/simulator.md#threads)",
    )  # fmt: skip


def cpus_per_network(threads: int | str) -> int:
    """The CPUs to reserve for one network of ``threads`` threads on a cluster (Ray).

    ``auto`` reserves one: it runs on one thread wherever the cores are busy (it measures).
    """
    return 1 if threads == AUTO else int(threads)


def warn_if_oversubscribed(threads: int | str, workers: int) -> bool:
    """Log a warning when ``workers`` networks of ``threads`` threads exceed this machine's cores.

    For the local pool and single runs (a Ray cluster reserves :func:`cpus_per_network` per
    worker instead). ``auto`` counts as all cores once it has chosen them. Returns whether it
    warned.
    """
    cores = usable_cores()
    per_worker = cores if threads == AUTO else int(threads)
    if per_worker * workers <= cores:
        return False
    structlog.get_logger("core.threads").warning(
        "threads_oversubscribed",
        threads=threads,
        workers=workers,
        cores=cores,
        detail="more threads than cores: a network's threads take turns on a core and wait for "
        "each other at every barrier, slower than one thread each; use --threads 1 with "
        "several workers",
    )
    return True
