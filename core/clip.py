"""Bounded text: every error message and log field built from outside input has a size limit.

A peer controls what arrives on the wire; nothing it sends may turn into an error message or a
log line of unbounded size. :func:`clip_text` keeps the beginning of a text and says how much was
cut, so a reader still sees what kind of input arrived and how big it was.

This module imports nothing of ours (``core.errors`` uses it).
"""

from __future__ import annotations

#: Longest error message a :class:`~core.errors.ProtocolError` carries (characters).
MAX_ERROR_CHARS = 1000
#: Longest text value written into one log field by the protocol server (characters).
MAX_LOG_CHARS = 1000


def clip_text(text: str, max_chars: int) -> str:
    """Return ``text`` if it has at most ``max_chars`` characters, else a shortened copy.

    The copy is the beginning of ``text`` followed by ``... [N more characters cut]`` and
    has at most ``max_chars`` characters in all.

    Args:
        text: Any text.
        max_chars: Most characters of the result (at least 1).

    Returns:
        ``text`` itself, or its clipped form.

    Raises:
        ValueError: if ``max_chars`` is below 1.
    """
    if max_chars < 1:
        raise ValueError(f"Expected max_chars >= 1, actual {max_chars}")
    if len(text) <= max_chars:
        return text
    # The note's number is at most len(text), so sizing it with len(text) keeps the result
    # within max_chars whatever the real count turns out to be.
    keep = max_chars - len(f"... [{len(text)} more characters cut]")
    if keep < 1:
        return text[:max_chars]
    return f"{text[:keep]}... [{len(text) - keep} more characters cut]"


def clip_repr(value: object, max_chars: int) -> str:
    """Return ``repr(value)`` clipped to ``max_chars`` characters (see :func:`clip_text`).

    A string or bytes value longer than the budget is cut before ``repr`` runs, so a huge
    value is never copied whole just to be shortened.
    """
    if isinstance(value, str | bytes | bytearray) and len(value) > max_chars:
        unit = "characters" if isinstance(value, str) else "bytes"
        note = f"... [{len(value)} {unit} in all]"
        head = repr(value[:max_chars])[: max(1, max_chars - len(note))]
        return (head + note)[:max_chars]
    return clip_text(repr(value), max_chars)
