"""Every figure the project writes: the files appear, and the data they plot is honest (19.5).

Pixels are not compared; the tests check the series a figure draws (edges, smoothing, the cells
a raster shows) and that each figure function writes a PNG.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from controller.training.evaluate import RunRecord as RunRecord_
from simulator.experiments import get_experiment
from simulator.figure import RASTER_E_CELLS, RASTER_I_CELLS, plot_run, raster_rows, smooth_rate
from simulator.run import RunResult, run_experiment
from simulator.synchrony import bracketed_span, order_parameter

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_ftsts() -> RunResult:
    """FTSTS at N = 200 for 3 s: stimulation from 1.98 s to the end."""
    return run_experiment(get_experiment("ftsts-desync"), n_scale=0.1, duration_s=3.0, seed=2)


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


# ------------------------------------------------------------------ evaluation and training


def _record(method: str, seed: int, ttd: float | None) -> RunRecord_:
    empty = np.zeros(0)
    return RunRecord_(
        method=method, seed=seed, r_tail=0.03 if method != "off" else 0.75,
        charge=0.0 if method == "off" else 2e5 + seed, time_to_desync_s=ttd, r_pre=0.7,
        r_controlled=0.1, weight_end_mv=60.0, stim_off_s=None, mean_setpoint={},
        t_r_s=empty, r_1s=empty, t_window_s=empty, weight_mv=empty, amplitude_mv=empty,
        frequency_hz=empty, pulse_width_us=empty, raster_pre=(empty, empty),
        raster_post=(empty, empty),
    )  # fmt: skip


def test_summary_figure_tick_labels_do_not_overlap_and_show_time_to_desync() -> None:
    from controller.training.figures import _plt, summary_figure

    records = [
        _record(m, s, None if m == "off" else (9.0 + s if m == "policy" else 0.86))
        for m in ("policy", "ftsts", "latched", "off")
        for s in (0, 1)
    ]
    plt = _plt()
    fig = summary_figure(records, ["policy", "ftsts", "latched", "off"], plt)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert [ax.get_ylabel() for ax in fig.axes][2] == "time to desynchronise (s)"
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert len(boxes) == 4
        for left, right in itertools.pairwise(boxes):
            assert left.x1 < right.x0, [t.get_text() for t in ax.get_xticklabels()]
    plt.close(fig)


def test_desync_summary_spread_and_table() -> None:
    from controller.training.evaluate import desync_summary, format_table, summarise

    assert desync_summary([3.0, None, 1.0, 2.0]) == {
        "desynchronised_runs": 3, "time_to_desync_s_mean": 2.0,
        "time_to_desync_s_sd": pytest.approx(np.std([1.0, 2.0, 3.0])),
        "time_to_desync_s_median": 2.0, "time_to_desync_s_min": 1.0, "time_to_desync_s_max": 3.0,
    }  # fmt: skip
    records = [_record("policy", s, 9.0 + s) for s in (0, 1)]
    records += [_record("ftsts", s, 0.86) for s in (0, 1)]
    records += [_record("off", s, None) for s in (0, 1)]
    table = format_table(summarise(records)).splitlines()
    assert "time to desync. s: median [min–max]" in table[0]
    rows = {line.split()[0]: line for line in table[2:5]}
    assert rows["policy"].endswith("9.50 [9.00–10.00]")
    assert rows["ftsts"].endswith("0.86 [0.86–0.86]")
    assert rows["off"].endswith("never")
    assert "trailing 1 s mean of R falls below 0.2" in table[-1]


def test_eval_cli_prints_a_table_with_time_to_desync(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "eval"
    res = subprocess.run(
        [sys.executable, "-m", "controller.eval_cli", "--policy",
         str(root / "controller/policies/pretrained/ftsts_ppo"), "--seeds", "1", "--out",
         str(out), "--n-scale", "0.05", "--tail-s", "0.5", "--workers", "1",
         "--methods", "ftsts,off"],
        cwd=root, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((out / "eval.json").read_text())
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["method", "runs"]
    for method in ("ftsts", "off"):
        summary = result["summary"][method]
        (run,) = result["methods"][method]
        assert summary["time_to_desync_s_median"] == run["time_to_desync_s"]
        row = next(line for line in lines if line.startswith(f"{method} "))
        if run["time_to_desync_s"] is None:
            assert row.endswith("never")
        else:
            ttd = run["time_to_desync_s"]
            assert row.endswith(f"{ttd:.2f} [{ttd:.2f}–{ttd:.2f}]")
    assert (out / "summary.png").read_bytes()[:8] == PNG


def test_training_curves_from_a_monitor_file(tmp_path: Path) -> None:
    from controller.training.figures import training_curves

    run = tmp_path / "run"
    run.mkdir()
    rows = "\n".join(f"{-1 + k / 50},{k},{k},0.04,{3e5 - k * 100}" for k in range(60))
    (run / "0.monitor.csv").write_text(
        '#{"t_start": 0}\nr,l,t,r_tail,total_charge_mv_ms\n' + rows + "\n"
    )
    path = training_curves([run], tmp_path / "curves.png")
    assert path is not None
    assert path.read_bytes()[:8] == PNG
    assert training_curves([tmp_path / "empty"], tmp_path / "none.png") is None


@pytest.mark.parametrize(
    "name", ["sim_ftsts_fast", "device_constant_realtime", "replay_overrun_fault"]
)
def test_replay_report_writes_every_figure(name: str, tmp_path: Path) -> None:
    from controller.replay.figures import write_figures
    from controller.replay.session import load_session

    session = load_session(Path(__file__).parent / "data" / "replay" / f"{name}.nlrec")
    paths = write_figures(session, tmp_path)
    assert [p.name for p in paths] == [
        "stimulation.png", "observations.png", "envelope.png", "timing.png",
    ]  # fmt: skip
    for path in paths:
        assert path.read_bytes()[:8] == PNG
