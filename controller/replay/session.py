"""A recorded controller session, read and grouped by control tick.

``neuroloop-controller`` writes, per tick ``k``: the envelope findings of the command
(``envelope_event``), the ``command`` sent, the ``observation`` received, the raw policy
output (``action``, absent when the policy was skipped) and the tick's ``timing``. Run-level
records (``fault``, ``stop``, ``summary``) carry no tick; they are attached to the tick they
followed. :func:`load_session` checks that structure and refuses anything else with a message
naming the record, what was expected and what arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CorruptRecordingError, RecordingError
from protocol.recording import (
    Record,
    Recording,
    RecordingHeader,
    TailReport,
    read_recording,
)

#: Record kinds that belong to one tick (their payload carries ``tick``).
TICK_KINDS = ("envelope_event", "command", "observation", "action", "timing")
#: Header ``meta`` keys a replayable controller session must have.
REQUIRED_META = ("config", "envelope", "envelope_hash", "policy")


@dataclass
class Tick:
    """The records of one control tick.

    Args:
        tick: Tick number (0-based).
        events: ``envelope_event`` payloads recorded with this tick's command, in order.
        command: The ``command`` payload (the setpoint sent at the start of the tick).
        observation: The ``observation`` payload, ``None`` when the step failed.
        action: The raw policy output, ``None`` when the policy was skipped.
        timing: The tick's durations, ``None`` when the tick ended early.
        after: Run-level records (fault, stop, summary …) written after this tick's records.
        command_mono_ns: Monotonic time at which the command record was written.
        observation_mono_ns: Monotonic time at which the observation record was written.
    """

    tick: int
    events: list[dict[str, Any]] = field(default_factory=list)
    command: dict[str, Any] | None = None
    observation: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    after: list[Record] = field(default_factory=list)
    command_mono_ns: int | None = None
    observation_mono_ns: int | None = None

    def faults(self) -> list[dict[str, Any]]:
        """Payloads of the ``fault`` records that followed this tick."""
        return [r.payload for r in self.after if r.kind == "fault"]


@dataclass
class Session:
    """A controller session read from a recording.

    Args:
        path: The recording file.
        header: Its header (format version, creation times, ``meta``).
        records: Every intact record.
        tail: How reading went: clean, or a torn tail accepted on request (any other damage
            is refused by :func:`load_session`).
        ticks: The records grouped by tick.
        before: Run-level records written before the first tick.
    """

    path: Path
    header: RecordingHeader
    records: list[Record]
    tail: TailReport
    ticks: list[Tick]
    before: list[Record]

    @property
    def meta(self) -> dict[str, Any]:
        """The header's metadata map."""
        return self.header.meta

    @property
    def config(self) -> dict[str, Any]:
        """The controller's run configuration as recorded."""
        config: dict[str, Any] = self.meta["config"]
        return config

    @property
    def period_ms(self) -> float:
        """Control period ``T`` in ms."""
        return float(self.config["period_ms"])

    @property
    def pace(self) -> str:
        """``realtime`` or ``fast``."""
        return str(self.config.get("pace", "realtime"))

    @property
    def lockstep(self) -> bool:
        """Whether the backend's tissue waited for the controller (late steps only counted).

        From the run's ``backend`` record (``False`` for recordings made before it existed,
        which ran under the device deadline rules whatever the backend).
        """
        for record in self.records_of("backend"):
            return bool(record.payload.get("lockstep", False))
        return False

    def records_of(self, kind: str) -> list[Record]:
        """Every record of ``kind``, in order."""
        return [r for r in self.records if r.kind == kind]

    def summary(self) -> dict[str, Any] | None:
        """The ``summary`` record's payload, if the run got that far."""
        found = self.records_of("summary")
        return found[-1].payload if found else None

    def observation_fields(self) -> tuple[str, ...]:
        """Field names of the recorded observations (from the first one)."""
        for t in self.ticks:
            if t.observation is not None:
                return tuple(t.observation["fields"])
        return ()


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise RecordingError(
            f"Expected a neuroloop-controller session in {path} with header meta keys "
            f"{list(REQUIRED_META)}, actual missing {missing} (keys {sorted(meta)})"
        )
    for key in ("config", "envelope", "policy"):
        if not isinstance(meta[key], dict):
            raise RecordingError(
                f"Expected header meta {key!r} of {path} to be a map, actual "
                f"{type(meta[key]).__name__}"
            )
    period = meta["config"].get("period_ms")
    if isinstance(period, bool) or not isinstance(period, int | float) or not period > 0:
        raise RecordingError(f"Expected header config.period_ms > 0 in {path}, actual {period!r}")


