"""One network on several threads (simulator/threaded.py): the same bits on every count."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from simulator.config import NetworkConfig
from simulator.experiments import get_experiment
from simulator.kernel_args import Structure
from simulator.network import Network
from simulator.thread_choice import ThreadChoice
from simulator.threaded import CELL_ALIGN, plan, thread_ranges, threadable

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("n", "n_e"), [(2000, 1600), (201, 160), (10, 8), (101, 30), (9, 1)])
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_every_cell_has_one_owner_who_draws_its_noise(n: int, n_e: int, threads: int) -> None:
    pairs, cells, n_pairs, n_cells = thread_ranges(n, n_e, threads)
    h = (n + 1) // 2
    cell_owner = np.zeros(n, dtype=int)
    pair_drawn = np.zeros(h, dtype=int)
    for t in range(threads):
        mine = np.zeros(h, dtype=bool)
        for lo, hi in pairs[t, : n_pairs[t]]:
            assert not mine[lo:hi].any(), "a thread transforms each pair once"
            mine[lo:hi] = True
        pair_drawn += mine
        for r, (lo, hi) in enumerate(cells[t, : n_cells[t]]):
            assert (lo < n_e) == (hi <= n_e), "a range stays in one population"
            # ranges end at cache-line multiples of cells, or at a population's end
            assert hi in (n_e, n) or hi % CELL_ALIGN == 0
            if r > 0:
                assert lo >= cells[t, r - 1, 1], "ascending"
            cell_owner[lo:hi] += 1
            # the owner transforms the noise pair of each of its cells
            for i in range(lo, hi):
                assert mine[i if i < h else i - h]
    assert np.all(cell_owner == 1)
    assert np.all(pair_drawn >= 1)
    if threads == 1:
        assert np.all(pair_drawn == 1)


def _run_digest(name: str, semantics: str, threads: int, windows: int = 12) -> str:
    exp = get_experiment(name)
    net = Network(exp.network_config(semantics, 0.1), threads=threads)  # type: ignore[arg-type]
    net.reset(seed=2)
    h = hashlib.sha256()
    for w in range(windows):
        stats = net.advance(exp.stimulus if w >= 3 else None, 20.0)
        h.update(stats.spike_neurons.tobytes())
        h.update(stats.spike_times_ms.tobytes())
        h.update(np.array(list(stats.observation().values())).tobytes())
    for array in (net.v, net._x_cross, net._xprev_cross, net._ei.weight, net._tr_e, net._tr_i,
                  net._kop_z[0], net._ltp_a, net._last_spike):  # fmt: skip
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("name", "semantics"),
    [("ftsts-desync", "paper"), ("ftsts-desync", "clean"), ("fig7-hetero-tau", "paper"),
     ("fig9-crosstalk", "clean"), ("fig8-recurrent", "paper")],
)  # fmt: skip
def test_one_two_and_three_threads_give_the_same_run(name: str, semantics: str) -> None:
    """Stimulated, plastic windows; Fig 8 runs on one thread whatever the count."""
    one = _run_digest(name, semantics, 1)
    assert _run_digest(name, semantics, 2) == one
    assert _run_digest(name, semantics, 3) == one


def test_two_threads_keep_the_frozen_dynamics() -> None:
    """Every experiment in both semantics: the pinned digests of the one-thread kernel."""
    from test_bench_digest import FROZEN

    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "digest_runs.py"), "--windows", "5",
         "--threads", "2"],
        capture_output=True, text=True, timeout=900, check=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["threads"] == 2
    changed = {k: v for k, v in report["digests"].items() if FROZEN.get(k) != v}
    assert not changed, f"two threads changed the dynamics: {changed}"


def test_thread_count_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"integer in \[1, 256\] or 'auto', actual 0"):
        Network(threads=0)
    net = Network()
    with pytest.raises(ConfigError, match="actual True"):
        net.threads = True


def test_cli_refuses_a_thread_count_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--experiment", "none", "--threads", "0", "--out", str(tmp_path / "r")])
    assert "expected an integer in [1, 256] or 'auto', actual '0'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _schedule_digest(
    cfg: NetworkConfig, threads: int, windows: list[tuple[float, bool]], block: int | None = None
) -> str:
    """A digest of a run of ``windows`` (duration in ms, stimulation on) on ``threads``.

    ``block`` forces the threaded kernel's block length (shorter than half the delay).
    """
    stim = get_experiment("ftsts-desync").stimulus
    net = Network(cfg, threads=threads)
    net.reset(seed=5)
    if block is not None:
        net._plan = plan(cfg.n, cfg.n_e, threads, cfg.delay_steps, net._ei, net._ie, block=block)
    h = hashlib.sha256()
    for duration_ms, on in windows:
        stats = net.advance(stim if on else None, duration_ms)
        h.update(stats.spike_neurons.tobytes())
        h.update(stats.spike_times_ms.tobytes())
        h.update(np.array(list(stats.observation().values())).tobytes())
    for array in (net.v, net._x_cross, net._xprev_cross, net._s_cross, net._hist_cross,
                  net._ei.weight, net._ltp_snap, net._ltp_g, net._tr_e, net._tr_i, net._kop_z[0],
                  net._kop_r[1], net._ltp_a, net._last_spike, net._prev_spike, net._ref,
                  net._spiked):  # fmt: skip
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _structure(cfg: NetworkConfig) -> Structure:
    net = Network(cfg)
    net.reset(seed=0)
    return net._structure


def _small(semantics: str = "clean", **changes: object) -> NetworkConfig:
    cfg = get_experiment("ftsts-desync").network_config(semantics, 0.1)  # type: ignore[arg-type]
    return cfg.replace(plasticity_onset_ms=0.0, **changes)


#: Windows of odd and even step counts, stimulation switched on and off between calls, and
#: windows shorter than a block and than the delay (clean semantics: any multiple of dt).
ODD_WINDOWS = [(2.3, False), (0.1, True), (7.7, True), (20.0, False), (0.5, True),
               (13.1, True), (4.9, False), (20.0, True)]  # fmt: skip


@pytest.mark.parametrize("block", [None, 1, 3, 7])
def test_blocks_clipped_at_call_ends_give_the_same_run(block: int | None) -> None:
    """Blocks of every length, clipped at calls of odd and even steps, stimulation toggled."""
    cfg = _small()
    one = _schedule_digest(cfg, 1, ODD_WINDOWS)
    assert _schedule_digest(cfg, 2, ODD_WINDOWS, block) == one
    assert _schedule_digest(cfg, 3, ODD_WINDOWS, block) == one


def test_segments_shorter_than_a_block_give_the_same_run() -> None:
    """A fast E trace makes potentiation segments of 20 steps: blocks end at every one."""
    cfg = _small(tau_ltp_ms=0.2)
    windows = [(20.0, True), (7.3, False), (20.0, True)]
    one = _schedule_digest(cfg, 1, windows)
    assert _schedule_digest(cfg, 2, windows) == one
    assert _schedule_digest(cfg, 2, windows, block=7) == one


@pytest.mark.parametrize("delay_ms", [0.1, 0.2, 0.3, 1.0])
def test_short_delays_give_the_same_run(delay_ms: float) -> None:
    """A one-step delay runs on one thread; from two steps on, blocks of half the delay."""
    cfg = _small(delay_ms=delay_ms)
    assert threadable(_structure(cfg), False, cfg.delay_steps) == (cfg.delay_steps >= 2)
    windows = [(5.3, True), (20.0, False), (3.1, True)]
    one = _schedule_digest(cfg, 1, windows)
    assert _schedule_digest(cfg, 2, windows) == one


def test_paper_semantics_odd_network_sizes() -> None:
    """199-step calls (the dropped step), an odd number of cells and a small E population."""
    cfg = _small("paper").replace(n_e=31, n_i=70)
    windows = [(20.0, True), (40.0, False), (20.0, True)]
    one = _schedule_digest(cfg, 1, windows)
    assert _schedule_digest(cfg, 2, windows) == one
    assert _schedule_digest(cfg, 3, windows, block=4) == one


#: Paper semantics (20 ms calls) with only the overwrite quirk: the E→I rows are walked by the
#: spiking cell's thread and the jumps handed to the targets' threads in a buffer.
CHUNK_WINDOWS = [(20.0, True), (40.0, False), (20.0, True), (20.0, False)]


@pytest.mark.parametrize("block", [None, 1, 3, 7])
def test_rows_by_spiking_cell_give_the_same_run(block: int | None) -> None:
    """Overwrite semantics: the last jump onto a target wins, whichever thread made it."""
    cfg = _small("paper", paper_quirks=("overwrite",))
    one = _schedule_digest(cfg, 1, CHUNK_WINDOWS)
    assert _schedule_digest(cfg, 2, CHUNK_WINDOWS, block) == one
    assert _schedule_digest(cfg, 3, CHUNK_WINDOWS, block) == one


@pytest.mark.parametrize("plastic", [True, False])
def test_rows_by_spiking_cell_with_short_segments_give_the_same_run(plastic: bool) -> None:
    """20-step potentiation segments: each thread flushes its own rows at every one.

    Without plasticity the rows only jump, and the segments (which advance only with it) are
    shorter than a call.
    """
    cfg = _small("paper", paper_quirks=("overwrite",), tau_ltp_ms=0.2)
    if not plastic:
        cfg = cfg.replace(plasticity_onset_ms=1e9)
    one = _schedule_digest(cfg, 1, CHUNK_WINDOWS)
    assert _schedule_digest(cfg, 2, CHUNK_WINDOWS) == one
    assert _schedule_digest(cfg, 3, CHUNK_WINDOWS, block=7) == one


def test_plan_rejects_a_delay_below_two_steps() -> None:
    net = Network(_small().replace(n_e=80, n_i=20))
    net.reset(seed=0)
    ei, ie = net._ei, net._ie
    with pytest.raises(ValueError, match="delay_steps >= 2"):
        plan(100, 80, 2, 1, ei, ie)
    assert plan(100, 80, 2, 50, ei, ie).block == 25
    assert plan(100, 80, 2, 50, ei, ie, block=60).block == 25
    assert plan(100, 80, 2, 7, ei, ie, block=2).block == 2


def test_a_new_seed_gets_a_new_plan() -> None:
    """The plan holds where each synapse row splits among the threads: reset draws new rows."""
    cfg = _small()
    windows = [(20.0, True), (3.3, False)]
    net = Network(cfg, threads=2)
    net.reset(seed=9)
    net.advance(None, 20.0)
    first = net._plan
    net.reset(seed=5)
    assert net._plan is None
    h = hashlib.sha256()
    for duration_ms, on in windows:
        stats = net.advance(get_experiment("ftsts-desync").stimulus if on else None, duration_ms)
        h.update(stats.spike_neurons.tobytes())
        h.update(stats.spike_times_ms.tobytes())
    assert first is not None
    assert net._plan is not first
    fresh = Network(cfg)
    fresh.reset(seed=5)
    h1 = hashlib.sha256()
    for duration_ms, on in windows:
        stats = fresh.advance(get_experiment("ftsts-desync").stimulus if on else None, duration_ms)
        h1.update(stats.spike_neurons.tobytes())
        h1.update(stats.spike_times_ms.tobytes())
    assert h.hexdigest() == h1.hexdigest()
    assert np.array_equal(net._ei.weight, fresh._ei.weight)


def test_auto_picks_the_faster_count_and_keeps_checking() -> None:
    """Each candidate is tried (its first call untimed), the faster is used, the other rechecked."""
    choice = ThreadChoice((1, 2))
    cost = {1: 1.0, 2: 0.6}  # seconds per step: two threads faster
    used = []
    for _ in range(200):
        threads = choice.next()
        used.append(threads)
        choice.record(threads, steps=100, seconds=100 * cost[threads])
    assert used[:6] == [1, 1, 1, 2, 2, 2]
    assert choice.chosen == 2
    assert used[6:].count(2) > 0.9 * len(used[6:])
    assert 1 in used[50:], "the slower count is tried again now and then"
    cost = {1: 1.0, 2: 3.0}  # the machine got busy: two threads now slower
    for _ in range(400):
        threads = choice.next()
        used.append(threads)
        choice.record(threads, steps=100, seconds=100 * cost[threads])
    assert choice.chosen == 1
    assert used[-100:].count(1) > 90


def test_auto_first_call_of_a_count_is_not_timed() -> None:
    """A compile on a count's first call must not condemn it."""
    choice = ThreadChoice((1, 2))
    for threads, seconds in ((1, 1.0), (1, 1.0), (1, 1.0), (2, 500.0), (2, 0.5), (2, 0.5)):
        assert choice.next() == threads
        choice.record(threads, steps=1, seconds=seconds)
    assert choice.chosen == 2


