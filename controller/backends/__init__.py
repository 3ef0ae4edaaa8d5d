"""Backends by name, imported lazily: ``sim``, ``serial``, ``replay``.

Each name maps to ``(module, function)``; the function takes a :class:`BackendRequest` and
returns an :class:`OpenedBackend` holding a
:class:`~controller.backends.base.BackendConnection`. A backend whose module is not installed
(or not written yet) fails with :class:`~core.errors.BackendUnavailableError` naming what is
missing, never with a traceback. Any backend that speaks the protocol can be used with ``connect``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.backends.base import BackendConnection, BackendInfo, BackendObservation
from core.errors import BackendUnavailableError, ConfigError

#: Backend name → (module, factory function), imported on first use.
BACKENDS: dict[str, tuple[str, str]] = {
    "sim": ("controller.backends.local", "open_sim"),
    "serial": ("controller.backends.local", "open_serial"),
    "replay": ("controller.backends.local", "open_replay"),
}


@dataclass(frozen=True)
class BackendRequest:
    """Everything a backend factory may need.

    Args:
        name: Registry name.
        connect: Address of a running backend, or ``None`` to start a local one.
        in_process: Run the simulator inside this process (no server; tests and benchmarks).
        options: Backend ``configure`` options (``[backend.options]`` of the config file).
        simulator: Network parameters for the simulator (``[simulator]`` of the config file).
        seed: Default seed.
        timeout_s: Handshake deadline.
        session: A recording to serve (``replay`` without ``connect``).
        pace: The loop's pace; a served replay follows it (``realtime`` → recorded pace).
        log_format: Log format of a local server process (the controller's own).
        log_level: Lowest log level of a local server process (the controller's own).
        threads: Threads that integrate the network of a simulator started here (in-process
            or a local server; :mod:`core.threads`).
    """

    name: str
    connect: str | None = None
    in_process: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    simulator: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    timeout_s: float = 5.0
    session: str | None = None
    pace: str = "realtime"
    log_format: str = "console"
    log_level: str = "info"
    threads: int | str = 1


@dataclass
class OpenedBackend:
    """A connection to a backend plus whatever must be cleaned up after it (a server process …)."""

    backend: BackendConnection
    description: str
    cleanup: Callable[[], None] = lambda: None

    def close(self) -> None:
        """Close the session, then clean up (idempotent, never raises)."""
        try:
            self.backend.close()
        finally:
            cleanup, self.cleanup = self.cleanup, lambda: None
            cleanup()


def open_backend(request: BackendRequest) -> OpenedBackend:
    """Open the backend ``request.name``.

    Raises:
        ConfigError: Unknown backend name.
        BackendUnavailableError: The backend cannot be started or reached.
    """
    if request.name not in BACKENDS:
        raise ConfigError(f"Expected --backend in {sorted(BACKENDS)}, actual {request.name!r}")
    module_name, attr = BACKENDS[request.name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise BackendUnavailableError(
            f"Expected backend {request.name!r} to be installed, actual missing module {err.name!r}"
        ) from err
    factory: Callable[[BackendRequest], OpenedBackend] = getattr(module, attr)
    return factory(request)


__all__ = [
    "BACKENDS",
    "BackendConnection",
    "BackendInfo",
    "BackendObservation",
    "BackendRequest",
    "OpenedBackend",
    "open_backend",
]