def _tick_of(path: Path, record: Record) -> int:
    tick = record.payload.get("tick")
    if isinstance(tick, bool) or not isinstance(tick, int) or tick < 0:
        raise RecordingError(
            f"Expected an integer tick >= 0 in {record.kind} record {record.index} of {path}, "
            f"actual {tick!r}"
        )
    return tick


def group_ticks(path: Path, records: list[Record]) -> tuple[list[Tick], list[Record]]:
    """Group records by tick; run-level records go to the tick they followed.

    Raises:
        RecordingError: A tick out of order, a duplicated record in a tick, or a tick's
            records in the wrong order.
    """
    ticks: list[Tick] = []
    before: list[Record] = []
    order = {"envelope_event": 0, "command": 0, "observation": 1, "action": 2, "timing": 3}
    stage = 0
    for record in records:
        if record.kind not in TICK_KINDS:
            (ticks[-1].after if ticks else before).append(record)
            continue
        k = _tick_of(path, record)
        if not ticks or k != ticks[-1].tick:
            expected = 0 if not ticks else ticks[-1].tick + 1
            if k != expected:
                raise RecordingError(
                    f"Expected tick {expected} in {record.kind} record {record.index} of "
                    f"{path}, actual tick {k}"
                )
            ticks.append(Tick(k))
            stage = 0
        current = ticks[-1]
        rank = order[record.kind]
        if rank < stage or (record.kind == "envelope_event" and current.command is not None):
            raise RecordingError(
                f"Expected the records of tick {k} in the order envelope_event*, command, "
                f"observation, action, timing; actual {record.kind} record {record.index} "
                f"out of place in {path}"
            )
        stage = rank
        if record.kind == "envelope_event":
            current.events.append(record.payload)
            continue
        if getattr(current, record.kind) is not None:
            raise RecordingError(
                f"Expected one {record.kind} record for tick {k}, actual a second one "
                f"(record {record.index} of {path})"
            )
        setattr(current, record.kind, record.payload)
        if record.kind == "command":
            current.command_mono_ns = record.mono_ns
        elif record.kind == "observation":
            current.observation_mono_ns = record.mono_ns
    for t in ticks:
        if t.command is None:
            raise RecordingError(
                f"Expected a command record for tick {t.tick} of {path}, actual none"
            )
    return ticks, before


def _last_good(recording: Recording) -> str:
    """Where the intact records end, for messages about a damaged recording."""
    last = recording.records[-1] if recording.records else None
    if last is None:
        return "no intact record"
    tick = f", tick {last.payload['tick']}" if "tick" in last.payload else ""
    return f"the last good record is {last.index} ({last.kind}{tick})"


def _damage_text(file: Path, recording: Recording, limit: int = 20) -> str:
    tail = recording.tail
    shown = "; ".join(str(r) for r in tail.regions[:limit])
    more = len(tail.regions) - limit
    where = _last_good(recording)
    return (
        f"{len(tail.regions)} damaged region(s) in {file} ({tail.records} intact records "
        f"recovered; {where}): {shown}" + (f"; ... {more} more" if more > 0 else "")
    )


def load_session(path: Path | str, *, accept_damaged_tail: bool = False) -> Session:
    """Read a controller session recording.

    Args:
        path: The recording.
        accept_damaged_tail: Keep the intact records before a *torn* tail (a writer that
            stopped mid-record) instead of refusing the file (the damage is still reported in
            :attr:`Session.tail`). Damage anywhere else (corrupt bytes inside the file or at
            its end, skipped record indices) is refused whatever this says.

    Raises:
        RecordingError: Not a recording, an unknown format version, or not a controller
            session (header keys, tick structure).
        CorruptRecordingError: The header is damaged, the file is damaged anywhere but in a
            torn tail, or the tail is torn and ``accept_damaged_tail`` is false; the message
            names every damaged region with its byte offsets and the last good record.
    """
    file = Path(path)
    recording = read_recording(file)
    tail = recording.tail
    if not tail.clean and not tail.torn_tail:
        raise CorruptRecordingError(
            f"Expected an undamaged recording (at most a torn tail), actual "
            f"{_damage_text(file, recording)}. --accept-damaged-tail accepts only a torn tail "
            "(a writer that stopped mid-record), never damage inside the file: its records "
            "cannot be verified",
            good_frames=tail.regions[0].records_before,
            offset=tail.offset,
        )
    if tail.torn_tail and not accept_damaged_tail:
        where = _last_good(recording)
        raise CorruptRecordingError(
            f"Expected a complete recording at {file}, actual {tail}; {where}. Pass "
            "--accept-damaged-tail to verify the intact part",
            good_frames=tail.records,
            offset=tail.offset,
        )
    _check_meta(file, recording.header.meta)
    ticks, before = group_ticks(file, recording.records)
    return Session(file, recording.header, recording.records, tail, ticks, before)
