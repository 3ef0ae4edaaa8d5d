"""The one exception hierarchy of NeuroLoop.

Every error NeuroLoop raises on purpose derives from :class:`NeuroLoopError`. Errors are split by
the phase in which they happen (configuration, wire, transport, safety, device, recording,
fitting). Where a standard-library counterpart exists the class inherits from it too, so callers
may catch ``TimeoutError`` or ``ValueError`` as usual.

The hierarchy lives in :mod:`core`, the foundation below every other package (the wire protocol
included), so every package may import it; it imports nothing of ours but the leaf :mod:`core.clip`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from core.clip import MAX_ERROR_CHARS, clip_text


def did_you_mean(name: str, known: Iterable[str], limit: int = 3) -> str:
    """A hint naming the known names closest to a misspelt ``name``, for error messages.

    Args:
        name: What arrived.
        known: The accepted names.
        limit: Most names suggested.

    Returns:
        ``" Did you mean a, b?"`` (with a leading space), or ``""`` when nothing is close.
    """
    close = difflib.get_close_matches(name, [str(k) for k in known], n=limit)
    return f" Did you mean {', '.join(close)}?" if close else ""


class NeuroLoopError(Exception):
    """Root of every error raised on purpose by NeuroLoop."""


class ConfigError(NeuroLoopError, ValueError):
    """A configuration file, CLI argument or parameter set is invalid."""


class ProtocolError(NeuroLoopError):
    """Bytes or a message on the wire do not follow the protocol.

    The message is clipped to :data:`~core.clip.MAX_ERROR_CHARS` characters (saying how
    much was cut), because it is often built from what a peer sent.

    Args:
        message: What was expected and what arrived.
        code: The protocol error code (see ``docs/protocol.md``), if one applies.

    Attributes:
        request_id: The id of the request that failed to decode, when the body was a map
            with a valid ``id`` (set by the codec; ``None`` otherwise).
    """

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(clip_text(message, MAX_ERROR_CHARS))
        self.code = code
        self.request_id: int | None = None


class TransportTimeoutError(NeuroLoopError, TimeoutError):
    """A request got no reply before its deadline."""


class BackendBusyError(NeuroLoopError):
    """The backend already has a controlling client."""


class BackendUnavailableError(NeuroLoopError, ConnectionError):
    """A backend cannot be reached or is not available on this installation."""


class SafetyError(NeuroLoopError):
    """Base of every safety-envelope error."""


class SafetyLimitError(SafetyError, ValueError):
    """A command or envelope lies outside an absolute or configured limit."""


class SafetyFaultError(SafetyError):
    """A fault latched a safe stop (NaN/Inf, watchdog, loss of contact, e-stop)."""


class DeviceError(NeuroLoopError):
    """Base of errors raised by stimulator drivers and devices.

    Args:
        message: What happened.
        error_code: The device's reason code, if the device sent one.
    """

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class DeviceNotAvailableError(DeviceError, NotImplementedError):
    """The requested device or driver is not available here."""


class DeviceIOError(DeviceError, OSError):
    """Reading from or writing to the device failed, or the link was lost."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """The device did not answer in time."""


class RecordingError(NeuroLoopError):
    """A session recording cannot be written or read."""


class CorruptRecordingError(RecordingError):
    """A recording has a torn or corrupted frame.

    Args:
        message: Where the damage starts and what was found.
        good_frames: How many intact frames precede the damage.
        offset: Byte offset of the first damaged frame.
    """

    def __init__(self, message: str, good_frames: int, offset: int) -> None:
        super().__init__(message)
        self.good_frames = good_frames
        self.offset = offset


class FittingError(NeuroLoopError):
    """A model, measurement set or fit cannot be loaded or run."""


__all__ = [
    "BackendBusyError",
    "BackendUnavailableError",
    "ConfigError",
    "CorruptRecordingError",
    "DeviceError",
    "DeviceIOError",
    "DeviceNotAvailableError",
    "DeviceTimeoutError",
    "FittingError",
    "NeuroLoopError",
    "ProtocolError",
    "RecordingError",
    "SafetyError",
    "SafetyFaultError",
    "SafetyLimitError",
    "TransportTimeoutError",
]
