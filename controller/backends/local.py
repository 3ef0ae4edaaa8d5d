"""Factories of the registry: connect to a running backend or start a local one.

``sim`` without an address starts ``python -m simulator.server`` on a private ipc socket and
stops it at exit (the embedded default); ``in_process`` runs the network in this process.
``serial`` and ``replay`` accept ``connect`` (any backend speaking the protocol, e.g. the device
driver service); starting them locally is provided by their own packages once they exist.
"""

from __future__ import annotations

import importlib.util
import sys

import structlog

from controller.backends import BackendRequest, OpenedBackend
from controller.backends.zmq import ZmqConnection
from core.errors import BackendUnavailableError, ConfigError

#: Module run as the local simulator server.
SIM_SERVER_MODULE = "simulator.server"
#: Module run as the local replay server.
REPLAY_SERVER_MODULE = "controller.replay_cli"
#: Longest wait for a local server's ready line: on a fresh install the simulator compiles
#: its kernels first (tens of seconds, minutes on a busy 2-core host), announcing each one.
SERVER_READY_TIMEOUT_S = 600.0


def _log_args(request: BackendRequest) -> list[str]:
    """The controller's log format and level, for a server it starts."""
    return ["--log-format", request.log_format, "--log-level", request.log_level]


def _connect(request: BackendRequest, address: str) -> OpenedBackend:
    connection = ZmqConnection(address, timeout_s=request.timeout_s, options=request.options)
    return OpenedBackend(connection, f"{request.name} at {address}")


def _serve_locally(
    request: BackendRequest, argv: list[str], what: str, description: str | None = None
) -> OpenedBackend:
    """Start ``argv`` as a local server on a private ipc socket, connect, stop it at close.

    Args:
        request: The backend request (its log format and level go to the server).
        argv: The server command line (without the log arguments).
        what: Short name for the log lines and the description (``sim``, ``replay``).
        description: Description of the opened backend, ``{pid}`` filled in (default: the
            server's pid and address).
    """
    from protocol.process import spawn_local_backend

    log = structlog.get_logger("controller.backends")
    proc = spawn_local_backend(argv, "ipc", SERVER_READY_TIMEOUT_S, extra_args=_log_args(request))
    log.info(f"{what}_server_started", pid=proc.pid, address=proc.address)
    try:
        opened = _connect(request, proc.address)
    except BaseException:
        proc.stop()
        raise

    def stop_server() -> None:
        proc.stop()

    opened.cleanup = stop_server
    opened.description = (
        description.format(pid=proc.pid)
        if description is not None
        else f"{what} server pid {proc.pid} at {proc.address}"
    )
    return opened


def open_sim(request: BackendRequest) -> OpenedBackend:
    """The simulator: connected, in-process, or a local server process."""
    if request.connect is not None:
        if request.in_process:
            raise ConfigError("Expected either --connect or --in-process, actual both")
        return _connect(request, request.connect)
    if request.in_process:
        from controller.backends.inprocess import InProcessConnection
        from simulator.experiments import default_network_config

        # The same network a local server simulates by default (the paper's Fig 3 network),
        # with the [simulator] table's changes on top.
        config = default_network_config().replace(**dict(request.simulator))
        connection = InProcessConnection.simulator(
            config, seed=request.seed, threads=request.threads
        )
        return OpenedBackend(connection, "sim in-process")
    if importlib.util.find_spec(SIM_SERVER_MODULE) is None:
        raise BackendUnavailableError(
            f"Expected the simulator server module {SIM_SERVER_MODULE!r}, actual not installed; "
            "use --in-process or --connect ADDR"
        )
    structlog.get_logger("controller.backends").info(
        "sim_server_starting",
        detail="starting the simulator server; it compiles its kernels first if they are not "
        "cached yet, and the run starts once it is ready",
    )
    argv = [sys.executable, "-m", SIM_SERVER_MODULE, "--threads", str(request.threads)]
    return _serve_locally(request, argv, "sim")


def open_serial(request: BackendRequest) -> OpenedBackend:
    """A stimulator through a running device service (``neuroloop-driver``)."""
    if request.connect is None:
        raise BackendUnavailableError(
            "Expected --connect ADDR of a running device service for --backend serial, actual "
            "none; start it with 'neuroloop-driver' (serial device or emulator) and pass its "
            "address"
        )
    if request.in_process:
        raise ConfigError("Expected no --in-process with --backend serial, actual --in-process")
    return _connect(request, request.connect)


def open_replay(request: BackendRequest) -> OpenedBackend:
    """A recorded session: ``neuroloop-replay serve SESSION`` started here, or one running."""
    if request.in_process:
        raise ConfigError("Expected no --in-process with --backend replay, actual --in-process")
    if request.connect is not None:
        return _connect(request, request.connect)
    if request.session is None:
        raise BackendUnavailableError(
            "Expected --backend replay SESSION or --connect ADDR of a running replay backend "
            "('neuroloop-replay serve SESSION'), actual neither"
        )
    pace = "fast" if request.pace == "fast" else "recorded"
    argv = [sys.executable, "-m", REPLAY_SERVER_MODULE, "serve", request.session, "--pace", pace]
    return _serve_locally(request, argv, "replay", f"replay of {request.session} (pid {{pid}})")
