"""structlog configuration, done once per process by each CLI ``main()``.

Modules only call ``structlog.get_logger()``; the entry point decides the output format.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["console", "json"]

_configured = False

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


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
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    elif log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        raise ValueError(f"Expected log format console|json, actual {log_format!r}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
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
