"""Telemetry out of the control loop: the recording itself, or a publish socket that drops.

Where the viewer gets the run from, and why. A run that records (the default) already writes
every record to its recording and flushes it to the operating system at once; the viewer
process follows that file (:class:`protocol.recording.follow.RecordingFollower`, a read of
the appended bytes every :data:`controller.monitor.source.FOLLOW_INTERVAL_S`), so the loop does
no telemetry work at all: no packing, no socket, nothing that could ever wait, and what the page
shows is by construction what was recorded. Measured with ``bench/bench_monitor.py``: the
publisher's packing and send cost the tick 10–15 µs in the median and 70–100 µs at the 99th
percentile, which alone exceeds the 0.05 ms a viewer may add. Only a run without a recording
(``--no-record``) publishes: a ZeroMQ publish socket gives the ticks to the viewer process as
they are decided (batched for at most 50 ms, so the viewer is woken a few times a second, not
at every tick), costs the loop a non-blocking ``send`` per batch, and, with a small send
high-water mark and ``XPUB_NODROP``, drops messages (counted) when the viewer process is slow or
gone. Either way nothing queues without bound, and the loop never blocks on a viewer.

The publisher is a :class:`~controller.recorder.TickRecorder`: it builds exactly the payloads
the session recording holds (it reuses :class:`~controller.recorder.SessionRecorder`), so the
view of a live run and of its recording are folded by the same code
(:mod:`controller.monitor.fold`). :func:`tee` can make a recording's writer publish each
record it writes as well (:class:`TeeWriter`: the payloads are built once; the benchmark uses
it to measure what publishing costs); without a recording, :class:`TeeRecorder` hands every
record to the publisher.

A second socket, the *control* socket (REP, served by a thread), answers the viewer process:
``hello`` (the run's metadata, and the recording to follow if there is one), ``ready`` (the
viewer receives the run), ``ended`` (its viewers were sent the end of the run) and ``estop``,
which only ever calls :meth:`controller.estop.EStop.request`: the loop then stops stimulation before
its next tick through its normal e-stop path, and records the stop like any other.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import structlog
import zmq

from controller.backends.base import BackendObservation
from controller.envelope.governor import Decision
from controller.estop import EStop
from controller.recorder import SessionRecorder, TickRecorder

#: Reason recorded when the monitor's e-stop button stops a run.
ESTOP_REASON = "estop_monitor"
#: Messages the PUB socket holds for a slow viewer process before it drops (counted).
SNDHWM = 64
#: Longest a tick waits in the publisher's batch (ns): ticks are sent together, at most this
#: often, so the viewer process is woken once per batch rather than once per tick.
BATCH_NS = 50_000_000
#: Records that belong to one tick; any other kind is sent at once.
TICK_KINDS = frozenset({"envelope_event", "command", "observation", "action"})


@dataclass(frozen=True)
class Endpoints:
    """Where a run's telemetry and control sockets live (a private directory, mode 0700).

    Args:
        directory: The directory holding ``telemetry.sock`` and ``control.sock``.
    """

    directory: Path

    @property
    def telemetry(self) -> str:
        """ZeroMQ address of the PUB socket."""
        return f"ipc://{self.directory / 'telemetry.sock'}"

    @property
    def control(self) -> str:
        """ZeroMQ address of the control (REP) socket."""
        return f"ipc://{self.directory / 'control.sock'}"

    @classmethod
    def private(cls) -> Endpoints:
        """A fresh private directory (only this user can connect to its sockets)."""
        path = Path(tempfile.mkdtemp(prefix="neuroloop-monitor-"))
        os.chmod(path, 0o700)
        return cls(path)


class _PublishWriter:
    """Stands in for a recording writer: batches one tick's records and publishes them."""

    def __init__(self, socket: zmq.Socket[bytes], batch_ns: int) -> None:
        self.socket = socket
        self.batch_ns = batch_ns
        self.batch: list[bytes] = []
        self._packer = msgpack.Packer()
        self.batch_start_ns = time.monotonic_ns()
        self.sent = 0
        self.dropped = 0

    def record(self, kind: str, payload: Mapping[str, Any]) -> None:
        # Each record is packed as it comes (a few µs), so no tick pays for a whole batch.
        now_ns = time.monotonic_ns()
        self.batch.append(self._packer.pack([kind, now_ns, payload]))
        if kind in TICK_KINDS:
            return
        # A tick ends with its timing record: send when the batch is BATCH_NS old (one wake-up
        # of the viewer per batch, not per tick); any run-level event goes at once.
        if kind != "timing" or now_ns - self.batch_start_ns >= self.batch_ns:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        self.batch_start_ns = time.monotonic_ns()
        # The same bytes as packb({"seq", "wall_ms", "dropped", "records": [...]}), with the
        # records packed already.
        pack = self._packer.pack
        message = b"".join(
            [
                self._packer.pack_map_header(4),
                pack("seq"),
                pack(self.sent + self.dropped),
                pack("wall_ms"),
                pack(time.time() * 1000.0),
                pack("dropped"),
                pack(self.dropped),
                pack("records"),
                self._packer.pack_array_header(len(batch)),
                *batch,
            ]
        )
        try:
            self.socket.send(message, zmq.NOBLOCK)
            self.sent += 1
        except zmq.ZMQError:  # zmq.Again at the high-water mark, or a closed socket: drop
            self.dropped += 1
        if (self.sent + self.dropped) % 1024 == 0:
            self.drain()

    def drain(self) -> None:
        """Discard the (un)subscribe notices an XPUB socket queues for its owner."""
        try:
            while True:
                self.socket.recv(zmq.NOBLOCK)
        except zmq.ZMQError:
            return

    def close(self) -> None:
        self.flush()


