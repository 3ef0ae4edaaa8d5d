"""Session recording of a controller run, through :class:`protocol.recording.RecordingWriter`.

Per tick the recording holds the command sent (after the envelope, with its findings), the
observation received (NaN kept as a recorded fact), the raw policy output, and the tick's
timing. Faults, stops and the final summary are records too, so a reader can check every
safety invariant offline. Record kinds and payloads are listed in ``docs/controller.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from controller.backends.base import BackendObservation
from controller.envelope.governor import Decision
from protocol.envelope.setpoint import Setpoint
from protocol.recording import RecordingWriter


class TickRecorder(Protocol):
    """What the loop records; :class:`SessionRecorder` and :class:`NullRecorder` implement it."""

    def command(self, tick: int, t_s: float, decision: Decision) -> None:
        """The setpoint sent at ``tick`` and why it is what it is."""
        ...

    def observation(self, tick: int, obs: BackendObservation) -> None:
        """The observation received for ``tick``."""
        ...

    def action(self, tick: int, raw: Any) -> None:
        """The raw policy output computed after ``tick``."""
        ...

    def timing(self, tick: int, **durations_ms: float) -> None:
        """Measured durations of ``tick``."""
        ...

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """A run-level event (start, fault, stop, summary)."""
        ...

    def close(self) -> None:
        """Flush and close."""
        ...


class NullRecorder:
    """Records nothing (``--no-record``)."""

    path: Path | None = None

    def command(self, tick: int, t_s: float, decision: Decision) -> None:
        """Discard."""

    def observation(self, tick: int, obs: BackendObservation) -> None:
        """Discard."""

    def action(self, tick: int, raw: Any) -> None:
        """Discard."""

    def timing(self, tick: int, **durations_ms: float) -> None:
        """Discard."""

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Discard."""

    def close(self) -> None:
        """Nothing to close."""


def _setpoint(sp: Setpoint | None) -> dict[str, float] | None:
    return None if sp is None else sp.as_dict()


def _raw(raw: Any) -> Any:
    if isinstance(raw, Setpoint):
        return {"setpoint": raw.as_dict()}
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return {"unreadable": repr(raw)[:200]}
    return {"action": arr.ravel().tolist(), "shape": list(arr.shape)}


class SessionRecorder:
    """Writes the run to a new recording file.

    Args:
        path: The recording file (must not exist).
        meta: Header metadata (config, envelope and hash, policy, backend, seeds, versions).
    """

    def __init__(self, path: Path, meta: Mapping[str, Any]) -> None:
        self.path = path
        self.writer = RecordingWriter(path, meta)

    def command(self, tick: int, t_s: float, decision: Decision) -> None:
        """Record the command and each envelope finding."""
        for f in decision.findings:
            self.writer.record(
                "envelope_event",
                {
                    "tick": tick,
                    "event": f.kind,
                    "reason": f.reason,
                    "param": f.field,
                    "requested": f.requested,
                    "applied": f.applied,
                    "detail": f.detail,
                },
            )
        self.writer.record(
            "command",
            {
                "tick": tick,
                "t_s": t_s,
                "setpoint": _setpoint(decision.setpoint),
                "held": decision.held,
                "fault": decision.fault,
                "reasons": [f.reason for f in decision.findings],
            },
        )

    def observation(self, tick: int, obs: BackendObservation) -> None:
        """Record the observation as received."""
        self.writer.record(
            "observation",
            {
                "tick": tick,
                "seq": obs.seq,
                "t_model_ms": obs.t_model_ms,
                "duration_ms": obs.duration_ms,
                "fields": {k: float(v) for k, v in obs.fields.items()},
                "applied": _setpoint(obs.applied),
            },
        )

    def action(self, tick: int, raw: Any) -> None:
        """Record the raw policy output (NaN kept)."""
        self.writer.record("action", {"tick": tick, **_raw(raw)})

    def timing(self, tick: int, **durations_ms: float) -> None:
        """Record the tick's durations."""
        self.writer.record(
            "timing", {"tick": tick, **{k: float(v) for k, v in durations_ms.items()}}
        )

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        """Record a run-level event."""
        self.writer.record(kind, dict(payload))

    def close(self) -> None:
        """Flush, fsync and close."""
        self.writer.close()
