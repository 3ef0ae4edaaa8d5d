"""Fold session records (live telemetry or a recording) into per-tick columns for display.

Both sources hand the same ``(kind, mono_ns, payload)`` records, in the order the controller
wrote them (see ``docs/controller.md``, "Recording and summary"), to :meth:`SessionFold.feed`.
One row per tick; columns are compact ``array('d')`` (an hour at 50 Hz is 180 000 rows of a
few dozen floats). The browser never gets them whole: :mod:`controller.monitor.decimate`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import Any

#: Session states, in the order of their codes in the ``state`` column.
STATES = ("idle", "armed", "stimulating", "held", "safe stop", "e-stop")
IDLE, ARMED, STIMULATING, HELD, SAFE_STOP, ESTOP = range(len(STATES))

#: Fixed columns (besides one ``f:<field>`` column per observed feature).
BASE_COLUMNS = (
    "tick",
    "t_s",
    "state",
    "cmd_amplitude",
    "cmd_frequency_hz",
    "cmd_pulse_width_us",
    "del_amplitude",
    "del_frequency_hz",
    "del_pulse_width_us",
    "charge_window",
    "charge_cum",
    "charge_per_phase",
    "latency_ms",
    "step_ms",
    "overhead_ms",
    "period_error_ms",
)
#: The envelope finding of a tick whose observation came later than one period.
LATE = "late_observation"

NAN = math.nan


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


class SessionFold:
    """The display state of one session, built record by record."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.columns: dict[str, array[float]] = {name: array("d") for name in BASE_COLUMNS}
        self.features: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.state = IDLE
        self.deadline_misses = 0
        self.dropped = 0
        self.finished = False
        self.end_reason: str | None = None
        self.summary: dict[str, Any] | None = None
        self.last_wall_ms = NAN
        #: Wall clock (ms) of the record being fed; set by the source before each record.
        self.record_wall_ms = NAN
        #: Wall clock (ms) at which each completed tick was recorded (or published): the
        #: page measures how late each tick appears (not a display column).
        self.row_wall_ms: array[float] = array("d")
        self._row: dict[str, float] | None = None
        self._charge_cum = 0.0
        self._last_command_ns: int | None = None

    # ---- metadata -------------------------------------------------------------------------

    def set_meta(self, meta: Mapping[str, Any], label: str) -> None:
        """Take the header metadata (config, envelope, hash, policy) of the session."""
        env = meta.get("envelope") or {}
        config = meta.get("config") or {}
        policy = meta.get("policy") or {}
        self.meta.update(
            {
                "label": label,
                "policy": policy.get("name", "?"),
                "backend": config.get("backend", "?"),
                "pace": config.get("pace", "?"),
                "period_ms": _f(config.get("period_ms", 20.0)),
                "envelope_name": env.get("name", "?"),
                "envelope_hash": meta.get("envelope_hash", "?"),
                "amplitude_unit": env.get("amplitude_unit", ""),
                "charge_unit": "µC" if env.get("domain") == "physical" else "mV·ms",
                "charge_per_phase_max": _f(env.get("charge_per_phase_max")),
                "amplitude_max": _f(env.get("amplitude_max")),
                "domain": env.get("domain", "model"),
                "recording": config.get("record"),
            }
        )

    @property
    def period_s(self) -> float:
        """The control period in s."""
        period_ms = self.meta.get("period_ms", 20.0)
        return (period_ms if math.isfinite(period_ms) and period_ms > 0 else 20.0) / 1000.0

    @property
    def rows(self) -> int:
        """Completed ticks."""
        return len(self.columns["tick"])

    # ---- records --------------------------------------------------------------------------

    def feed(self, kind: str, mono_ns: int, payload: Mapping[str, Any]) -> None:
        """Take one record."""
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(mono_ns, payload)

    def close(self) -> None:
        """No more records: finish the last tick."""
        self._finish_row()

    def _new_row(self, tick: int) -> dict[str, float]:
        if self._row is not None and int(self._row["tick"]) != tick:
            self._finish_row()
        if self._row is None:
            self._row = {name: NAN for name in BASE_COLUMNS}
            self._row.update({f"f:{name}": NAN for name in self.features})
            self._row["tick"] = float(tick)
            self._row["t_s"] = tick * self.period_s
            self._row["state"] = float(self.state)
        return self._row

    def _finish_row(self) -> None:
        row, self._row = self._row, None
        if row is None:
            return
        for name, column in self.columns.items():
            column.append(row.get(name, NAN))
        self.row_wall_ms.append(self.record_wall_ms)

    def _add_feature(self, name: str) -> None:
        self.features.append(name)
        self.columns[f"f:{name}"] = array("d", [NAN] * self.rows)

    def _event(self, tick: int | None, kind: str, reason: str, param: str, detail: str) -> None:
        if tick is None:
            tick = self.rows
        self.events.append(
            {
                "tick": tick,
                "t_s": tick * self.period_s,
                "kind": kind,
                "reason": reason,
                "param": param,
                "detail": detail,
            }
        )
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def _on_backend(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        if self.rows or self.events:  # a new run on the same telemetry: start over
            meta = self.meta
            self.__init__()  # type: ignore[misc]
            self.meta = meta
        self.meta["backend_kind"] = p.get("kind", "?")
        self.meta["backend_name"] = p.get("name", "?")
        self.meta["lockstep"] = bool(p.get("lockstep", False))

    def _on_envelope_event(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        tick = int(p.get("tick", self.rows))
        reason = str(p.get("reason", "?"))
        if reason == LATE:
            self.deadline_misses += 1
        self._event(
            tick, str(p.get("event", "?")), reason, str(p.get("param", "")), str(p.get("detail"))
        )

    def _on_command(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        row = self._new_row(int(p.get("tick", self.rows)))
        sp = p.get("setpoint") or {}
        amplitude = _f(sp.get("amplitude"))
        pulse_width_us = _f(sp.get("pulse_width_us"))
        row["cmd_amplitude"] = amplitude
        row["cmd_frequency_hz"] = _f(sp.get("frequency_hz"))
        row["cmd_pulse_width_us"] = pulse_width_us
        row["charge_per_phase"] = amplitude * pulse_width_us / 1000.0
        if self._last_command_ns is not None and self.meta.get("pace") != "fast":
            period_ns = mono_ns - self._last_command_ns
            row["period_error_ms"] = period_ns / 1e6 - self.period_s * 1000.0
        self._last_command_ns = mono_ns
        if p.get("fault"):
            self.state = SAFE_STOP
        elif p.get("held"):
            self.state = HELD
        elif amplitude > 0.0:
            self.state = STIMULATING
        else:
            self.state = ARMED
        row["state"] = float(self.state)

    def _on_observation(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        row = self._new_row(int(p.get("tick", self.rows)))
        fields = p.get("fields") or {}
        for name, value in fields.items():
            if name not in self.features:
                self._add_feature(name)
            row[f"f:{name}"] = _f(value)
        applied = p.get("applied")
        if applied:
            row["del_amplitude"] = _f(applied.get("amplitude"))
            row["del_frequency_hz"] = _f(applied.get("frequency_hz"))
            row["del_pulse_width_us"] = _f(applied.get("pulse_width_us"))
        else:
            row["del_amplitude"] = 0.0
        row["charge_window"] = self._charge(fields, applied, _f(p.get("duration_ms")))
        self._charge_cum += row["charge_window"]
        row["charge_cum"] = self._charge_cum

    def _charge(self, fields: Mapping[str, Any], applied: Any, duration_ms: float) -> float:
        """The window's charge, as the loop's summary counts it (``ControlLoop._account``)."""
        if self.meta.get("domain", "model") == "model" and "charge_mv_ms" in fields:
            value = _f(fields["charge_mv_ms"])
        elif applied and "delivered_charge_uc" in fields:
            value = 2.0 * _f(fields["delivered_charge_uc"]) * _f(applied.get("frequency_hz"))
            value *= duration_ms / 1000.0
        elif applied and _f(applied.get("amplitude")) > 0.0:
            q = _f(applied.get("amplitude")) * _f(applied.get("pulse_width_us")) / 1000.0
            value = 2.0 * q * _f(applied.get("frequency_hz")) * duration_ms / 1000.0
        else:
            value = 0.0
        return value if math.isfinite(value) else 0.0

    def _on_timing(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        row = self._new_row(int(p.get("tick", self.rows)))
        for name in ("latency_ms", "step_ms", "overhead_ms"):
            row[name] = _f(p.get(name))
        self._finish_row()

    def _on_fault(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        self._finish_row()
        reason = str(p.get("reason", "?"))
        if reason.startswith("estop"):
            self.state = ESTOP
            kind = "e-stop"
        else:
            self.state = SAFE_STOP
            kind = "fault"
            if reason == "deadline_2t":
                self.deadline_misses += 1
        self._event(None, kind, reason, "", str(p.get("detail", "")))

    def _on_stop(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        self._finish_row()
        reason = str(p.get("reason", "?"))
        self.end_reason = reason
        if reason.startswith("estop"):
            self.state = ESTOP
        elif reason not in ("completed",):
            self.state = SAFE_STOP
        else:
            self.state = IDLE
        self._event(None, "stop", reason, "", f"stimulation stopped ({reason})")

    def _on_summary(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        self.summary = dict(p)
        self.finished = True

    def _on_run_error(self, mono_ns: int, p: Mapping[str, Any]) -> None:
        self.finished = True
        self._event(None, "fault", "run_error", "", str(p.get("error", "")))

    # ---- what the page shows besides the columns -------------------------------------------

    def status(self) -> dict[str, Any]:
        """State, counts and metadata for the page header."""
        return {
            "state": STATES[self.state],
            "rows": self.rows,
            "counts": dict(self.counts),
            "deadline_misses": self.deadline_misses,
            "dropped": self.dropped,
            "finished": self.finished,
            "end_reason": self.end_reason,
            "features": list(self.features),
            "last": {name: col[-1] for name, col in self.columns.items()} if self.rows else {},
            "meta": dict(self.meta),
        }