class TelemetryPublisher(SessionRecorder):
    """Publishes every record the session recording gets, in batches of up to 50 ms of ticks.

    Args:
        endpoints: Where to bind.
        meta: The run's metadata (the recording header's), served to viewers on ``hello``.
        estop: The run's stop flag; the control socket's ``estop`` sets it.
        sndhwm: Send high-water mark (messages) before dropping.
        batch_s: Longest a tick waits to be sent with the next ones (0: every tick alone).
        recording: The run's recording, when it has one: the viewer process then follows that
            file (:class:`protocol.recording.follow.RecordingFollower`) and nothing is
            published, so the loop does no telemetry work at all.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        meta: Mapping[str, Any],
        estop: EStop,
        sndhwm: int = SNDHWM,
        batch_s: float = BATCH_NS / 1e9,
        recording: Path | None = None,
    ) -> None:
        self.path = None  # type: ignore[assignment]  # publishes, writes no file
        self.recording = recording
        self.endpoints = endpoints
        self.meta = dict(meta)
        self.context = zmq.Context()
        # XPUB with NODROP: at the high-water mark a NOBLOCK send fails at once (zmq.Again)
        # instead of dropping silently, so drops are counted and shown on the page.
        pub = self.context.socket(zmq.XPUB)
        pub.setsockopt(zmq.XPUB_NODROP, 1)
        pub.setsockopt(zmq.SNDHWM, sndhwm)
        pub.setsockopt(zmq.RCVHWM, 16)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(endpoints.telemetry)
        self.writer = _PublishWriter(pub, int(batch_s * 1e9))  # type: ignore[assignment]
        self._pub = pub
        self.control = ControlServer(
            self.context, endpoints.control, self.meta, estop, recording=recording
        )
        self.control.start()
        self._log = structlog.get_logger("controller.monitor")

    @property
    def _publisher(self) -> _PublishWriter:
        return self.writer  # type: ignore[return-value]

    @property
    def dropped(self) -> int:
        """Messages dropped so far (the viewer process was slow or absent)."""
        return self._publisher.dropped

    def wait_for_viewer(self, timeout_s: float) -> bool:
        """Before the run: wait until a viewer process receives telemetry (or ``timeout_s``).

        PUB/SUB drops what is sent before a subscriber has joined; the viewer says ``ready``
        once a probe published here reached it, so the run's first tick is not lost.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(zmq.ZMQError):
                self._pub.send(msgpack.packb({"probe": True}), zmq.NOBLOCK)
            self._publisher.drain()
            if self.control.ready.wait(0.05):
                return True
        return False

    def close(self) -> None:
        """Publish what is left and close both sockets."""
        self._publisher.flush()
        self.control.stop()
        self._pub.close(linger=0)
        self.context.term()


