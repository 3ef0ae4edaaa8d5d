"""How the governor's findings reach the log: wrong things at once, a repeated clamp once.

A hold, reject, recovery or fault is logged as it happens (warning, error for a fault). A clamp
is the envelope doing its job (a ramp, a soft start, a policy pressing on a limit) and usually
repeats on consecutive ticks, so it is logged at info once when it starts (``envelope_clamp``)
and once when it ends (``envelope_clamp_end``, with the number of ticks and the last values)
if it lasted more than one tick; the ticks in between are logged at debug. Every finding is
still counted per reason (the run summary) and recorded per tick (the recording).
Numbers are rounded to six significant digits for people; the recording keeps them exact.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from core.logs import enabled_for
from protocol.envelope.setpoint import Finding

#: Significant digits of the numbers in log lines.
LOG_DIGITS = 6


def for_people(value: float) -> float:
    """``value`` rounded to :data:`LOG_DIGITS` significant digits (NaN/Inf unchanged)."""
    if not math.isfinite(value):
        return value
    return float(f"{value:.{LOG_DIGITS}g}")


@dataclass
class _Episode:
    first: Finding
    last: Finding
    ticks: int = 1


class FindingLog:
    """Logs findings, folding a clamp repeated on consecutive ticks into one episode.

    Args:
        log: A structlog logger.
    """

    def __init__(self, log: Any) -> None:
        self._log = log
        self._open: dict[str, _Episode] = {}
        self._this_tick: set[str] = set()

    def record(self, finding: Finding) -> None:
        """Log one finding (call :meth:`end_tick` after the last finding of each tick)."""
        if finding.kind == "fault":
            self.flush()
            self._log.error("envelope_fault", **_fields(finding))
        elif finding.kind in ("reject", "hold", "recovery"):
            self._log.warning(f"envelope_{finding.kind}", **_fields(finding))
        else:
            episode = self._open.get(finding.reason)
            if episode is None:
                self._open[finding.reason] = _Episode(finding, finding)
                if enabled_for(logging.INFO):
                    self._log.info("envelope_clamp", **_fields(finding))
            elif finding.reason not in self._this_tick:
                episode.ticks += 1
                episode.last = finding
                # Every tick of a ramp comes here: build the line only when debug is on.
                if enabled_for(logging.DEBUG):
                    self._log.debug(
                        "envelope_clamp", **_fields(finding), tick_of_episode=episode.ticks
                    )
            self._this_tick.add(finding.reason)

    def end_tick(self) -> None:
        """Close the episodes of clamps that did not happen this tick."""
        for reason in [r for r in self._open if r not in self._this_tick]:
            self._close(reason)
        self._this_tick.clear()

    def flush(self) -> None:
        """Close every open episode (end of run, or before a fault is logged)."""
        for reason in list(self._open):
            self._close(reason)
        self._this_tick.clear()

    def _close(self, reason: str) -> None:
        episode = self._open.pop(reason)
        if episode.ticks < 2 or not enabled_for(logging.INFO):
            return
        self._log.info(
            "envelope_clamp_end",
            reason=reason,
            field=episode.last.field,
            ticks=episode.ticks,
            first_requested=for_people(episode.first.requested),
            first_applied=for_people(episode.first.applied),
            last_requested=for_people(episode.last.requested),
            last_applied=for_people(episode.last.applied),
        )


def _fields(finding: Finding) -> dict[str, Any]:
    return {
        "reason": finding.reason,
        "field": finding.field,
        "requested": for_people(finding.requested),
        "applied": for_people(finding.applied),
        "detail": finding.detail,
    }
