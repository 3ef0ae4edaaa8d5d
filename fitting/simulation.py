"""Run one current-step stimulus on a built model and return the recorded trace.

Integration uses CVode (variable step, absolute tolerance 1e-3) driven by
``ParallelContext.psolve``; the traces are mostly quiescent, so this is far cheaper than a fixed
0.025 ms step. The CVode output is resampled onto a regular 0.025 ms grid by linear
interpolation, so features see the same sampling as recorded data. Call only in the process
that built the model.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import FittingError
from fitting.measurements import Stimulus
from fitting.model import BuiltModel

FloatArray = npt.NDArray[np.float64]
CVODE_ATOL = 1e-3
#: Sampling interval of recorded traces (CVode output is interpolated onto this grid).
RECORD_DT_MS = 0.025
_SITE = re.compile(r"^(.+)\(([\d.]+)\)$")


def _segment(model: BuiltModel, site: str) -> Any:
    match = _SITE.match(site)
    if match is None:
        raise FittingError(f"Expected a site section(x), actual {site!r}")
    sections = model.sections(match.group(1))
    return sections[0](float(match.group(2)))


def run_stimulus(model: BuiltModel, stimulus: Stimulus) -> tuple[FloatArray, FloatArray]:
    """Simulate ``stimulus`` and return ``(time_ms, voltage_mv)`` at the recording site."""
    from neuron import h

    stim_seg = _segment(model, stimulus.location)
    record_seg = _segment(model, stimulus.record)
    clamp = h.IClamp(stim_seg)
    clamp.delay = stimulus.delay_ms
    clamp.dur = stimulus.duration_ms
    clamp.amp = stimulus.amplitude_na
    time_vec = h.Vector().record(h._ref_t)
    volt_vec = h.Vector().record(record_seg._ref_v)
    cvode = h.CVode()
    cvode.active(1)
    cvode.atol(CVODE_ATOL)
    context = h.ParallelContext()
    context.set_maxstep(10)
    h.finitialize(stimulus.v_init_mv)
    context.psolve(stimulus.tstop_ms)
    raw_t = np.array(time_vec, dtype=np.float64)
    raw_v = np.array(volt_vec, dtype=np.float64)
    if raw_t.size < 2 or not np.all(np.isfinite(raw_v)):
        return raw_t, raw_v
    steps = round(stimulus.tstop_ms / RECORD_DT_MS)
    time_ms = np.linspace(0.0, steps * RECORD_DT_MS, steps + 1)
    if raw_t[-1] < time_ms[-1] - 1e-9:
        return raw_t, raw_v  # truncated run: let the trace check report it
    voltage_mv = np.interp(time_ms, raw_t, raw_v)
    del clamp
    return time_ms, voltage_mv
