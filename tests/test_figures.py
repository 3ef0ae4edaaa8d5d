"""Every figure the project writes: the files appear, and the data they plot is honest (19.5).

Pixels are not compared; the tests check the series a figure draws (edges, smoothing, the cells
a raster shows) and that each figure function writes a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.figure import RASTER_E_CELLS, RASTER_I_CELLS, plot_run, raster_rows, smooth_rate
from simulator.protocols import get_protocol
from simulator.run import RunResult, run_protocol
from simulator.synchrony import bracketed_span, order_parameter

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_ftsts() -> RunResult:
    """FTSTS at N = 200 for 3 s: stimulation from 1.98 s to the end."""
    return run_protocol(get_protocol("ftsts-desync"), n_scale=0.1, duration_s=3.0, seed=2)


def _regular_uniform_phases(n: int, period_ms: float, stop_ms: float) -> tuple[np.ndarray, ...]:
    offsets = np.arange(n) * period_ms / n
    times = [np.arange(o, stop_ms, period_ms) for o in offsets]
    neurons = [np.full(t.shape, k) for k, t in enumerate(times)]
    return np.concatenate(times), np.concatenate(neurons)


def test_uniform_phases_have_an_edge_artefact_that_edge_quantile_removes() -> None:
    # 400 identical oscillators with uniformly spread phases: R is 0 wherever every cell is
    # bracketed; in the last period the cells still bracketed are those about to fire.
    times, neurons = _regular_uniform_phases(400, 25.0, 1000.0)
    t, raw, _ = order_parameter(times, neurons, 400, 1000.0)
    assert np.nanmax(raw[t >= 985.0]) > 0.5  # the artefact exists without trimming
    t, r, _ = order_parameter(times, neurons, 400, 1000.0, edge_quantile=0.99)
    start, stop = bracketed_span(times, neurons, 400, 0.99)
    assert start == pytest.approx(396 * 25.0 / 400)  # the 99th percentile of first spikes
    assert stop == pytest.approx(975.0 + 3 * 25.0 / 400)  # the 1st percentile of last spikes
    assert np.isnan(r[(t < start) | (t > stop)]).all()
    assert np.nanmax(r) < 0.01  # at most 1 % of the cells are left out near the edges


def test_bracketed_span_rejects_a_bad_quantile() -> None:
    with pytest.raises(ValueError, match="edge quantile in"):
        bracketed_span(np.array([1.0, 2.0]), np.array([0, 0]), 1, 0.0)


def test_run_r_has_no_edge_artefact(small_ftsts: RunResult) -> None:
    res = small_ftsts
    defined = np.nonzero(np.isfinite(res.r))[0]
    t = res.r_t_ms
    tail = res.r[(t >= res.duration_ms - 1000.0) & (t < res.duration_ms - 100.0)]
    last = res.r[defined[-20:]]
    assert last.max() <= np.nanmax(tail)  # the last samples do not climb above the tail
    start, stop = bracketed_span(res.spike_times_ms, res.spike_neurons, res.n_e, 0.99)
    assert t[defined[0]] >= start
    assert t[defined[-1]] <= stop
    assert res.duration_ms - stop < 100.0  # only the last inter-spike interval is left out


def test_smoothed_rates_have_no_edge_artefact() -> None:
    constant = np.full(300, 42.0)
    np.testing.assert_allclose(smooth_rate(constant), 42.0)
    step = np.concatenate([np.zeros(100), np.ones(100)])
    out = smooth_rate(step)
    assert out[0] == 0.0
    assert out[-1] == 1.0
    np.testing.assert_allclose(smooth_rate(np.array([3.0, 5.0, 7.0])), [4.0, 5.0, 6.0])
    np.testing.assert_allclose(smooth_rate(np.array([3.0, 5.0])), [3.0, 5.0])


def test_rasters_show_the_stated_cells(small_ftsts: RunResult) -> None:
    res = small_ftsts
    n_e_shown, n_i_shown = min(RASTER_E_CELLS, res.n_e), min(RASTER_I_CELLS, res.n_i)
    times, rows, is_e = raster_rows(res, 2800.0, 3000.0, n_e_shown, n_i_shown)
    assert times.size > 0
    assert ((times >= 2800.0) & (times < 3000.0)).all()
    assert rows[is_e].max() < n_e_shown
    assert rows[~is_e].min() >= n_e_shown
    assert rows[~is_e].max() < n_e_shown + n_i_shown
    window = (res.spike_times_ms >= 2800.0) & (res.spike_times_ms < 3000.0)
    shown_e = window & (res.spike_neurons < n_e_shown)
    assert int(is_e.sum()) == int(shown_e.sum())


def test_plot_run_writes_a_png(small_ftsts: RunResult, tmp_path: Path) -> None:
    path = plot_run(small_ftsts, tmp_path / "figure.png")
    assert path.read_bytes()[:8] == PNG
