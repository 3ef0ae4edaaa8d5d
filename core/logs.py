"""structlog configuration, done once per process by each CLI ``main()``.

Modules only call ``structlog.get_logger()``; the entry point decides the output format. The
console format is for people: every float in a line, and every long decimal inside a message
(``0.060000000000000005``), is shown with six significant digits (``0.06``). The JSON format is
for machines and keeps every number exact.

Every command line takes the same two options, defined once here: :func:`add_log_options`
adds ``--log-format`` and ``--log-level`` to a parser and :func:`configure_from_args`
configures logging from what it parsed (README, Commands, documents both).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from typing import Any, Literal, cast

import structlog

LogFormat = Literal["console", "json"]

#: The accepted ``--log-format`` values.
LOG_FORMATS: tuple[str, ...] = ("console", "json")
#: The accepted ``--log-level`` values, lowest first.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
#: Every command's ``--log-format`` default.
DEFAULT_LOG_FORMAT: LogFormat = "console"
#: Every command's ``--log-level`` default.
DEFAULT_LOG_LEVEL = "info"

_configured = False
#: ``(format, level)`` of the last :func:`configure_logging` in this process, for its workers.
_settings: tuple[LogFormat, str] | None = None

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


def configure_logging(
    log_format: LogFormat = DEFAULT_LOG_FORMAT, level: str = DEFAULT_LOG_LEVEL
) -> None:
    """Configure structlog for this process.

    Calling it again reconfigures (the CLI tests run several ``main()`` in one process).

    Args:
        log_format: ``console`` for people (coloured key=value lines on stderr) or ``json`` for
            machines (one JSON object per line on stderr).
        level: Minimum level: ``debug``, ``info``, ``warning`` or ``error``.
    """
    global _configured, _settings
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
    _settings = (log_format, level)


def current_settings() -> tuple[LogFormat, str] | None:
    """``(format, level)`` this process logs with, or ``None`` before :func:`configure_logging`.

    Worker processes (``core.executor``) take it, so a worker logs like its parent, on stderr.
    """
    return _settings


def configure_worker(settings: tuple[LogFormat, str] | None) -> None:
    """Log in a worker process like its parent (``settings`` from :func:`current_settings`).

    A worker whose parent never configured logging gets the defaults; either way every line
    goes to stderr, never to stdout, which keeps a command's own output clean.
    """
    if settings is None:
        configure_logging()
    elif _settings != settings:
        configure_logging(*settings)


def enabled_for(level: int) -> bool:
    """Whether a line at ``level`` (``logging.DEBUG`` …) would be logged now.

    Asks structlog's configured wrapper class (a level-filtering one, from
    :func:`configure_logging` or structlog's default, which logs everything), so a hot path
    can skip building a line's fields when its level is off. A wrapper class without the
    question answers yes.
    """
    wrapper = structlog.get_config()["wrapper_class"]
    ask = getattr(wrapper, "is_enabled_for", None)
    return True if ask is None else bool(ask(None, level))


def is_configured() -> bool:
    """Return whether :func:`configure_logging` ran in this process."""
    return _configured


def add_log_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, defaults: bool = True
) -> None:
    """Add ``--log-format`` and ``--log-level`` to a command line (or one of its groups).

    Args:
        parser: The parser or argument group that takes the two options.
        defaults: ``True`` sets the defaults (:data:`DEFAULT_LOG_FORMAT`,
            :data:`DEFAULT_LOG_LEVEL`); ``False`` leaves both ``None`` for a command that merges
            them with a configuration file, whose own defaults are the same two values.
    """
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=DEFAULT_LOG_FORMAT if defaults else None,
        help=f"log lines on stderr: console for people, json (one object a line) for machines "
        f"(default {DEFAULT_LOG_FORMAT})",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=DEFAULT_LOG_LEVEL if defaults else None,
        help=f"lowest level logged (default {DEFAULT_LOG_LEVEL})",
    )


def configure_from_args(args: object) -> None:
    """Configure logging from the options :func:`add_log_options` added.

    An option that is absent or ``None`` takes the shared default.

    Args:
        args: The parsed command line (``argparse.Namespace``), or any object with
            ``log_format`` and ``log_level`` attributes (the controller's merged run config).
    """
    log_format = getattr(args, "log_format", None) or DEFAULT_LOG_FORMAT
    level = getattr(args, "log_level", None) or DEFAULT_LOG_LEVEL
    configure_logging(cast(LogFormat, log_format), level)
