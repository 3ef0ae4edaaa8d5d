"""Session recordings: an append-only, CRC-framed msgpack log and its resynchronising reader.

The controller records each tick (observation, raw action, command sent, envelope events,
timing) and, optionally, every wire message; the replay tool reads it back. The byte format
is in :mod:`protocol.recording._format` and ``docs/protocol.md`` §9.
"""

from protocol.recording._format import FORMAT_VERSION, READABLE_VERSIONS
from protocol.recording.reader import (
    DamagedRegion,
    Record,
    Recording,
    RecordingHeader,
    RecordingReader,
    TailReport,
    read_recording,
)
from protocol.recording.writer import (
    KIND_ACTION,
    KIND_COMMAND,
    KIND_ENVELOPE_EVENT,
    KIND_MESSAGE,
    KIND_OBSERVATION,
    KIND_TIMING,
    RecordingWriter,
)

__all__ = [
    "FORMAT_VERSION",
    "KIND_ACTION",
    "KIND_COMMAND",
    "KIND_ENVELOPE_EVENT",
    "KIND_MESSAGE",
    "KIND_OBSERVATION",
    "KIND_TIMING",
    "READABLE_VERSIONS",
    "DamagedRegion",
    "Record",
    "Recording",
    "RecordingHeader",
    "RecordingReader",
    "RecordingWriter",
    "TailReport",
    "read_recording",
]
