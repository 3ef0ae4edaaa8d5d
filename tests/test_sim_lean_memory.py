"""What a run leaves out to save memory: SciPy's BLAS under Numba, float64 spike pieces."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from simulator import run as run_module
from simulator.config import NetworkConfig
from simulator.experiments import get_experiment
from simulator.network import Network
from simulator.run import run_experiment
from simulator.sensing import SENSED_FIELDS

ROOT = Path(__file__).resolve().parents[1]

LEAN_CHILD = r"""
import sys
import simulator  # the package hides SciPy's BLAS while Numba's NumPy support loads
from simulator.lean_numba import import_numba_lean
assert "numba.np.arraymath" in sys.modules
assert import_numba_lean() is False  # once is enough
from simulator.experiments import get_experiment
from simulator.run import run_experiment
from simulator.sensing import SENSED_FIELDS
run_experiment(get_experiment("ftsts-desync"), n_scale=0.02, duration_s=0.1, seed=1)
assert "scipy.linalg" not in sys.modules, "SciPy's linear algebra was loaded"
import scipy.linalg  # still importable afterwards
assert "scipy.linalg.cython_blas" in sys.modules or hasattr(scipy.linalg, "blas")
print("ok")
"""


def test_lean_import_keeps_scipy_blas_out_and_importable_later() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LEAN_CHILD],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_no_compiled_simulator_code_uses_what_the_lean_import_changes() -> None:
    """np.dot, np.convolve, np.correlate and np.linalg compile differently without BLAS."""
    pattern = re.compile(r"np\.(dot|convolve|correlate|linalg)\b|numpy\.(dot|linalg)")
    offenders = []
    for path in sorted((ROOT / "simulator").rglob("*.py")):
        text = path.read_text()
        if "njit" in text and pattern.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_spike_steps_give_back_the_kernel_times_exactly() -> None:
    dt = NetworkConfig().dt_ms
    steps = np.arange(0, 250_000, 7, dtype=np.int64)
    times = steps * dt  # how window_numbers makes them
    compact = run_module._as_steps(times, dt)
    assert compact.dtype == np.int32
    assert np.array_equal(compact * dt, times)
    # a time that is not a step's stays as it is
    odd = np.array([0.1, 0.25])
    assert run_module._as_steps(odd, dt) is odd
    joined = run_module._join([compact[:5], odd, compact[5:9]], np.float64, dt)
    assert np.array_equal(joined, np.concatenate([times[:5], odd, times[5:9]]))


def test_run_returns_the_windows_spikes_bit_for_bit() -> None:
    protocol = get_experiment("ftsts-desync")
    result = run_experiment(protocol, n_scale=0.05, duration_s=0.3, seed=4)
    net = Network(protocol.network_config("paper", 0.05))
    net.reset(4)
    times, neurons = [], []
    for _ in range(len(result.window_t_ms)):
        stats = net.advance(None, 20.0)  # no stimulation in the first 0.3 s of Fig 3
        times.append(stats.spike_times_ms)
        neurons.append(stats.spike_neurons)
    assert not result.window_stim.any()
    assert result.spike_times_ms.dtype == np.float64
    assert np.array_equal(result.spike_times_ms, np.concatenate(times))
    assert np.array_equal(result.spike_neurons, np.concatenate(neurons))


def test_order_parameter_of_steps_is_that_of_times_bit_for_bit() -> None:
    from simulator.synchrony import bracketed_span, order_parameter

    dt = NetworkConfig().dt_ms
    rng = np.random.default_rng(7)
    steps = np.sort(rng.integers(0, 20_000, 30_000)).astype(np.int32)
    neurons = rng.integers(0, 60, steps.shape[0]).astype(np.int32)
    times = steps * dt
    for quantile in (None, 0.99):
        want = order_parameter(times, neurons, 50, 2000.0, 1.0, edge_quantile=quantile)
        got = order_parameter(steps, neurons, 50, 2000.0, 1.0, edge_quantile=quantile, dt_ms=dt)
        for w, g in zip(want, got, strict=True):
            assert w.tobytes() == g.tobytes()
    assert bracketed_span(steps, neurons, 50, 0.9, dt_ms=dt) == bracketed_span(
        times, neurons, 50, 0.9
    )


def test_steps_become_times_in_their_own_buffer() -> None:
    dt = NetworkConfig().dt_ms
    n = 3 * run_module._STEPS_PER_SLICE + 5  # several slices and a short one
    pieces = [np.arange(k, n, 4, dtype=np.int32) for k in range(4)]
    want = np.concatenate(pieces) * dt
    buffer, steps = run_module._steps_in_buffer(pieces)
    assert all(p is None for p in pieces)
    assert steps.base is not None
    assert np.shares_memory(buffer, steps)
    run_module._steps_to_times(buffer, steps, dt)
    assert buffer.tobytes() == want.tobytes()


def test_run_r_is_that_of_its_returned_spikes() -> None:
    from simulator.run import R_EDGE_QUANTILE
    from simulator.synchrony import order_parameter

    result = run_experiment(get_experiment("ftsts-desync"), n_scale=0.05, duration_s=0.5, seed=2)
    t, r, _ = order_parameter(result.spike_times_ms, result.spike_neurons, result.n_e,
                              result.duration_ms, 1.0, edge_quantile=R_EDGE_QUANTILE)  # fmt: skip
    assert t.tobytes() == result.r_t_ms.tobytes()
    assert r.tobytes() == result.r.tobytes()


def test_an_unsensed_network_has_the_same_dynamics_and_no_sensed_fields() -> None:
    cfg = get_experiment("ftsts-desync").network_config("paper", 0.1)
    sensed, unsensed = Network(cfg), Network(cfg, sense=False)
    for net in (sensed, unsensed):
        net.reset(seed=3)
    for _ in range(3):
        a, b = sensed.advance(None, 20.0), unsensed.advance(None, 20.0)
        np.testing.assert_array_equal(a.spike_times_ms, b.spike_times_ms)
        np.testing.assert_array_equal(a.spike_neurons, b.spike_neurons)
        assert a.weight_mv == b.weight_mv
        assert a.synchrony == b.synchrony
        assert a.lfp_uv.size > 0
        assert b.lfp_uv.size == 0
        assert np.isfinite(a.lfp_band_uv2)
        for name in SENSED_FIELDS:
            assert np.isnan(getattr(b, name)), name


UNSENSED_CHILD = r"""
import gc
from numba.core.registry import CPUDispatcher
from simulator.experiments import get_experiment
from simulator.run import run_experiment
from simulator.sensing import SENSED_FIELDS
run_experiment(get_experiment("ftsts-desync"), n_scale=0.02, duration_s=0.1, seed=1)
loaded = sorted(o.py_func.__module__ for o in gc.get_objects()
                if isinstance(o, CPUDispatcher) and o.signatures)
print(",".join(m for m in loaded if m.startswith("simulator.sensing")) or "none")
"""


def test_a_run_never_loads_the_sensors_compiled_code() -> None:
    """``neuroloop-sim run`` reads nothing sensed: the sensor's kernels stay out of memory."""
    out = subprocess.run(
        [sys.executable, "-c", UNSENSED_CHILD],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "none"
