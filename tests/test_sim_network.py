"""Network API: determinism by seed, validation, variants, and the reduced-size reproduction."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

import simulator.connectivity as connectivity
from core.errors import ConfigError
from simulator.config import NetworkConfig
from simulator.connectivity import neuron_index_dtype, storable_bounds
from simulator.experiments import EXPERIMENTS, get_experiment
from simulator.network import OBSERVATION_FIELDS, Network, SimulationError
from simulator.run import run_experiment
from simulator.stimulus import Stimulus

SMALL = NetworkConfig(n_e=160, n_i=40)


def _trace(
    cfg: NetworkConfig, seed: int, windows: int = 30
) -> tuple[np.ndarray, np.ndarray, float]:
    net = Network(cfg)
    net.reset(seed)
    times, neurons = [], []
    for w in range(windows):
        stats = net.advance(Stimulus(100.0) if w >= 10 else None, 20.0)
        times.append(stats.spike_times_ms)
        neurons.append(stats.spike_neurons)
    return np.concatenate(times), np.concatenate(neurons), net.weight_mv


@pytest.mark.parametrize("semantics", ["paper", "clean"])
def test_same_seed_gives_an_identical_run(semantics: str) -> None:
    cfg = SMALL.replace(semantics=semantics)
    t1, n1, w1 = _trace(cfg, 7)
    t2, n2, w2 = _trace(cfg, 7)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(n1, n2)
    assert w1 == w2
    t3, _, w3 = _trace(cfg, 8)
    assert t3.shape != t1.shape or not np.array_equal(t3, t1)
    assert w3 != w1


def test_a_deep_copy_continues_exactly_like_the_original() -> None:
    """A snapshot (copy.deepcopy) is a full network: it sees spikes and evolves identically."""
    net = Network(SMALL)
    net.reset(3)
    for _ in range(10):
        net.advance(None, 20.0)
    snap = copy.deepcopy(net)
    a = [net.advance(Stimulus(100.0), 20.0) for _ in range(5)]
    b = [snap.advance(Stimulus(100.0), 20.0) for _ in range(5)]
    assert sum(s.spike_neurons.size for s in b) > 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.spike_neurons, y.spike_neurons)
        np.testing.assert_array_equal(x.spike_times_ms, y.spike_times_ms)
    assert net.weight_mv == snap.weight_mv
    np.testing.assert_array_equal(net.v, snap.v)


def test_window_statistics_are_complete_and_plausible() -> None:
    net = Network(SMALL)
    net.reset(1)
    for _ in range(10):
        stats = net.advance(None, 20.0)
    obs = stats.observation()
    assert tuple(obs) == OBSERVATION_FIELDS
    assert all(np.isfinite(v) for v in obs.values())
    assert 0.0 <= obs["synchrony"] <= 1.0
    assert 0.0 <= obs["chi"] <= 1.0
    assert 0.0 < obs["mean_v_e_mv"] < 20.0
    assert obs["weight_mv"] == pytest.approx(260.0, abs=20.0)
    assert obs["charge_mv_ms"] == 0.0
    assert stats.t_end_ms == pytest.approx(200.0)
    on = net.advance(Stimulus(100.0), 20.0)
    assert on.charge_mv_ms == pytest.approx(2 * 2 * 100.0 * 1.0)  # pulses at 0 and 12 ms
    assert on.stimulating


def test_paper_semantics_needs_whole_chunks_and_clean_does_not() -> None:
    net = Network(SMALL)
    net.reset(0)
    with pytest.raises(ConfigError, match=re.escape("multiple of 20.0 ms in paper semantics")):
        net.advance(None, 10.0)
    clean = Network(SMALL.replace(semantics="clean"))
    clean.reset(0)
    assert clean.advance(None, 10.0).t_end_ms == pytest.approx(10.0)


def test_use_before_reset_is_a_clear_error() -> None:
    with pytest.raises(SimulationError, match=re.escape("reset(seed) must be called")):
        Network(SMALL).advance(None, 20.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_e": 0}, "Expected n_e to be an integer >= 1, actual 0"),
        ({"p_connect": 1.5}, "Expected p_connect in [0.0, 1.0], actual 1.5"),
        ({"dt_ms": float("nan")}, "Expected a finite dt_ms, actual nan"),
        ({"semantics": "matlab"}, "Expected semantics 'paper' or 'clean', actual 'matlab'"),
        ({"delay_ms": 5.05}, "Expected delay_ms to be a whole number of dt_ms=0.1"),
        ({"tau_m_spread_ms": 12.0}, "Expected tau_m_spread_ms < tau_m_ms (10.0), actual 12.0"),
        ({"tau_ltp_ms": 0.1}, "Expected tau_ltp_ms > dt_ms=0.1 (forward Euler decays by 1 − dt/τ"),
        ({"bogus": 1}, "actual unknown ['bogus']"),
        ({"n_ee": 80}, "actual unknown ['n_ee']. Did you mean n_e"),
    ],
)
def test_invalid_configuration_names_field_and_value(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        NetworkConfig().replace(**changes)


def test_too_many_i_cells_for_the_kernels_hit_counter_is_a_clear_error() -> None:
    net = Network(NetworkConfig(n_e=4, n_i=1 << 16))
    with pytest.raises(ConfigError, match=re.escape("fewer than 65536 I cells, actual n_i=65536")):
        net.reset(seed=1)


def test_unknown_protocol_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=re.escape("Did you mean ftsts-desync")):
        get_experiment("ftsts-desynk")


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_protocol_variant_runs(name: str) -> None:
    protocol = get_experiment(name)
    scale = 40 / (protocol.network.get("n_e", 1600) + protocol.network.get("n_i", 400))
    result = run_experiment(protocol, n_scale=scale, duration_s=0.2, seed=3)
    assert np.isfinite(result.window_weight_mv).all()
    assert result.summary["spikes"] > 0


def test_variants_change_the_dynamics() -> None:
    base = SMALL
    variants = (
        {"j_ee_mv": 50.0, "j_ii_mv": 50.0},
        {"tau_m_spread_ms": 2.0},
        {"plastic_ie": True},
        {"stdp_rule": "symmetric"},
        {"crosstalk_fraction": 0.25},
    )
    for changes in variants:
        _, _, w_base = _trace(base, 4)
        _t, _, w = _trace(base.replace(**changes), 4)
        assert w != w_base, changes


def test_reduced_size_reproduction_of_fig3() -> None:
    """N = 500 (n_scale 0.25): the whole Fig 3 story in a few seconds.

    The synchronous baseline is weaker at this size (the paper's N = 2000 gives R ≈ 0.73), but
    stimulation still desynchronises, depresses E→I weights to the latch, and the network
    stays asynchronous afterwards.
    """
    result = run_experiment(get_experiment("ftsts-desync"), n_scale=0.25, seed=2)
    s = result.summary
    assert s["r_pre"] > 0.4
    assert s["r_stim"] < 0.2
    assert 15.0 <= s["latch_time_s"] <= 21.0
    assert s["r_tail"] < 0.1
    assert s["weight_mv"] < 80.0
    assert s["charge_delivered"] > 0.0


def test_reduced_size_control_potentiates() -> None:
    result = run_experiment(get_experiment("none"), n_scale=0.25, seed=2, duration_s=10.0)
    s = result.summary
    assert s["r_pre"] > 0.4
    assert s["weight_mv_at_10s"] >= 265.0  # potentiates (N = 2000 reaches >= 280)
    assert s["charge_delivered"] == 0.0
    assert s["latch_time_s"] is None


@pytest.mark.parametrize(
    ("lo", "hi"), [(0.0, 2.9), (0.1, 1.0), (1.0 / 3.0, 2.0 / 3.0), (0.0, 290.0 / 75.0)]
)
def test_storable_bounds_are_the_float32_values_just_inside(lo: float, hi: float) -> None:
    lo32, hi32 = storable_bounds(lo, hi)
    assert lo <= lo32 <= hi32 <= hi
    assert float(np.float32(lo32)) == lo32
    assert float(np.float32(hi32)) == hi32
    # nothing storable lies between a bound and its float32 value
    assert float(np.nextafter(np.float32(lo32), np.float32(-1.0))) < lo
    assert float(np.nextafter(np.float32(hi32), np.float32(np.inf))) > hi


def test_neuron_indices_are_int16_while_they_fit() -> None:
    assert neuron_index_dtype(32767) is np.int16
    assert neuron_index_dtype(32768) is np.int32
    net = Network(NetworkConfig(n_e=400, n_i=100))
    net.reset(seed=1)
    assert net._ei.target.dtype == net._ei.pre_of.dtype == net._ie.target.dtype == np.int16


@pytest.mark.parametrize("name", ["fig11-plastic-ie", "fig8-recurrent", "fig12-symmetric-stdp"])
def test_int16_and_int32_neuron_indices_give_the_same_run(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index type is storage only: spikes, weights and state agree bit for bit."""
    protocol = get_experiment(name)
    cfg = protocol.network_config("paper", 0.25)
    narrow = Network(cfg)
    narrow.reset(seed=4)
    monkeypatch.setattr(connectivity, "neuron_index_dtype", lambda n_cells: np.int32)
    wide = Network(cfg)
    wide.reset(seed=4)
    assert narrow._ei.target.dtype == np.int16
    assert wide._ei.target.dtype == wide._ie.pre_of.dtype == np.int32
    stim = protocol.stimulus or Stimulus(100.0)
    for w in range(10):
        a, b = (net.advance(stim if w >= 3 else None, 20.0) for net in (narrow, wide))
        np.testing.assert_array_equal(a.spike_neurons, b.spike_neurons)
        assert a.weight_mv == b.weight_mv
    assert a.spike_neurons.size > 0
    np.testing.assert_array_equal(narrow._ei.weight, wide._ei.weight)
    np.testing.assert_array_equal(narrow._ie.weight, wide._ie.weight)
    np.testing.assert_array_equal(narrow.v, wide.v)


def test_plastic_weights_are_float32_and_stay_within_their_bounds() -> None:
    """STDP drives weights into both bounds; float32 storage never leaves [w_min, w_max]."""
    # large steps reach both bounds quickly; 285/260 rounds up in float32, so a plain float32
    # store of the cap would lie above w_max
    cfg = NetworkConfig(n_e=160, n_i=40, eta=20.0, w_max_mv=285.0)
    net = Network(cfg)
    net.reset(seed=3)
    lo32, hi32 = storable_bounds(cfg.w_min_mv / cfg.j_i_mv, cfg.w_max_mv / cfg.j_i_mv)
    at_lo = at_hi = False
    for w in range(60):
        net.advance(Stimulus(200.0) if 20 <= w < 40 else None, 20.0)
        weights = net._ei.weight
        assert weights.dtype == np.float32
        # compared in double: NumPy would round a Python-float bound to float32 first
        assert float(weights.min()) >= cfg.w_min_mv / cfg.j_i_mv
        assert float(weights.max()) <= cfg.w_max_mv / cfg.j_i_mv
        at_lo |= bool(np.any(weights == np.float32(lo32)))
        at_hi |= bool(np.any(weights == np.float32(hi32)))
    assert at_lo
    assert at_hi
    assert net.e_to_i_weights.dtype == np.float64


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_full_size_reproduction_of_fig3(seed: int) -> None:
    s = run_experiment(get_experiment("ftsts-desync"), seed=seed).summary
    assert 0.65 <= s["r_pre"] <= 0.80
    assert s["r_stim"] < 0.2
    assert 16.0 <= s["latch_time_s"] <= 19.0
    assert s["r_tail"] < 0.06
    assert s["weight_mv"] < 80.0


@pytest.mark.slow
def test_full_size_control() -> None:
    result = run_experiment(get_experiment("none"), seed=1)
    s = result.summary
    assert np.nanmin(result.r[result.r_t_ms >= 100.0][:-200]) > 0.6
    assert s["r_tail"] > 0.65
    assert s["weight_mv_at_10s"] >= 280.0


def test_each_paper_quirk_can_be_switched_off_alone() -> None:
    base = SMALL
    _, _, w_all = _trace(base, 5)
    for quirk in ("overwrite", "dt_noise", "dropped_step", "refractory_reset"):
        others = tuple(q for q in ("overwrite", "dt_noise", "dropped_step", "refractory_reset")
                       if q != quirk)  # fmt: skip
        _, _, w = _trace(base.replace(paper_quirks=others), 5)
        assert w != w_all, quirk
    with pytest.raises(ConfigError, match=re.escape("actual unknown ['typo']")):
        base.replace(paper_quirks=("typo",))
