"""Helpers of the monitor tests: real controller runs, real Chromium, the recordings compared."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack

from protocol.recording import read_recording

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
#: Launch flags: no network chatter, no GPU, no sandbox (containers), QUIC off.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SMALL = "[controller]\nin_process = true\n[simulator]\nn_e = 80\nn_i = 20\n"
#: The record kinds that are the loop's behaviour (timing is the host's, not the loop's).
BEHAVIOUR = ("backend", "command", "observation", "action", "envelope_event", "fault", "stop")


def artefact(path: Path) -> None:
    """Copy a screenshot to ``$NEUROLOOP_ARTEFACTS`` when set (CI keeps them)."""
    target = os.environ.get("NEUROLOOP_ARTEFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def controller(
    tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None, record: bool = True
) -> subprocess.Popen[str]:
    """Start ``neuroloop-controller`` on the small in-process simulator, recording ``name``
    (``record=False``: ``--no-record``; ``name`` then only names the log)."""
    recording = ["--record", str(tmp_path / name)] if record else ["--no-record"]
    command = [
        sys.executable, "-m", "controller.cli", "--backend", "sim", "--config",
        str(small_config(tmp_path)), *recording, "--seed", "3", *args,
    ]  # fmt: skip
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip


def wait_exit(proc: subprocess.Popen[str], log: Path, timeout_s: float = 240.0) -> int:
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"controller did not finish: {log.read_text()[-3000:]}") from None
    return code


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_http(url: str, proc: subprocess.Popen[str], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the controller exited before its monitor answered"
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no monitor at {url}")


def wait_rows(base: str, rows: int, proc: subprocess.Popen[str], headers=None) -> None:
    """Wait until the monitor has folded ``rows`` ticks of the live run."""
    import json

    deadline = time.monotonic() + 240.0
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the test could watch it"
        status, body = get(f"{base}/api/sessions", headers)
        if status == 200 and json.loads(body)["sessions"][0]["rows"] >= rows:
            return
        time.sleep(0.1)
    raise AssertionError(f"the live session never reached {rows} ticks")


def behaviour(path: Path) -> list[tuple[str, bytes]]:
    """The loop's recorded behaviour: every record but timing, byte-exact (NaN included)."""
    rec = read_recording(path)
    return [(r.kind, msgpack.packb(r.payload)) for r in rec.records if r.kind in BEHAVIOUR]


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    return [r.payload for r in read_recording(path).records if r.kind == kind]
