"""A backend started by a controller dies with it, and leaves no ipc socket or folder behind.

:func:`protocol.process.spawn_backend` passes the parent's process id to the child in
``NEUROLOOP_PARENT_PID`` (and, for an ipc address made by
:func:`protocol.process.local_address`, the private folder in ``NEUROLOOP_IPC_DIR``). The
child's :func:`protocol.serve_cli.run_backend` then starts a :class:`ParentWatch`:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGUSR2)``: the kernel signals the child the moment its
  parent exits, however it exits (SIGKILL included). The signal is also sent when the parent
  *thread* that started the child ends while the parent process lives on, so the handler
  checks that the parent process is really gone before acting;
* everywhere, a thread that checks every :data:`PARENT_POLL_S` seconds whether the child was
  re-parented (its parent process id changed) or the parent process no longer exists.

When the parent is gone the backend stops as on SIGTERM (stimulation off, socket closed,
exit 0); if it has not exited :data:`EXIT_GRACE_S` seconds later (stuck in a long step) it is
ended with ``os._exit(3)``. On exit, :func:`remove_ipc_endpoint` deletes the ipc socket file and
the private folder made for it. A backend started by hand (no ``NEUROLOOP_PARENT_PID``) keeps
running when the shell that started it ends, as a server should.
"""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import structlog

#: Environment variable carrying the process id the child must not outlive.
PARENT_PID_ENV = "NEUROLOOP_PARENT_PID"
#: Environment variable naming the private ipc folder made for the child (removed at exit).
IPC_DIR_ENV = "NEUROLOOP_IPC_DIR"
#: File in a private ipc folder holding the process id of the process that made it.
OWNER_FILE = "parent.pid"
#: Period of the portable parent check (s).
PARENT_POLL_S = 0.2
#: Longest time between noticing the parent is gone and the process ending (s).
EXIT_GRACE_S = 10.0
#: The signal the kernel sends on parent death (Linux); its handler checks the parent.
PDEATH_SIGNAL = signal.SIGUSR2
_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (a zombie counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _set_pdeathsig(signum: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, signum)`` on Linux; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ParentWatch:
    """Call ``on_gone`` once when the process named in ``NEUROLOOP_PARENT_PID`` is gone.

    Args:
        on_gone: Called with a reason (from a signal handler or the watch thread); it should
            make the serve loop stop.
        parent_pid: The parent to watch (default: from the environment; ``None`` there means
            no watch).
        poll_s: Period of the portable check.
        grace_s: Time allowed for a clean exit after ``on_gone`` before ``os._exit(3)``.
    """

    def __init__(
        self,
        on_gone: Callable[[str], None],
        parent_pid: int | None = None,
        *,
        poll_s: float = PARENT_POLL_S,
        grace_s: float = EXIT_GRACE_S,
    ) -> None:
        self._on_gone = on_gone
        self._parent = parent_pid if parent_pid is not None else parent_from_env()
        self._poll_s = poll_s
        self._grace_s = grace_s
        self._first_ppid = os.getppid()
        self._fired = threading.Event()
        self._log = structlog.get_logger().bind(component="lifeline", parent_pid=self._parent)

    @property
    def parent_pid(self) -> int | None:
        """The watched parent (``None``: nothing watched)."""
        return self._parent

    def gone(self) -> bool:
        """Whether the parent process has exited."""
        if self._parent is None:
            return False
        if os.getppid() != self._first_ppid:  # re-parented: the parent exited
            return True
        # started through a wrapper, or the parent died before the watch started
        return self._first_ppid != self._parent and not pid_alive(self._parent)

    def start(self) -> bool:
        """Start watching; returns False when there is no parent to watch."""
        if self._parent is None:
            return False
        pdeathsig = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(PDEATH_SIGNAL, self._on_signal)
            pdeathsig = _set_pdeathsig(PDEATH_SIGNAL)
        self._log.info("parent_watch_started", pdeathsig=pdeathsig, poll_s=self._poll_s)
        threading.Thread(target=self._poll, name="parent-watch", daemon=True).start()
        if self.gone():  # the parent may have exited before prctl took effect
            self._fire("the parent exited before the watch started")
        return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.gone():
            self._fire(f"parent-death signal {signal.Signals(signum).name}")

    def _poll(self) -> None:
        while not self._fired.is_set():
            if self.gone():
                self._fire("the parent process is gone")
                return
            time.sleep(self._poll_s)

    def _fire(self, reason: str) -> None:
        if self._fired.is_set():
            return
        self._fired.set()
        self._log.warning("parent_gone", reason=reason, action="stopping the backend")
        threading.Thread(target=self._deadline, name="parent-gone-exit", daemon=True).start()
        self._on_gone(reason)

    def _deadline(self) -> None:
        time.sleep(self._grace_s)
        self._log.error("parent_gone_exit", reason=f"no clean exit within {self._grace_s:g} s")
        os._exit(3)


def parent_from_env() -> int | None:
    """The parent process id from ``NEUROLOOP_PARENT_PID`` (``None`` if unset or invalid)."""
    raw = os.environ.get(PARENT_PID_ENV, "")
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        pid = 0
    if pid <= 1:
        structlog.get_logger().warning(
            "parent_watch_off", reason=f"Expected {PARENT_PID_ENV} to be a process id > 1, "
            f"actual {raw!r}"
        )
        return None
    return pid


def remove_ipc_endpoint(endpoint: str) -> None:
    """Delete the socket file of an ``ipc://`` endpoint, and its folder if made for it.

    Only a socket is ever deleted (never a regular file). The folder is deleted only when it
    is the one named in ``NEUROLOOP_IPC_DIR`` and nothing but its owner file is left in it.
    """
    if not endpoint.startswith("ipc://"):
        return
    path = Path(endpoint[len("ipc://") :])
    log = structlog.get_logger().bind(component="lifeline")
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
            log.info("ipc_socket_removed", path=str(path))
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("ipc_socket_not_removed", path=str(path), reason=str(err))
    made = os.environ.get(IPC_DIR_ENV, "")
    if made and Path(made) == path.parent:
        remove_ipc_dir(path.parent)


def remove_ipc_dir(directory: Path) -> bool:
    """Delete a private ipc folder holding at most its socket and owner file.

    Returns:
        Whether the folder is gone.
    """
    try:
        for entry in directory.iterdir():
            mode = entry.lstat().st_mode
            if (entry.name == OWNER_FILE and stat.S_ISREG(mode)) or stat.S_ISSOCK(mode):
                entry.unlink()
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError as err:
        structlog.get_logger().warning(
            "ipc_dir_not_removed", path=str(directory), reason=str(err)
        )
        return False
    structlog.get_logger().info("ipc_dir_removed", path=str(directory))
    return True
