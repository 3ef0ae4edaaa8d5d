"""Follow a recording while it is written: the records appended since the last look.

The writer (:mod:`protocol.recording.writer`) flushes every record to the operating system as
it is written, so another process sees it at once. :class:`RecordingFollower` keeps the byte
offset after the last whole record; :meth:`RecordingFollower.poll` reads what was appended,
returns every whole record and keeps an incomplete last frame (the writer is in the middle of
it) for the next call. A reader that follows a live file cannot tell damage from a write in
progress by waiting, so anything but a whole or a partly written frame raises: a live recording
is never damaged unless something other than its writer touched it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from core.errors import CorruptRecordingError
from protocol.recording.reader import Record, RecordingHeader, RecordingReader, _DamageError

#: Most bytes one :meth:`RecordingFollower.poll` reads (the rest waits for the next call).
MAX_READ_BYTES = 1 << 22


class RecordingFollower:
    """The records of a growing recording, in order, as they are appended.

    Args:
        path: The recording (its header must already be written).

    Raises:
        RecordingError: Not a NeuroLoop recording, or from a newer format.
        CorruptRecordingError: The header is damaged.
    """

    def __init__(self, path: Path | str) -> None:
        self._reader = RecordingReader(path)
        self.path = self._reader.path
        self.header: RecordingHeader = self._reader.header
        self.offset = self._reader._first_offset
        self.last_index = -1
        self.records_read = 0
        self._pending = b""
        self._file: BinaryIO | None = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self._file.seek(self.offset)

    def poll(self) -> list[Record]:
        """Every whole record appended since the last call (possibly none).

        Raises:
            CorruptRecordingError: Bytes that are neither a whole record nor the start of one
                being written, or records out of order.
        """
        if self._file is None:
            return []
        chunk = self._file.read(MAX_READ_BYTES)
        if not chunk:
            return []
        buf = self._pending + chunk
        base = self.offset - len(self._pending)
        start = 0
        records: list[Record] = []
        while start < len(buf):
            try:
                record, end = self._reader._record_at(buf, start, self.last_index)
                if record.index != self.last_index + 1:
                    raise _DamageError(
                        "missing",
                        f"Expected record index {self.last_index + 1}, actual {record.index}",
                    )
            except _DamageError as damage:
                if damage.damage == "torn":  # the writer is in the middle of this frame
                    break
                raise CorruptRecordingError(
                    f"{damage.damage} record at byte {base + start} of {self.path} while "
                    f"following it, after {self.records_read} records: {damage}",
                    good_frames=self.records_read,
                    offset=base + start,
                ) from damage
            records.append(replace(record, offset=base + start))  # an offset in the file
            self.last_index = record.index
            self.records_read += 1
            start = end
        self._pending = buf[start:]
        self.offset = base + len(buf)
        return records

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordingFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