class ControlServer:
    """The control socket: ``hello``, ``ready``, ``ended`` and ``estop`` from the viewer process.

    Served by a daemon thread blocked in ``poll`` (it releases the GIL), so the loop never
    waits for it. ``estop`` is the only request that changes anything, and all it can do is
    request a stop.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        address: str,
        meta: Mapping[str, Any],
        estop: EStop,
        recording: Path | None = None,
    ) -> None:
        self.context = context
        self.address = address
        self.meta = meta
        self.recording = recording
        self.estop = estop
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.estop_requests = 0
        self._stopping = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="monitor-control", daemon=True)
        self._log = structlog.get_logger("controller.monitor")

    def start(self) -> None:
        """Bind and serve in the background."""
        self._thread.start()
        self._bound.wait(5.0)

    def stop(self) -> None:
        """Stop serving (waits at most one poll interval)."""
        self._stopping.set()
        self._thread.join(2.0)

    def _serve(self) -> None:
        rep = self.context.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.setsockopt(zmq.MAXMSGSIZE, 64)
        rep.bind(self.address)
        self._bound.set()
        try:
            while not self._stopping.is_set():
                if not rep.poll(100):
                    continue
                request = rep.recv()
                rep.send(self._answer(request))
        finally:
            rep.close(linger=0)

    def _answer(self, request: bytes) -> bytes:
        if request == b"hello":
            recording = None if self.recording is None else str(self.recording)
            return bytes(msgpack.packb({"meta": self.meta, "recording": recording}))
        if request == b"ready":
            self.ready.set()
            return b"ok"
        if request == b"ended":
            self.ended.set()
            return b"ok"
        if request == b"estop":
            self.estop_requests += 1
            self.estop.request(ESTOP_REASON)
            self._log.warning("estop_requested", source="monitor", reason=ESTOP_REASON)
            return b"ok"
        return b"error: expected hello, ready, ended or estop, actual " + request[:32]


class TeeWriter:
    """A session recording's writer that also hands each record to the telemetry publisher.

    The payloads are built once, by :class:`~controller.recorder.SessionRecorder`, for both.

    Args:
        file_writer: The recording's writer.
        telemetry: The publisher.
    """

    def __init__(self, file_writer: Any, telemetry: TelemetryPublisher) -> None:
        self.file_writer = file_writer
        self.publisher: _PublishWriter = telemetry.writer  # type: ignore[assignment]

    def record(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Write the record, then publish it."""
        index = int(self.file_writer.record(kind, payload))
        self.publisher.record(kind, payload)
        return index

    def close(self) -> None:
        """Close the recording (the publisher is closed by its owner)."""
        self.file_writer.close()


def tee(primary: TickRecorder, telemetry: TelemetryPublisher) -> TickRecorder:
    """The loop's recorder: the session recording, and the same records as telemetry."""
    if type(primary) is SessionRecorder:
        primary.writer = TeeWriter(primary.writer, telemetry)  # type: ignore[assignment]
        return primary
    return TeeRecorder(primary, telemetry)


class TeeRecorder:
    """Hands every record to the session recorder first, then to the telemetry publisher.

    Args:
        primary: The session recorder (its ``path`` is the run's recording).
        telemetry: The publisher.
    """

    def __init__(self, primary: TickRecorder, telemetry: TelemetryPublisher) -> None:
        self.primary = primary
        self.telemetry = telemetry
        self.path = getattr(primary, "path", None)

    def command(self, tick: int, t_s: float, decision: Decision) -> None:
        """Record and publish the command."""
        self.primary.command(tick, t_s, decision)
        self.telemetry.command(tick, t_s, decision)

    def observation(self, tick: int, obs: BackendObservation) -> None:
        """Record and publish the observation."""
        self.primary.observation(tick, obs)
        self.telemetry.observation(tick, obs)

    def action(self, tick: int, raw: Any) -> None:
        """Record and publish the raw policy output."""
        self.primary.action(tick, raw)
        self.telemetry.action(tick, raw)

    def timing(self, tick: int, **durations_ms: float) -> None:
        """Record and publish the tick's durations."""
        self.primary.timing(tick, **durations_ms)
        self.telemetry.timing(tick, **durations_ms)

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Record and publish a run-level event."""
        self.primary.event(kind, payload)
        self.telemetry.event(kind, payload)

    def close(self) -> None:
        """Close the recording; the publisher is closed by its owner after the viewer left."""
        self.primary.close()
