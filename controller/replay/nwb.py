"""Export a recorded session to NWB (``neuroloop-replay export``) with pynwb.

pynwb is an optional extra (``pip install neuroloop[nwb]``); it is imported only here. The
session is written after the fact, never live (hil-safety-protocol §5.1). Layout:

* ``acquisition``: one ``TimeSeries`` per observation field (``obs_<field>``), timestamps in
  model time (s);
* processing module ``stimulation``: ``TimeSeries`` ``command_amplitude`` (the envelope's
  amplitude unit), ``command_frequency`` (Hz) and ``command_pulse_width`` (µs) at control time,
  plus ``command_held`` (0/1);
* processing module ``envelope``: a ``DynamicTable`` ``envelope_events`` (one row per clamp,
  reject, hold, recovery or fault: time, tick, kind, reason, parameter, requested, applied,
  detail);
* file metadata: a session description naming tool, policy, envelope and hash; the full header
  ``meta`` as JSON in ``notes``; the recording's SHA-256 as ``identifier``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from controller.replay.figures import control_times_s
from controller.replay.session import Session
from core.errors import ConfigError, RecordingError


def _start_time(session: Session) -> dt.datetime:
    return dt.datetime.fromtimestamp(session.header.created_wall_ns / 1e9, tz=dt.UTC)


def _events(session: Session, times: list[float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for t, when in zip(session.ticks, times, strict=True):
        for ev in t.events:
            rows.append(
                {
                    "time_s": when,
                    "tick": t.tick,
                    "kind": str(ev.get("event", "")),
                    "reason": str(ev.get("reason", "")),
                    "parameter": str(ev.get("param") or ""),
                    "requested": float(ev["requested"])
                    if isinstance(ev.get("requested"), int | float)
                    else math.nan,
                    "applied": float(ev["applied"])
                    if isinstance(ev.get("applied"), int | float)
                    else math.nan,
                    "detail": str(ev.get("detail", "")),
                }
            )
        for payload in t.faults():
            rows.append(
                {
                    "time_s": when,
                    "tick": t.tick,
                    "kind": "fault",
                    "reason": str(payload.get("reason", "")),
                    "parameter": "setpoint",
                    "requested": math.nan,
                    "applied": 0.0,
                    "detail": str(payload.get("detail", "")),
                }
            )
    return rows


def export_nwb(session: Session, out: Path) -> Path:
    """Write ``session`` as an NWB file at ``out`` (must not exist).

    Raises:
        ConfigError: pynwb is not installed, or ``out`` exists.
        RecordingError: The session has no observation to export.
    """
    try:
        from hdmf.common import DynamicTable, VectorData
        from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"Expected pynwb for NWB export (pip install 'neuroloop[nwb]'), actual missing "
            f"module {err.name!r}"
        ) from err
    if out.exists():
        raise ConfigError(f"Expected a new NWB file path, actual {out} exists")
    observed = [t for t in session.ticks if t.observation is not None]
    if not observed:
        raise RecordingError(f"Expected observations to export in {session.path}, actual none")
    meta = session.meta
    policy = meta["policy"].get("name", "?")
    env = meta["envelope"]
    digest = hashlib.sha256(session.path.read_bytes()).hexdigest()
    nwb = NWBFile(
        session_description=(
            f"NeuroLoop closed-loop session recorded by {meta.get('tool', 'neuroloop')}: policy "
            f"{policy}, envelope {env.get('name')} ({meta['envelope_hash'][:16]}…), period "
            f"{session.period_ms:g} ms, {len(session.ticks)} ticks, pace {session.pace}"
        ),
        identifier=digest,
        session_start_time=_start_time(session),
        notes=json.dumps(meta, sort_keys=True, default=str, allow_nan=True),
        source_script="neuroloop-replay export",
        source_script_file_name=session.path.name,
    )
    t_obs = np.array([float((t.observation or {})["t_model_ms"]) / 1000.0 for t in observed])
    for name in session.observation_fields():
        data = np.array(
            [float((t.observation or {})["fields"].get(name, math.nan)) for t in observed]
        )
        nwb.add_acquisition(
            TimeSeries(
                name=f"obs_{name}",
                data=data,
                unit=_unit_of(name),
                timestamps=t_obs,
                description=f"observation field {name} at the end of each control window "
                "(model time)",
            )
        )
    times = np.array(control_times_s(session))
    stim = nwb.create_processing_module("stimulation", "setpoints commanded after the envelope")
    amp_unit = str(env.get("amplitude_unit", "mV"))
    for key, name, unit in (
        ("amplitude", "command_amplitude", amp_unit),
        ("frequency_hz", "command_frequency", "Hz"),
        ("pulse_width_us", "command_pulse_width", "us"),
    ):
        data = np.array([float((t.command or {})["setpoint"][key]) for t in session.ticks])
        stim.add(
            TimeSeries(
                name=name,
                data=data,
                unit=unit,
                timestamps=times,
                description=f"commanded {key} per tick (control time)",
            )
        )
    held = np.array([1.0 if (t.command or {}).get("held") else 0.0 for t in session.ticks])
    stim.add(
        TimeSeries(
            name="command_held",
            data=held,
            unit="1",
            timestamps=times,
            description="1 when the previous setpoint was re-sent",
        )
    )
    rows = _events(session, times.tolist())
    columns = [
        ("time_s", "control time (s)"),
        ("tick", "control tick"),
        ("kind", "clamp, reject, hold, recovery or fault"),
        ("reason", "reason code"),
        ("parameter", "quantity concerned"),
        ("requested", "value before the rule"),
        ("applied", "value after the rule"),
        ("detail", "explanation with the limit that applied"),
    ]
    table = DynamicTable(
        name="envelope_events",
        description="every clamp, reject, hold, recovery and fault of the safety envelope",
        columns=[
            VectorData(name=c, description=d, data=[row[c] for row in rows]) for c, d in columns
        ],
    )
    module = nwb.create_processing_module("envelope", "safety envelope events")
    module.add(table)
    with NWBHDF5IO(str(out), "w") as io:
        io.write(nwb)
    return out


def _unit_of(name: str) -> str:
    for suffix, unit in (
        ("_mv_ms", "mV*ms"),
        ("_mv", "mV"),
        ("_hz", "Hz"),
        ("_ms", "ms"),
        ("_ma", "mA"),
        ("_us", "us"),
        ("_uc", "uC"),
    ):
        if name.endswith(suffix):
            return unit
    return "1"
