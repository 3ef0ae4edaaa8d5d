"""Compile every Numba kernel a session uses before the real-time clock starts, and say so.

Numba compiles a kernel the first time it is called with new argument types and caches the
machine code on disk (``__pycache__`` or ``NUMBA_CACHE_DIR``). On a fresh install the
simulator's kernels take tens of seconds to compile, so the server compiles them all
(:func:`warm_up`) before it reports ready, logging each kernel as it starts and finishes.
:class:`CompileWatch` stays installed afterwards and logs a warning naming any kernel that
still compiles during a session (a kernel variant the warm-up missed), so such a regression
is visible instead of a silently late step.

:func:`warm_up_network` is the one warm-up every entry point uses: the server and the
in-process backend (through :func:`warm_up`), ``neuroloop-sim run`` for its experiment's
network, and the device emulator for its tissue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from numba.core import event

from core.threads import AUTO, usable_cores
from simulator.config import CHUNK_MS, NetworkConfig
from simulator.network import Network
from simulator.stimulus import Stimulus

#: Packages whose kernels are reported (Numba's own helpers compile inside them).
OWN_PACKAGES = ("simulator", "controller", "drivers")
_KIND = "numba:compile"
#: Smallest population scale a session may ask for (the server's ``n_scale`` range).
N_SCALE_MIN = 0.005


def _function_name(ev: event.Event) -> tuple[str, str]:
    data: Any = ev.data or {}
    dispatcher = data.get("dispatcher") if isinstance(data, dict) else None
    func = getattr(dispatcher, "py_func", None)
    if func is None:
        return "", "?"
    return str(getattr(func, "__module__", "")), str(getattr(func, "__qualname__", "?"))


@dataclass
class CompileWatch(event.Listener):  # type: ignore[misc]  # Numba's base class is untyped
    """Logs our kernels' compilations: progress during the warm-up, a warning afterwards.

    During the warm-up each top-level kernel is announced when its compilation starts and
    when it ends; the kernels it calls are reported as they finish (``compiled_part``), so a
    compilation of a minute still shows progress.

    Attributes:
        phase: ``warm-up`` (progress at info level) or ``session`` (a warning: the kernel
            compiled while a controller was waiting for a step).
        compiled: ``module.function`` of every top-level kernel compiled so far.
    """

    phase: str = "warm-up"
    compiled: list[str] = field(default_factory=list)
    _depth: int = 0
    _started_s: list[float] = field(default_factory=list)
    _outer: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._log = structlog.get_logger("simulator.warmup")

    def on_start(self, ev: event.Event) -> None:
        """A compilation began (nested ones are part of the outer kernel)."""
        with self._lock:
            self._depth += 1
            self._started_s.append(time.perf_counter())
            if self._depth != 1:
                return
        module, name = _function_name(ev)
        self._outer = name
        if module.startswith(OWN_PACKAGES) and self.phase == "warm-up":
            self._log.info("compiling", kernel=name, done=len(self.compiled))

    def on_end(self, ev: event.Event) -> None:
        """A compilation ended; report it if it was one of our top-level kernels."""
        with self._lock:
            self._depth = max(0, self._depth - 1)
            started = self._started_s.pop() if self._started_s else time.perf_counter()
            nested = self._depth != 0
        module, name = _function_name(ev)
        if not module.startswith(OWN_PACKAGES):
            return
        seconds = round(time.perf_counter() - started, 2)
        if nested:
            # A kernel compiled as part of a bigger one: progress inside a long compilation.
            if self.phase == "warm-up":
                self._log.info("compiled_part", kernel=name, within=self._outer, seconds=seconds)
            return
        self.compiled.append(f"{module}.{name}")
        if self.phase == "warm-up":
            self._log.info("compiled", kernel=name, seconds=seconds, done=len(self.compiled))
        else:
            self._log.warning(
                "compiled_during_session",
                kernel=f"{module}.{name}",
                seconds=seconds,
                detail="Expected every kernel compiled by the warm-up before the server was "
                "ready, actual this one compiled while a step waited; add its variant to "
                "simulator.warmup",
            )

    def install(self) -> CompileWatch:
        """Start listening (idempotent per instance)."""
        event.register(_KIND, self)  # type: ignore[no-untyped-call]
        return self

    def uninstall(self) -> None:
        """Stop listening."""
        event.unregister(_KIND, self)  # type: ignore[no-untyped-call]


@contextmanager
def watching(phase: str = "warm-up") -> Iterator[CompileWatch]:
    """A :class:`CompileWatch` installed for the ``with`` block."""
    watch = CompileWatch(phase).install()
    try:
        yield watch
    finally:
        watch.uninstall()


def tiny(config: NetworkConfig) -> NetworkConfig:
    """``config`` with 8 E and 2 I cells: the same kernels, compiled in milliseconds of run."""
    return config.replace(n_e=8, n_i=2)


def warm_up_network(
    config: NetworkConfig,
    stimulus: Stimulus | None = None,
    network_factory: Callable[[NetworkConfig], Network] = Network,
    threads: int | str = 1,
) -> float:
    """Compile the kernels a network of ``config`` runs; return the seconds it took.

    Runs what a session does, on a network of ``config`` (pass :func:`tiny` of the real one):
    reset, one window off, two on (at a fifth of the amplitude, then at all of it, as the
    envelope ramps), one off again, with every window's observation computed. Quiet: wrap it
    in :func:`watching` to log each compilation.

    Args:
        config: The network to compile for (its semantics and variant pick the kernels).
        stimulus: The pulse train's shape (default ``Stimulus(100.0)``, the paper's FTSTS).
        network_factory: Builds a network from a config.
        threads: Kernel threads (above one, or ``"auto"`` on more than one core, the threaded
            kernel is compiled too).
    """
    shape = stimulus if stimulus is not None else Stimulus(100.0)
    t0 = time.perf_counter()
    # auto runs any call on one thread or on all cores: compile what both run
    counts = sorted({1, usable_cores()}) if threads == AUTO else [threads]
    for count in counts:
        net = network_factory(config)
        if count != 1:
            net.threads = count
        net.reset(seed=0)
        for amplitude_mv in (0.0, shape.amplitude_mv / 5.0, shape.amplitude_mv, 0.0):
            on = replace(shape, amplitude_mv=amplitude_mv) if amplitude_mv > 0.0 else None
            net.advance(on, CHUNK_MS).observation()
    return time.perf_counter() - t0


def warm_up(
    network_factory: Callable[[NetworkConfig], Network] = Network, threads: int | str = 1
) -> float:
    """Compile every kernel a served session uses; log progress; return the seconds it took.

    Runs :func:`warm_up_network` on tiny networks (so it costs milliseconds once the kernels
    are cached): the default network in paper semantics with its stimulus noise and a plain
    network in clean semantics.

    Args:
        network_factory: Builds a network from a config (the server's factory).
        threads: The server's kernel threads (above one, or ``"auto"``, the threaded kernel is
            compiled too).
    """
    from simulator.experiments import DEFAULT_NETWORK, EXPERIMENTS

    log = structlog.get_logger("simulator.warmup")
    log.info(
        "simulator_compiling",
        detail="compiling the simulator's Numba kernels before the server is ready: tens of "
        "seconds on the first run after an install or upgrade, cached afterwards",
    )
    t0 = time.perf_counter()
    configs = (
        EXPERIMENTS[DEFAULT_NETWORK].network_config("paper", N_SCALE_MIN),
        NetworkConfig(n_e=8, n_i=2, semantics="clean"),
    )
    with watching("warm-up") as watch:
        for config in configs:
            warm_up_network(config, network_factory=network_factory, threads=threads)
    elapsed = time.perf_counter() - t0
    log.info("simulator_warmed_up", seconds=round(elapsed, 2), kernels_compiled=len(watch.compiled))
    return elapsed
