"""Append-only, CRC-framed session recording writer.

Durability policy: every record is written and flushed to the operating system at once (so a
crash of this process loses nothing already recorded); ``fsync`` runs at most every
``fsync_interval_s`` seconds (default 1 s) and on :meth:`RecordingWriter.close` (so a power
loss loses at most that interval). A recording is never overwritten: opening an existing path
fails.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import structlog

from core.errors import RecordingError
from protocol.codec import to_wire
from protocol.messages import Message, Observation
from protocol.recording._format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_FRAME_BYTES,
    encode_frame,
    preamble,
)

_KIND_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")

#: Record kinds written by the typed helpers (others may be added with :meth:`record`).
KIND_OBSERVATION = "observation"
KIND_ACTION = "action"
KIND_COMMAND = "command"
KIND_ENVELOPE_EVENT = "envelope_event"
KIND_TIMING = "timing"
KIND_MESSAGE = "message"


def _pack(obj: Any, what: str) -> bytes:
    try:
        data: bytes = msgpack.packb(obj, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as err:
        raise RecordingError(f"Expected a msgpack-able {what}, actual: {err}") from err
    if len(data) > MAX_FRAME_BYTES:
        raise RecordingError(f"Expected {what} under {MAX_FRAME_BYTES} bytes, actual {len(data)}")
    return data


class RecordingWriter:
    """Write one session recording.

    Args:
        path: New file to create (refused if it exists).
        meta: Header metadata: config, envelope and its hash, seeds, versions, policy hash ...
            (any msgpack-able map).
        fsync_interval_s: Longest time between ``fsync`` calls while recording.
        mono_clock_ns: Monotonic clock (injectable for tests).
        wall_clock_ns: Wall clock (injectable for tests).

    Raises:
        RecordingError: if the file exists, cannot be created, or ``meta`` is not msgpack-able.
    """

    def __init__(
        self,
        path: Path | str,
        meta: Mapping[str, Any],
        *,
        fsync_interval_s: float = 1.0,
        mono_clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = Path(path)
        self.fsync_interval_s = fsync_interval_s
        self._mono = mono_clock_ns
        self._wall = wall_clock_ns
        self._log = structlog.get_logger().bind(component="recording", path=str(self.path))
        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_wall_ns": self._wall(),
            "created_mono_ns": self._mono(),
            "meta": dict(meta),
        }
        header_bytes = _pack(header, "recording header")
        try:
            self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - owned until close
        except OSError as err:
            raise RecordingError(
                f"Expected to create a new recording at {self.path}, actual: {err}"
            ) from err
        self._count = 0
        self._last_sync_ns = self._mono()
        self._file.write(preamble() + encode_frame(header_bytes))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._log.info("recording_opened", format_version=FORMAT_VERSION)

    @property
    def records_written(self) -> int:
        """Number of records written (the header not counted)."""
        return self._count

    def record(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Append one record and flush it.

        Args:
            kind: What the record is (``observation``, ``action``, ``command``,
                ``envelope_event``, ``timing``, ``message`` or your own lower-case name).
            payload: Any msgpack-able map (NaN floats are kept as recorded facts).

        Returns:
            The record's index (0 for the first record after the header).

        Raises:
            RecordingError: if the writer is closed, ``kind`` is not a valid name or the
                payload cannot be packed; nothing is written then.
        """
        if self._file is None:
            raise RecordingError(f"Expected an open recording, actual {self.path} is closed")
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise RecordingError(
                f"Expected a record kind of lower-case letters, digits, '_' or '.', actual {kind!r}"
            )
        index = self._count
        body = {
            "i": index,
            "kind": kind,
            "mono_ns": self._mono(),
            "wall_ns": self._wall(),
            "payload": dict(payload),
        }
        frame = encode_frame(_pack(body, f"{kind} record"))
        try:
            self._file.write(frame)
            self._file.flush()
            now = self._mono()
            if (now - self._last_sync_ns) >= self.fsync_interval_s * 1e9:
                os.fsync(self._file.fileno())
                self._last_sync_ns = now
        except OSError as err:
            raise RecordingError(f"Expected to append to {self.path}, actual: {err}") from err
        self._count += 1
        return index

    # -------------------------------------------------------------------- typed helpers

    def record_observation(self, observation: Observation) -> int:
        """Record an observation as received (fields, model time, seq, spikes if any)."""
        return self.record(KIND_OBSERVATION, to_wire(0, observation))

    def record_action(self, action: Sequence[float], *, policy_id: str = "") -> int:
        """Record the raw policy action, before any envelope processing (NaN kept)."""
        return self.record(
            KIND_ACTION, {"action": [float(a) for a in action], "policy_id": policy_id}
        )

    def record_command(
        self,
        stimulus: Mapping[str, float] | None,
        *,
        clamped: bool = False,
        rejected: bool = False,
        reasons: Sequence[str] = (),
    ) -> int:
        """Record the command actually sent after the envelope (``None`` = stimulation off)."""
        return self.record(
            KIND_COMMAND,
            {
                "stimulus": None
                if stimulus is None
                else {k: float(v) for k, v in stimulus.items()},
                "clamped": clamped,
                "rejected": rejected,
                "reasons": list(reasons),
            },
        )

    def record_envelope_event(
        self,
        event: str,
        reason: str,
        *,
        param: str | None = None,
        requested: float | None = None,
        applied: float | None = None,
    ) -> int:
        """Record a clamp, reject or fault of the safety envelope with its reason."""
        return self.record(
            KIND_ENVELOPE_EVENT,
            {
                "event": event,
                "reason": reason,
                "param": param,
                "requested": requested,
                "applied": applied,
            },
        )

    def record_timing(self, **durations_ms: float) -> int:
        """Record named durations of one tick in ms (``step_ms=..., policy_ms=...``)."""
        return self.record(KIND_TIMING, {k: float(v) for k, v in durations_ms.items()})

    def record_message(self, direction: str, request_id: int, message: Message) -> int:
        """Record one wire message; ``direction`` is ``tx`` (sent) or ``rx`` (received)."""
        if direction not in ("tx", "rx"):
            raise RecordingError(f"Expected direction tx|rx, actual {direction!r}")
        return self.record(
            KIND_MESSAGE, {"direction": direction, "message": to_wire(request_id, message)}
        )

    # ------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Flush, ``fsync`` and close (idempotent)."""
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
            self._log.info("recording_closed", records=self._count)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
