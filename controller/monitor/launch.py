"""``neuroloop-controller --monitor``: start a monitor process that shows the run.

The monitor process follows the run's recording as it is written (the loop then does no
telemetry work); a run without a recording publishes its records instead
(:mod:`controller.monitor.telemetry` says why). The monitor runs in its own process
(``python -m controller.monitor_cli --live DIR``), so its web server, JSON encoding and viewers
share no interpreter lock with the loop. The controller waits (up to :data:`READY_TIMEOUT_S`)
until the monitor receives the run, so the page shows it from its first tick; a monitor that
fails to start stops the run before it begins.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from controller.estop import EStop
from controller.monitor.telemetry import Endpoints, TelemetryPublisher, tee
from controller.recorder import TickRecorder
from core.errors import ConfigError

#: Default address of the page.
DEFAULT_BIND = "127.0.0.1:8765"
#: How much lower the monitor process's CPU priority is than the loop's.
MONITOR_NICE = 10
#: Longest wait, after the run, for the monitor to pass the end of the run to its viewers.
END_TIMEOUT_S = 5.0
#: Longest wait for the monitor process to receive telemetry before the run starts.
READY_TIMEOUT_S = 30.0


class Monitor:
    """A run's telemetry publisher and its monitor process.

    Args:
        bind: ``HOST[:PORT]`` of the page.
        meta: The run's metadata (as in the recording header).
        estop: The run's stop flag (the page's e-stop button sets it).
        recording: The run's recording (already created), which the monitor process then
            follows instead of subscribing to telemetry: the loop publishes nothing.
            ``None`` (a run without a recording): the loop publishes its records.
    """

    def __init__(
        self, bind: str, meta: Mapping[str, Any], estop: EStop, recording: Path | None = None
    ) -> None:
        if not self.environment_ok():
            raise ConfigError(
                "Expected the monitor's web stack (starlette, uvicorn) for --monitor, actual not "
                "installed: pip install 'neuroloop[monitor]'"
            )
        self.endpoints = Endpoints.private()
        self.recording = recording
        self.telemetry = TelemetryPublisher(self.endpoints, meta, estop, recording=recording)
        command = [
            sys.executable,
            "-m",
            "controller.monitor_cli",
            "--live",
            str(self.endpoints.directory),
            "--bind",
            bind,
            "--nice",
            str(MONITOR_NICE),
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self._log = structlog.get_logger("controller.monitor")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the monitor receives telemetry; raise if it exited or never did."""
        waited = 0.0
        while waited < timeout_s:
            if self.telemetry.wait_for_viewer(0.5):
                self._log.info("monitor_attached", telemetry=self.endpoints.telemetry)
                return
            waited += 0.5
            if self.process.poll() is not None:
                raise ConfigError(
                    f"Expected the monitor to start, actual exit code {self.process.returncode} "
                    "(see its message above)"
                )
        raise ConfigError(f"Expected the monitor to attach within {timeout_s:g} s, actual not")

    def recorder(self, primary: TickRecorder) -> TickRecorder:
        """The loop's recorder.

        The session recording as it is when the monitor follows it; otherwise the records go
        to the recorder, then to the telemetry publisher.
        """
        if self.recording is not None:
            return primary
        return tee(primary, self.telemetry)

    def linger(self) -> None:
        """At a terminal: keep the page up after the run until Enter or Ctrl-C."""
        if not sys.stdin.isatty() or self.process.poll() is not None:
            return
        print(
            "neuroloop-controller: the run is over; the monitor still shows it. "
            "Press Enter (or Ctrl-C) to stop the monitor.",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.readline()

    def close(self) -> None:
        """Close the publisher, stop the monitor process, remove the socket directory.

        First waits (at most :data:`END_TIMEOUT_S`) until the monitor says its viewers were sent
        the end of the run, so a page shows how the run ended.
        """
        if self.process.poll() is None:
            self.telemetry.control.ended.wait(END_TIMEOUT_S)
        self.telemetry.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        if self.telemetry.dropped:
            self._log.warning("telemetry_dropped", messages=self.telemetry.dropped)
        shutil.rmtree(self.endpoints.directory, ignore_errors=True)

    @staticmethod
    def environment_ok() -> bool:
        """Whether the monitor's web stack is installed (``pip install 'neuroloop[monitor]'``)."""
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            return False
        return True
