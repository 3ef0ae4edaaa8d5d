"""Where a session shown on the page comes from: a recording file, or a running controller.

A :class:`SessionView` wraps a :class:`~controller.monitor.fold.SessionFold` and wakes the
page's WebSocket handlers when it grows. :func:`open_recording` folds a whole ``.nlrec``;
:class:`LiveSource` shows a running controller: it asks the controller's control socket for the
run (``hello``), then follows the run's recording as it is written (every
:data:`FOLLOW_INTERVAL_S`), or, for a run without a recording, subscribes to its telemetry
(:mod:`controller.monitor.telemetry`); e-stop requests go to the control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgpack
import structlog
import zmq
import zmq.asyncio

from controller.monitor.fold import SessionFold
from controller.monitor.telemetry import Endpoints
from core.errors import BackendUnavailableError, RecordingError
from protocol.recording import read_recording
from protocol.recording.follow import RecordingFollower

#: Largest telemetry message the viewer accepts (one tick's records are a few kB).
MAX_MESSAGE_BYTES = 1 << 20
#: Messages the viewer's SUB socket queues before ZeroMQ drops (the loop is never affected).
RCVHWM = 256
#: How often a followed recording is read for new records (s): a tick reaches the page within
#: this plus the push interval (:data:`controller.monitor.app.PUSH_INTERVAL_S`).
FOLLOW_INTERVAL_S = 0.025


class SessionView:
    """One session on the page and the signal that it changed.

    Args:
        fold: The folded session.
        live: Whether the session is still running (an e-stop button is shown).
    """

    def __init__(self, fold: SessionFold, live: bool) -> None:
        self.fold = fold
        self.live = live
        self.version = 0
        #: Viewer → the version it was last sent (kept by the WebSocket handlers).
        self.delivered: dict[int, int] = {}
        self._changed = asyncio.Event()

    def touch(self) -> None:
        """Wake every waiter (call on the event loop's thread)."""
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, since: int, timeout_s: float) -> bool:
        """Wait until the version moves past ``since`` (``False`` on timeout)."""
        if self.version != since:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def estop(self) -> str:
        """Request an e-stop (live sessions only)."""
        raise BackendUnavailableError("Expected a live session for e-stop, actual a recording")


def open_recording(path: Path) -> SessionView:
    """Fold a whole recording (a damaged one up to its last intact record)."""
    if not path.is_file():
        raise RecordingError(f"Expected a recording file (.nlrec), actual no file at {path}")
    recording = read_recording(path)
    fold = SessionFold()
    fold.set_meta(recording.header.meta, path.name)
    for record in recording.records:
        fold.feed(record.kind, record.mono_ns, record.payload)
    fold.close()
    fold.finished = True
    return SessionView(fold, live=False)


