"""Start a backend in a subprocess, wait until it listens, and stop it reliably.

The backend prints ``NEUROLOOP_READY <endpoint>`` on stdout once bound (see
:mod:`protocol.serve_cli`); :func:`spawn_backend` waits for that line (never longer than
``ready_timeout_s``) and returns a :class:`BackendProcess` whose :meth:`~BackendProcess.stop`
sends SIGTERM, waits, then SIGKILLs if it must. Typical use by the controller::

    with spawn_local_backend([sys.executable, "-m", "simulator.server"], "ipc") as proc:
        client = BackendClient(proc.address)
        ...
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

import structlog

from core.errors import BackendUnavailableError, ConfigError
from protocol.lifeline import IPC_DIR_ENV, OWNER_FILE, PARENT_PID_ENV, pid_alive, remove_ipc_dir
from protocol.serve_cli import READY_PREFIX

Transport = Literal["ipc", "tcp"]
#: Name prefix of the private folder of a local ipc backend.
IPC_DIR_PREFIX = "neuroloop-ipc-"
#: The socket's file name in that folder.
IPC_SOCKET_NAME = "backend.sock"


def _drain(stream: IO[bytes]) -> None:
    """Read a child's stdout to its end so it can never block on a full pipe."""
    for _ in iter(lambda: stream.read(4096), b""):
        pass


class BackendProcess:
    """A running backend subprocess.

    Args:
        popen: The process.
        address: The endpoint it reported on its ready line.
        cleanup_dir: A directory to delete after the process exits (the ipc socket's).
    """

    def __init__(
        self, popen: subprocess.Popen[bytes], address: str, cleanup_dir: Path | None = None
    ) -> None:
        self.popen = popen
        self.address = address
        self._cleanup_dir = cleanup_dir
        self._log = structlog.get_logger().bind(component="backend_process", pid=popen.pid)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 5.0) -> int:
        """Stop the backend: SIGTERM, wait ``timeout_s``, then SIGKILL. Idempotent.

        Returns:
            The exit code (negative: killed by that signal).
        """
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._log.warning("backend_killed", reason=f"no exit {timeout_s} s after SIGTERM")
                self.popen.kill()
                self.popen.wait(timeout_s)
        if self._cleanup_dir is not None:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)
            self._cleanup_dir = None
        code = self.popen.returncode
        self._log.info("backend_stopped", exit_code=code)
        return int(code)

    def __enter__(self) -> BackendProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_backend(
    argv: Sequence[str],
    ready_timeout_s: float = 30.0,
    *,
    env: Mapping[str, str] | None = None,
    cleanup_dir: Path | None = None,
    stderr: IO[bytes] | None = None,
) -> BackendProcess:
    """Run ``argv`` and wait for its ready line.

    Args:
        argv: Full command, e.g. ``[sys.executable, "-m", "simulator.server", "--bind", addr]``.
        ready_timeout_s: Longest wait for the ready line (Numba compiles on first start).
        env: Environment of the child (default: this process's).
        cleanup_dir: Directory to delete once the process is stopped.
        stderr: Where the child's log goes (default: this process's stderr).

    Returns:
        The running process with the endpoint it is listening on.

    The child is told this process's id (``NEUROLOOP_PARENT_PID``) and, with ``cleanup_dir``,
    its private ipc folder (``NEUROLOOP_IPC_DIR``): a backend served by
    :func:`protocol.serve_cli.run_backend` stops when this process is gone, even SIGKILLed, and
    then removes its socket and that folder (:mod:`protocol.lifeline`).

    Raises:
        BackendUnavailableError: if the process exits or stays silent past the timeout (it is
            then killed); the message carries the output seen so far.
    """
    child_env = dict(os.environ if env is None else env)
    child_env[PARENT_PID_ENV] = str(os.getpid())
    if cleanup_dir is not None:
        child_env[IPC_DIR_ENV] = str(cleanup_dir)
    else:
        child_env.pop(IPC_DIR_ENV, None)
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=child_env,
    )
    assert popen.stdout is not None
    stdout = popen.stdout
    seen: list[str] = []
    deadline = time.monotonic() + ready_timeout_s
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                reason = f"no '{READY_PREFIX}' line within {ready_timeout_s:g} s"
                break
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                popen.wait(5.0)
                reason = f"the process exited with code {popen.returncode} before it was ready"
                break
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith(READY_PREFIX + " "):
                    address = line[len(READY_PREFIX) + 1 :].strip()
                    threading.Thread(target=_drain, args=(stdout,), daemon=True).start()
                    return BackendProcess(popen, address, cleanup_dir)
                seen.append(line)
    proc = BackendProcess(popen, "", cleanup_dir)
    proc.stop(timeout_s=2.0)
    tail = " | ".join(seen[-5:])
    raise BackendUnavailableError(
        f"Expected backend {' '.join(argv)!r} to print its ready line, actual {reason}"
        + (f"; last output: {tail}" if tail else "")
    )


