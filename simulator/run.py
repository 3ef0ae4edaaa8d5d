"""Run an open-loop experiment window by window and summarise it the way the paper reports it."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.config import CHUNK_MS, Semantics
from simulator.experiments import Experiment
from simulator.latch import Latch
from simulator.network import Network
from simulator.synchrony import epoch_mean, order_parameter
from simulator.warmup import tiny, warm_up_network

FloatArray = npt.NDArray[np.float64]

#: Epoch over which the paper's pre-stimulation synchrony is averaged (after the start-up).
PRE_EPOCH_MS = (100.0, 1980.0)
#: Length of the stimulation-free tail averaged for ``r_tail``.
TAIL_MS = 5000.0
#: R(t) is reported only where this share of the E cells is between two of its spikes (see
#: :func:`simulator.synchrony.order_parameter`): the run's last ~30 ms, where R would climb
#: from the tail's 0.03 to 0.6 as an artefact, and its first ~30 ms are left undefined.
R_EDGE_QUANTILE = 0.99


@dataclass
class RunResult:
    """Everything a protocol run produced."""

    protocol: str
    semantics: Semantics
    seed: int
    n_e: int
    n_i: int
    duration_ms: float
    window_t_ms: FloatArray
    window_weight_mv: FloatArray
    window_rate_e_hz: FloatArray
    window_rate_i_hz: FloatArray
    window_synchrony: FloatArray
    window_chi: FloatArray
    window_stim: npt.NDArray[np.bool_]
    spike_times_ms: FloatArray
    spike_neurons: npt.NDArray[np.int32]
    r_t_ms: FloatArray
    r: FloatArray
    latch_time_s: float | None
    charge_mv_ms: float
    wall_s: float
    jit_s: float
    summary: dict[str, Any] = field(default_factory=dict)


def run_experiment(
    protocol: Experiment,
    *,
    semantics: Semantics = "paper",
    n_scale: float = 1.0,
    duration_s: float | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    r_resolution_ms: float = 1.0,
    threads: int | str = 1,
) -> RunResult:
    """Run ``protocol`` and compute the paper's summary numbers.

    Args:
        protocol: The experiment.
        semantics: ``paper`` or ``clean``.
        n_scale: Multiplies the protocol's own population sizes.
        duration_s: Run length (default: the protocol's).
        seed: Seed of the run.
        progress: Called as ``progress(done_windows, total_windows)`` after every window.
        r_resolution_ms: Grid of the offline order parameter.
        threads: Threads that integrate the network (the same results on any count), or
            ``"auto"`` (:attr:`simulator.network.Network.threads`).

    Returns:
        Per-window traces, spikes, R(t) and the summary (see :func:`summarise`).
    """
    cfg = protocol.network_config(semantics, n_scale)
    duration_ms = (protocol.duration_s if duration_s is None else duration_s) * 1000.0
    n_windows = max(1, round(duration_ms / CHUNK_MS))
    duration_ms = n_windows * CHUNK_MS
    # nothing here reads what an implant would sense: the sensor's code is never loaded
    net = Network(cfg, threads=threads, sense=False)
    jit_s = warm_up_network(
        tiny(cfg), protocol.stimulus, lambda c: Network(c, threads=threads, sense=False)
    )
    net.reset(seed)
    t_end = np.zeros(n_windows)
    weight = np.zeros(n_windows)
    rate_e = np.zeros(n_windows)
    rate_i = np.zeros(n_windows)
    sync = np.zeros(n_windows)
    chi = np.zeros(n_windows)
    stim_on = np.zeros(n_windows, dtype=np.bool_)
    # A window's spike times are its int steps times dt_ms: kept as int32 steps while the run
    # lasts (4 bytes a spike instead of 8), turned into the same float64 times at the end.
    times: list[npt.NDArray[np.int32] | FloatArray] = []
    neurons: list[npt.NDArray[np.int32]] = []
    compact = round(duration_ms / cfg.dt_ms) < 2**31
    latch = Latch(protocol.latch_rule, protocol.onset_ms)
    charge = 0.0
    wall = 0.0
    weight_now, weight_ie_now = net.weight_mv, cfg.j_e_mv * cfg.w_ei
    for w in range(n_windows):
        t0 = w * CHUNK_MS
        active = protocol.stimulus is not None and latch.stimulating(t0, weight_now, weight_ie_now)
        stats = net.advance(protocol.stimulus if active else None, CHUNK_MS)
        wall += stats.wall_s
        weight_now, weight_ie_now = stats.weight_mv, stats.weight_ie_mv
        t_end[w] = stats.t_end_ms
        weight[w] = stats.weight_mv
        rate_e[w] = stats.rate_e_hz
        rate_i[w] = stats.rate_i_hz
        sync[w] = stats.synchrony
        chi[w] = stats.chi
        stim_on[w] = active
        charge += stats.charge_mv_ms
        times.append(_as_steps(stats.spike_times_ms, cfg.dt_ms) if compact
                     else stats.spike_times_ms)  # fmt: skip
        neurons.append(stats.spike_neurons)
        if progress is not None:
            progress(w + 1, n_windows)
    latch_time_s = None if latch.latched_at_ms is None else latch.latched_at_ms / 1000.0
    del net, stats  # the network's state and synapses (4 MB at N = 2000): R(t) needs spikes only
    # each window's pieces are dropped as they are copied: at no time are all spikes held
    # twice (12 bytes per spike, 33 MB in 25 s at N = 2000)
    spike_neurons = _join(neurons, np.int32)
    if all(p.dtype.kind == "i" for p in times):
        # The steps go into the first half of the float64 times' own buffer (the second half
        # is not touched yet, so not resident), R(t) reads them as steps, and then they become
        # times in place: the spikes are never held as steps and as times at once.
        spike_times, steps = _steps_in_buffer(times)
        r_t, r, _ = order_parameter(steps, spike_neurons, cfg.n_e, duration_ms,
                                    r_resolution_ms, edge_quantile=R_EDGE_QUANTILE,
                                    dt_ms=cfg.dt_ms)  # fmt: skip
        _release_freed_heap()  # R(t)'s sort order (4 bytes per E spike), freed into the heap
        _steps_to_times(spike_times, steps, cfg.dt_ms)
        del steps
    else:
        spike_times = _join(times, np.float64, cfg.dt_ms)
        r_t, r, _ = order_parameter(spike_times, spike_neurons, cfg.n_e, duration_ms,
                                    r_resolution_ms, edge_quantile=R_EDGE_QUANTILE)  # fmt: skip
        _release_freed_heap()
    result = RunResult(
        protocol=protocol.name, semantics=semantics, seed=seed, n_e=cfg.n_e, n_i=cfg.n_i,
        duration_ms=duration_ms, window_t_ms=t_end, window_weight_mv=weight,
        window_rate_e_hz=rate_e, window_rate_i_hz=rate_i, window_synchrony=sync,
        window_chi=chi, window_stim=stim_on, spike_times_ms=spike_times,
        spike_neurons=spike_neurons, r_t_ms=r_t, r=r, latch_time_s=latch_time_s,
        charge_mv_ms=charge, wall_s=wall, jit_s=jit_s,
    )  # fmt: skip
    result.summary = summarise(result, protocol)
    return result


def _as_steps(times_ms: FloatArray, dt_ms: float) -> npt.NDArray[np.int32] | FloatArray:
    """A window's spike times as int32 steps, if ``steps * dt_ms`` gives them back exactly.

    The kernel's times are ``step * dt_ms`` (:func:`simulator.window.window_numbers`), so
    rounding ``t / dt_ms`` recovers the step; the check keeps any other time as it is.
    """
    steps = np.rint(times_ms / dt_ms).astype(np.int32)
    return steps if np.array_equal(steps * dt_ms, times_ms) else times_ms


def _steps_in_buffer(pieces: list[Any]) -> tuple[FloatArray, npt.NDArray[np.int32]]:
    """A float64 array for the joined times, its first half holding the joined int32 steps.

    ``pieces`` (int32 steps) are emptied as they are copied (as in :func:`_join`).
    """
    n = sum(p.shape[0] for p in pieces)
    buffer = np.empty(n, dtype=np.float64)
    steps = buffer.view(np.int32)[:n]
    at = 0
    for k, piece in enumerate(pieces):
        steps[at : at + piece.shape[0]] = piece
        at += piece.shape[0]
        pieces[k] = None
        if k % 256 == 255:
            _release_freed_heap()
    _release_freed_heap()
    return buffer, steps


#: Steps turned into times per slice by :func:`_steps_to_times` (a 2 MB temporary).
_STEPS_PER_SLICE = 1 << 18


def _steps_to_times(buffer: FloatArray, steps: npt.NDArray[np.int32], dt_ms: float) -> None:
    """Fill ``buffer`` with ``steps * dt_ms`` in place (``steps`` is its first half).

    Slices go from the end down: a slice's steps are multiplied into a temporary before its
    times are written, and the times of slice ``[a, b)`` overwrite the bytes of steps
    ``[2a, 2b)``, all at or past ``b`` except those of the slice itself, already read.
    """
    b = steps.shape[0]
    while b > 0:
        a = max(0, b - _STEPS_PER_SLICE)
        buffer[a:b] = steps[a:b] * dt_ms
        b = a


def _join(pieces: list[Any], dtype: type[np.generic], dt_ms: float | None = None) -> Any:
    """``np.concatenate(pieces)``, emptying ``pieces`` as it goes.

    The pieces are small (a window's spikes), so the C heap keeps their memory when they are
    freed; every few hundred pieces that memory is handed back to the system
    (:func:`_release_freed_heap`), so that the joined copy does not stack on top of it.
    With ``dt_ms``, integer pieces are steps and become ``step * dt_ms`` (:func:`_as_steps`).
    """
    out = np.empty(sum(p.shape[0] for p in pieces), dtype=dtype)
    at = 0
    for k, piece in enumerate(pieces):
        if dt_ms is not None and piece.dtype.kind == "i":
            piece = piece * dt_ms
        out[at : at + piece.shape[0]] = piece
        at += piece.shape[0]
        pieces[k] = None
        if k % 256 == 255:
            _release_freed_heap()
    _release_freed_heap()
    return out


def _release_freed_heap() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; else nothing)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def summarise(result: RunResult, protocol: Experiment) -> dict[str, Any]:
    """The paper-style summary of a run (the fields of ``summary.json``)."""
    t, r = result.r_t_ms, result.r
    stim_windows = np.nonzero(result.window_stim)[0]
    if stim_windows.size:
        stim_start = result.window_t_ms[stim_windows[0]] - CHUNK_MS
        stim_stop = result.window_t_ms[stim_windows[-1]]
        r_stim = epoch_mean(t, r, stim_start, stim_stop)
    else:
        stim_start = stim_stop = math.nan
        r_stim = math.nan
    end = result.duration_ms
    w_at_10s = _value_at(result.window_t_ms, result.window_weight_mv, 10_000.0)
    pre = (result.window_t_ms > PRE_EPOCH_MS[0]) & (result.window_t_ms <= PRE_EPOCH_MS[1])
    return {
        "protocol": result.protocol,
        "figure": protocol.figure,
        "semantics": result.semantics,
        "seed": result.seed,
        "n_e": result.n_e,
        "n_i": result.n_i,
        "duration_s": end / 1000.0,
        "r_pre": _json_float(epoch_mean(t, r, *PRE_EPOCH_MS)),
        "r_stim": _json_float(r_stim),
        "r_tail": _json_float(epoch_mean(t, r, max(0.0, end - TAIL_MS), end)),
        "stim_start_s": _json_float(stim_start / 1000.0),
        "stim_stop_s": _json_float(stim_stop / 1000.0),
        "latch_time_s": result.latch_time_s,
        "weight_mv": float(result.window_weight_mv[-1]),
        "weight_mv_at_10s": _json_float(w_at_10s),
        "rate_e_hz": float(result.window_rate_e_hz.mean()),
        "rate_i_hz": float(result.window_rate_i_hz.mean()),
        "rate_e_pre_hz": _epoch(result.window_rate_e_hz, pre),
        "rate_i_pre_hz": _epoch(result.window_rate_i_hz, pre),
        "chi_pre": _epoch(result.window_chi, pre),
        "charge_delivered": result.charge_mv_ms,
        "charge_unit": "mV·ms",
        "spikes": int(result.spike_times_ms.shape[0]),
        "wall_s": result.wall_s,
        "jit_s": result.jit_s,
        "model_s_per_wall_s": (end / 1000.0) / result.wall_s if result.wall_s > 0 else None,
    }  # fmt: skip


def _value_at(t_ms: FloatArray, values: FloatArray, at_ms: float) -> float:
    idx = np.nonzero(t_ms >= at_ms)[0]
    return float(values[idx[0]]) if idx.size else math.nan


def _epoch(values: FloatArray, mask: npt.NDArray[np.bool_]) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
