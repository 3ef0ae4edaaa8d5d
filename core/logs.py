"""structlog configuration, done once per process by each CLI ``main()``.

Modules only call ``structlog.get_logger()``; the entry point decides the output format. The
console format is for people: every float in a line, and every long decimal inside a message
(``0.060000000000000005``), is shown with six significant digits (``0.06``). The JSON format is
for machines and keeps every number exact.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["console", "json"]

_configured = False

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


#: Significant digits of numbers in console log lines.
CONSOLE_DIGITS = 6
#: A decimal with more fractional digits than a person needs (and an optional exponent).
_LONG_DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d{7,}(?:[eE][-+]?\d+)?(?![\w.])")


def _short(value: float) -> float:
    return value if not math.isfinite(value) else float(f"{value:.{CONSOLE_DIGITS}g}")


def _people_value(value: Any) -> Any:
    if isinstance(value, float):
        return _short(value)
    if isinstance(value, str) and "." in value:
        return _LONG_DECIMAL.sub(lambda m: f"{_short(float(m.group())):g}", value)
    if isinstance(value, list | tuple):
        return type(value)(_people_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _people_value(v) for k, v in value.items()}
    return value


def numbers_for_people(
    _logger: Any, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A processor: floats to six significant digits, long decimals in text shortened."""
    for key, value in event_dict.items():
        if key != "timestamp":
            event_dict[key] = _people_value(value)
    return event_dict


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(log_format: LogFormat = "console", level: str = "info") -> None:
    """Configure structlog for this process.

    Calling it again reconfigures (the CLI tests run several ``main()`` in one process).

    Args:
        log_format: ``console`` for people (coloured key=value lines on stderr) or ``json`` for
            machines (one JSON object per line on stderr).
        level: Minimum level: ``debug``, ``info``, ``warning`` or ``error``.
    """
    global _configured
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"Expected log level debug|info|warning|error, actual {level!r}")
    renderers: list[structlog.typing.Processor]
    if log_format == "json":
        renderers = [structlog.processors.JSONRenderer()]
    elif log_format == "console":
        renderers = [numbers_for_people, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    else:
        raise ValueError(f"Expected log format console|json, actual {log_format!r}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolve sys.stderr whenever a logger is made, not once here: a CLI main() run under
        # a test's captured stderr must not leave structlog writing to a closed stream.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _configured = True


def is_configured() -> bool:
    """Return whether :func:`configure_logging` ran in this process."""
    return _configured