def test_auto_threads_give_the_same_run() -> None:
    """A network on threads="auto" switches counts between calls: the same bits as one thread."""
    cfg = _small()
    one = _schedule_digest(cfg, 1, ODD_WINDOWS * 2)
    assert _schedule_digest(cfg, "auto", ODD_WINDOWS * 2) == one  # type: ignore[arg-type]
    net = Network(cfg, threads="auto")
    assert net.threads == "auto"
    with pytest.raises(ConfigError, match=r"integer in \[1, 256\] or 'auto', actual 'all'"):
        net.threads = "all"


def test_cli_refuses_a_thread_count_that_is_not_a_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--experiment", "none", "--threads", "two", "--out", str(tmp_path / "r")])
    assert "expected an integer in [1, 256] or 'auto', actual 'two'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_run_with_auto_threads_matches_one_thread(tmp_path: Path) -> None:
    """``--threads auto`` picks some count; the summary is the one thread's, whatever it picked."""
    from simulator.cli import main

    common = ["run", "--experiment", "ftsts-desync", "--n-scale", "0.1", "--duration", "0.5",
              "--no-figure", "--no-progress"]  # fmt: skip
    assert main([*common, "--threads", "auto", "--out", str(tmp_path / "auto")]) == 0
    assert main([*common, "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    auto = json.loads((tmp_path / "auto" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    for timing in ("wall_s", "model_s_per_wall_s", "jit_s"):
        auto.pop(timing, None)
        one.pop(timing, None)
    assert auto == one


def test_more_threads_than_cells() -> None:
    """Threads that own no cell still meet the others at every block."""
    cfg = _small().replace(n_e=7, n_i=4)
    windows = [(3.3, True), (20.0, False), (2.1, True)]
    one = _schedule_digest(cfg, 1, windows)
    assert _schedule_digest(cfg, 8, windows) == one