class LiveSource(SessionView):
    """A running controller's telemetry, folded as it arrives.

    Args:
        endpoints: The controller's sockets.
        label: The session's label on the page.
        timeout_s: How long one control request may take.
    """

    def __init__(self, endpoints: Endpoints, label: str = "live", timeout_s: float = 2.0) -> None:
        super().__init__(SessionFold(), live=True)
        self.endpoints = endpoints
        self.label = label
        self.timeout_s = timeout_s
        self.context = zmq.asyncio.Context()
        self.connected = False
        self._ending = False
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("controller.monitor")

    async def request(self, what: bytes) -> bytes:
        """One control request (a fresh REQ socket each time, so a lost reply cannot wedge it)."""
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        try:
            sock.connect(self.endpoints.control)
            await sock.send(what)
            if not await sock.poll(int(self.timeout_s * 1000)):
                raise BackendUnavailableError(
                    f"Expected a reply from the controller at {self.endpoints.control} within "
                    f"{self.timeout_s:g} s, actual none"
                )
            return bytes(await sock.recv())
        finally:
            sock.close(linger=0)

    async def estop(self) -> str:
        """Ask the controller to stop stimulation (through its own e-stop path)."""
        reply = await self.request(b"estop")
        return reply.decode("utf-8", "replace")

    def start(self) -> None:
        """Start receiving in the background (on the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop receiving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.context.destroy(linger=0)

    async def _hello(self) -> str | None:
        """The run's metadata into the fold; the recording to follow (``None``: subscribe)."""
        while True:
            try:
                reply = msgpack.unpackb(await self.request(b"hello"))
                self.fold.set_meta(reply.get("meta", {}), self.label)
                self.touch()
                recording = reply.get("recording")
                return recording if isinstance(recording, str) else None
            except BackendUnavailableError:
                self._log.info("waiting_for_controller", control=self.endpoints.control)
                await asyncio.sleep(0.2)

    async def _run(self) -> None:
        recording = await self._hello()
        if recording is not None:
            await self._follow(Path(recording))
        else:
            await self._subscribe()

    async def _follow(self, path: Path) -> None:
        """Fold the run's recording as it grows, until the run's end is in it."""
        try:
            follower = RecordingFollower(path)
        except RecordingError as err:
            self._log.error("recording_unreadable", recording=str(path), error=str(err))
            return
        try:
            self.connected = True
            asyncio.get_running_loop().create_task(self._ready())
            while not self.fold.finished:
                records = follower.poll()
                if records:
                    self._fold(
                        [(r.kind, r.mono_ns, r.payload, r.wall_ns / 1e6) for r in records],
                        dropped=0,
                        wall_ms=records[-1].wall_ns / 1e6,
                    )
                await asyncio.sleep(FOLLOW_INTERVAL_S)
        except RecordingError as err:  # damaged by something other than its writer
            self._log.error("recording_unreadable", recording=str(path), error=str(err))
        finally:
            follower.close()

    async def _subscribe(self) -> None:
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, RCVHWM)
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.endpoints.telemetry)
        try:
            while True:
                if not await sub.poll(1000):
                    continue
                self._take(await sub.recv())
        finally:
            sub.close(linger=0)

    def _take(self, raw: bytes) -> None:
        try:
            message: Any = msgpack.unpackb(raw)
        except (ValueError, msgpack.ExtraData) as err:
            self._log.warning("telemetry_unreadable", error=str(err))
            return
        if not isinstance(message, dict):
            return
        if message.get("probe"):
            if not self.connected:
                self.connected = True
                asyncio.get_running_loop().create_task(self._ready())
            return
        self.connected = True
        wall_ms = float(message.get("wall_ms", float("nan")))
        self._fold(
            [(*record, wall_ms) for record in message.get("records", [])],
            dropped=int(message.get("dropped", 0)),
            wall_ms=wall_ms,
        )

    def _fold(self, records: Any, dropped: int, wall_ms: float) -> None:
        """Fold records; wake the page; announce the run's end.

        Args:
            records: ``(kind, mono_ns, payload, wall_ms)`` each; ``wall_ms`` is when the record
                was written (from a followed recording) or its batch was sent (telemetry).
            dropped: Telemetry messages dropped so far.
            wall_ms: The newest record's ``wall_ms``.
        """
        fold = self.fold
        for kind, mono_ns, payload, record_wall_ms in records:
            fold.record_wall_ms = float(record_wall_ms)
            fold.feed(str(kind), int(mono_ns), payload)
        fold.dropped = dropped
        fold.last_wall_ms = wall_ms
        if fold.finished:
            fold.close()
        self.touch()
        if fold.finished and not self._ending:
            self._ending = True
            asyncio.get_running_loop().create_task(self._announce_end(self.version))

    async def _announce_end(self, version: int, timeout_s: float = 4.0) -> None:
        """Tell the controller once every viewer was sent the end (or ``timeout_s`` passed)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if all(sent >= version for sent in self.delivered.values()):
                break
            await asyncio.sleep(0.05)
        try:
            await self.request(b"ended")
        except BackendUnavailableError as err:
            self._log.info("end_not_announced", error=str(err))

    async def _ready(self) -> None:
        try:
            await self.request(b"ready")
        except BackendUnavailableError as err:
            self._log.warning("ready_not_delivered", error=str(err))
