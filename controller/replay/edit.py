"""Copy a recording while changing its header or records (what-if studies and tests).

A recording is never edited in place: :func:`rewrite_recording` writes a new file through
:class:`~protocol.recording.RecordingWriter`, so the copy is a well-formed recording whose
content differs exactly by the given transformation. Typical uses: simulate a codec change
(round every observation field to float32) and check that verification catches it, or strip a
header field to see the error a user would get.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import CorruptRecordingError
from protocol.recording import Record, RecordingWriter, read_recording

#: Maps one record to the payload to write (``None`` drops the record).
RecordTransform = Callable[[Record], dict[str, Any] | None]


def rewrite_recording(
    src: Path | str,
    dst: Path | str,
    *,
    meta: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    transform: RecordTransform | None = None,
) -> Path:
    """Write ``dst`` from ``src`` with the header meta and the records transformed.

    Args:
        src: Source recording; it must be undamaged (a copy never hides damage).
        dst: New file (must not exist).
        meta: Returns the new header meta from a copy of the old one.
        transform: Returns each record's new payload, or ``None`` to drop it.

    Returns:
        ``dst``.

    Raises:
        CorruptRecordingError: ``src`` is damaged (torn, corrupt or with missing records).
    """
    recording = read_recording(src)
    if not recording.tail.clean:
        raise CorruptRecordingError(
            f"Expected an undamaged source recording {src}, actual {recording.tail}",
            good_frames=recording.tail.records,
            offset=recording.tail.offset,
        )
    header_meta = dict(recording.header.meta)
    if meta is not None:
        header_meta = meta(header_meta)
    with RecordingWriter(dst, header_meta) as writer:
        for record in recording.records:
            payload = record.payload if transform is None else transform(record)
            if payload is not None:
                writer.record(record.kind, payload)
    return Path(dst)