def sweep_stale_ipc_dirs(root: Path | None = None) -> list[Path]:
    """Delete private ipc folders left by processes that are gone (for example SIGKILLed).

    A folder ``neuroloop-ipc-*`` in the temporary directory, owned by this user, is stale when
    the process named in its owner file no longer exists and no backend listens on its socket;
    it is deleted only if it holds nothing but that socket and the owner file.

    Returns:
        The folders deleted.
    """
    base = Path(tempfile.gettempdir()) if root is None else root
    removed: list[Path] = []
    for directory in base.glob(IPC_DIR_PREFIX + "*"):
        try:
            if directory.stat().st_uid != os.getuid():
                continue
            owner = int((directory / OWNER_FILE).read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue  # not ours, being made right now, or made before owner files existed
        if pid_alive(owner) or _listening(directory / IPC_SOCKET_NAME):
            continue
        if remove_ipc_dir(directory):
            removed.append(directory)
    if removed:
        structlog.get_logger().info("stale_ipc_dirs_removed", paths=[str(p) for p in removed])
    return removed


def _listening(path: Path) -> bool:
    """Whether a process accepts connections on the unix socket ``path``."""
    if not path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def local_address(transport: Transport) -> tuple[str, Path | None]:
    """A free loopback endpoint for a new backend.

    Returns:
        ``(address, cleanup_dir)``: for ``tcp`` the address ``tcp://127.0.0.1:*`` (the
        backend picks a free port and reports it) and no directory; for ``ipc`` a socket in a
        new private temporary directory holding the owner's process id (``parent.pid``), which
        the caller deletes when done (as does the backend at its exit, and the next call
        if both are gone: :func:`sweep_stale_ipc_dirs`).

    Raises:
        ConfigError: for a transport other than ``ipc`` or ``tcp``.
    """
    if transport == "tcp":
        return "tcp://127.0.0.1:*", None
    if transport == "ipc":
        sweep_stale_ipc_dirs()
        directory = Path(tempfile.mkdtemp(prefix=IPC_DIR_PREFIX))
        (directory / OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="ascii")
        return f"ipc://{directory / IPC_SOCKET_NAME}", directory
    raise ConfigError(f"Expected transport ipc|tcp, actual {transport!r}")


def spawn_local_backend(
    command: Sequence[str],
    transport: Transport = "ipc",
    ready_timeout_s: float = 60.0,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stderr: IO[bytes] | None = None,
) -> BackendProcess:
    """Start ``command --bind <free local address> *extra_args`` and wait until it listens.

    Example: ``spawn_local_backend([sys.executable, "-m", "simulator.server"], "ipc")``.
    """
    address, cleanup_dir = local_address(transport)
    try:
        return spawn_backend(
            [*command, "--bind", address, *extra_args],
            ready_timeout_s,
            env=env,
            cleanup_dir=cleanup_dir,
            stderr=stderr,
        )
    except BaseException:
        if cleanup_dir is not None:
            shutil.rmtree(cleanup_dir, ignore_errors=True)
        raise
