"""A backend dies with the controller that started it and leaves no ipc socket or folder behind.

Real processes throughout: a controller-like parent spawns ``neuroloop-sim serve`` through
``spawn_local_backend`` and is SIGKILLed; the server must notice and exit on its own.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from protocol.lifeline import OWNER_FILE, ParentWatch
from protocol.process import IPC_DIR_PREFIX, spawn_backend, sweep_stale_ipc_dirs

SIM_SERVE = [sys.executable, "-m", "simulator.cli", "serve", "--no-warmup", "--log-level", "info"]
#: Generous bound on the time from the parent's death to the child's exit (busy CI machines).
EXIT_BOUND_S = 60.0

PARENT = """
import sys, time
from protocol.process import spawn_local_backend
proc = spawn_local_backend({cmd!r}, "ipc", ready_timeout_s=300.0)
print(proc.pid, proc.address, flush=True)
time.sleep(3600)
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _dead(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie that nobody reaped has exited too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return state in ("Z", "X")


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _read_line(stream: object, timeout_s: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
        buffer = b""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no line from the parent in time"
            assert sel.select(remaining), "no line from the parent in time"
            chunk = os.read(stream.fileno(), 4096)  # type: ignore[attr-defined]
            assert chunk, "the parent exited before printing its child"
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def test_sigkilled_parent_takes_its_simulator_server_and_ipc_folder_with_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "parent.log"
    with open(log, "wb") as err:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT.format(cmd=SIM_SERVE)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).parent.parent,
        )
    try:
        assert parent.stdout is not None
        pid_text, address = _read_line(parent.stdout, 300.0).split()
        child = int(pid_text)
        sock = Path(address.removeprefix("ipc://"))
        folder = sock.parent
        assert folder.name.startswith(IPC_DIR_PREFIX)
        assert sock.exists()
        assert (folder / OWNER_FILE).read_text().strip() == str(parent.pid)
        assert not _dead(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10.0)
        assert _wait_for(lambda: _dead(child), EXIT_BOUND_S), (
            f"server {child} still running; parent log:\n{log.read_text()[-3000:]}"
        )
        assert _wait_for(lambda: not folder.exists(), 10.0), sorted(folder.iterdir())
        text = log.read_text()
        assert "parent_gone" in text
        assert "ipc_dir_removed" in text
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10.0)


def test_sim_serve_removes_its_ipc_socket_at_exit(tmp_path: Path) -> None:
    sock = tmp_path / "sim.sock"
    proc = spawn_backend([*SIM_SERVE, "--bind", f"ipc://{sock}"], ready_timeout_s=300.0)
    try:
        assert sock.exists()
    finally:
        assert proc.stop(timeout_s=30.0) == 0
    assert not sock.exists()
    assert tmp_path.is_dir()  # a folder the user chose is never deleted


def test_the_portable_watch_notices_a_parent_that_is_gone() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    dead_pid = int(done.stdout)
    fired = threading.Event()
    reasons: list[str] = []

    def on_gone(reason: str) -> None:
        reasons.append(reason)
        fired.set()

    # started outside the main thread: no signal handler, no prctl, only the watch thread
    watch = ParentWatch(on_gone, dead_pid, poll_s=0.05, grace_s=3600.0)
    starter = threading.Thread(target=watch.start)
    starter.start()
    starter.join(10.0)
    assert fired.wait(30.0)
    assert len(reasons) == 1
    live = ParentWatch(lambda r: None, os.getpid())
    assert not live.gone()


def _stale_socket(path: Path) -> None:
    """A unix socket file with no listener (what a SIGKILLed server leaves)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


def test_the_next_start_sweeps_folders_whose_owner_and_server_are_gone(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    dead_pid = int(done.stdout)
    stale = tmp_path / f"{IPC_DIR_PREFIX}stale"
    alive = tmp_path / f"{IPC_DIR_PREFIX}alive"
    foreign = tmp_path / f"{IPC_DIR_PREFIX}extra"
    listening = tmp_path / f"{IPC_DIR_PREFIX}listening"
    for folder, owner in ((stale, dead_pid), (alive, os.getpid()), (foreign, dead_pid),
                          (listening, dead_pid)):  # fmt: skip
        folder.mkdir()
        (folder / OWNER_FILE).write_text(f"{owner}\n")
    _stale_socket(stale / "backend.sock")
    _stale_socket(alive / "backend.sock")
    (foreign / "notes.txt").write_text("not ours to delete")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(listening / "backend.sock"))
    server.listen(1)
    try:
        assert sweep_stale_ipc_dirs(tmp_path) == [stale]
    finally:
        server.close()
    assert not stale.exists()
    assert alive.is_dir()
    assert (foreign / "notes.txt").is_file()
    assert listening.is_dir()
