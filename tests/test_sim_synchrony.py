"""Synchrony measures on constructed spike trains with known answers, and the noise source."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from protocol.errors import ConfigError
from simulator.noise import (
    ZIG_KI,
    ZIG_WI,
    _fast_path,
    load_state,
    noise_generator,
    sfc64_words,
    standard_normal_f32,
    store_state,
)
from simulator.synchrony import chi_from_sums, epoch_mean, order_parameter


def _regular(n: int, period_ms: float, phases_ms: np.ndarray, stop_ms: float):
    times, neurons = [], []
    for k in range(n):
        t = np.arange(phases_ms[k], stop_ms, period_ms)
        times.append(t)
        neurons.append(np.full(t.shape, k))
    return np.concatenate(times), np.concatenate(neurons)


def test_identical_phases_give_r_one() -> None:
    t, n = _regular(50, 25.0, np.full(50, 3.0), 1000.0)
    grid, r, cnt = order_parameter(t, n, 50, 1000.0, 0.5)
    inside = (grid >= 3.0) & (grid < 950.0)
    np.testing.assert_allclose(r[inside], 1.0, atol=1e-9)
    assert (cnt[inside] == 50).all()


def test_uniform_phases_give_r_zero_and_random_phases_the_finite_size_floor() -> None:
    n = 400
    t, k = _regular(n, 20.0, np.arange(n) * 20.0 / n, 2000.0)
    grid, r, _ = order_parameter(t, k, n, 2000.0)
    assert epoch_mean(grid, r, 100.0, 1900.0) < 1e-6
    rng = np.random.default_rng(0)
    t, k = _regular(n, 20.0, rng.uniform(0, 20.0, n), 2000.0)
    grid, r, _ = order_parameter(t, k, n, 2000.0)
    floor = epoch_mean(grid, r, 100.0, 1900.0)
    assert 0.2 / math.sqrt(n) < floor < 3.0 / math.sqrt(n)


def test_neurons_without_bracketing_spikes_are_masked_not_phased() -> None:
    # one neuron fires regularly; another fires only once: it never enters the average
    t = np.array([10.0, 30.0, 50.0, 70.0, 40.0])
    n = np.array([0, 0, 0, 0, 1])
    grid, r, cnt = order_parameter(t, n, 2, 100.0, 1.0, min_valid_fraction=0.0)
    assert np.isnan(r[grid < 10.0]).all()
    assert (cnt[(grid >= 10.0) & (grid < 70.0)] == 1).all()
    np.testing.assert_allclose(r[(grid >= 10.0) & (grid < 70.0)], 1.0)
    assert np.isnan(r[grid >= 70.0]).all()


def test_i_cells_are_ignored() -> None:
    t, n = _regular(4, 10.0, np.array([0.0, 0.0, 2.0, 7.0]), 200.0)
    _, r_e, _ = order_parameter(t, n, 2, 200.0, min_valid_fraction=0.0)
    _, r_all, _ = order_parameter(t, n, 4, 200.0, min_valid_fraction=0.0)
    assert np.nanmean(r_e[20:150]) == pytest.approx(1.0)
    assert np.nanmean(r_all[20:150]) < 0.9


def test_chi_is_one_for_identical_voltages_and_small_for_independent_ones() -> None:
    rng = np.random.default_rng(1)
    steps, n = 200, 300
    common = np.sin(np.linspace(0, 6, steps))
    v_same = np.repeat(common[:, None], n, axis=1)
    v_indep = rng.standard_normal((steps, n))
    for v, lo, hi in ((v_same, 0.999, 1.0), (v_indep, 0.0, 0.15)):
        chi = chi_from_sums(v.mean(axis=1), v.sum(axis=0), (v * v).sum(axis=0), steps)
        assert lo <= chi <= hi


def test_noise_is_standard_normal_and_reproducible() -> None:
    a = standard_normal_f32(noise_generator(3), (400, 1000)).astype(np.float64)
    b = standard_normal_f32(noise_generator(3), (400, 1000)).astype(np.float64)
    np.testing.assert_array_equal(a, b)
    x = a.ravel()
    assert abs(x.mean()) < 0.005
    assert x.var() == pytest.approx(1.0, abs=0.01)
    assert (x**4).mean() == pytest.approx(3.0, abs=0.05)
    # tail mass beyond 3 SD (two-sided): 0.0026998
    assert (np.abs(x) > 3.0).mean() == pytest.approx(0.0026998, rel=0.1)
    # Kolmogorov–Smirnov distance to the normal CDF
    xs = np.sort(x[:100_000])
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(xs / math.sqrt(2.0)))
    d = np.max(np.abs(cdf - np.arange(1, xs.size + 1) / xs.size))
    assert d < 1.63 / math.sqrt(xs.size)  # 1 % critical value


def test_kernel_words_are_the_generators_own_stream() -> None:
    ours, numpy_side = noise_generator(11), noise_generator(11)
    state = load_state(ours)
    words = np.empty(1001, dtype=np.uint64)
    sfc64_words(state, words)
    store_state(ours, state)
    np.testing.assert_array_equal(words, numpy_side.bit_generator.random_raw(1001))
    # the generator continues exactly where the kernel stopped
    np.testing.assert_array_equal(ours.random(5), numpy_side.random(5))


def test_noise_rows_continue_the_stream_and_odd_rows_work() -> None:
    rng = noise_generator(5)
    whole = standard_normal_f32(rng, (3, 7))
    again = noise_generator(5)
    rows = [standard_normal_f32(again, (7,)) for _ in range(3)]
    np.testing.assert_array_equal(whole, np.stack(rows))
    np.testing.assert_array_equal(
        rng.bit_generator.state["state"]["state"], again.bit_generator.state["state"]["state"]
    )


def test_noise_refuses_other_bit_generators() -> None:
    with pytest.raises(ConfigError, match="SFC64"):
        standard_normal_f32(np.random.default_rng(1), (4,))


def test_noise_stream_is_frozen() -> None:
    """Every published result depends on these exact draws: a faster implementation must keep
    them bit for bit (rejections, their order, and an odd row's unused half-word included)."""
    draws = standard_normal_f32(noise_generator(12345), (6, 2001))
    digest = hashlib.sha256(draws.tobytes()).hexdigest()
    assert digest == "d93c0c76e4768476d01f3853e74585fcd9d5c3f9e1ff7f6f4b642828ff2a1ee5"


def test_ziggurat_fast_path_matches_its_formula_bit_for_bit() -> None:
    """(±magnitude) × width in double, rounded to float32, with +0.0 (never -0.0) for a zero
    magnitude, whatever the context Numba compiled it in; rejections listed in index order."""
    rng = np.random.default_rng(4)
    halves = rng.integers(-(2**31), 2**31, 4096, dtype=np.int64).astype(np.int32)
    halves[:512] &= np.int32(0x1FF)  # zero magnitudes, both signs, every layer
    out = np.empty(halves.shape[0], dtype=np.float32)
    rejected = np.empty(halves.shape[0], dtype=np.int32)
    n_rej = _fast_path(halves, out, rejected, ZIG_KI, ZIG_WI)
    idx = halves & 0xFF
    sign = 1 - 2 * ((halves >> 8) & 1)
    rabs = (halves >> 9) & 0x7FFFFF
    expected = ((sign * rabs).astype(np.float64) * ZIG_WI[idx]).astype(np.float32)
    np.testing.assert_array_equal(out.view(np.int32), expected.view(np.int32))
    np.testing.assert_array_equal(rejected[:n_rej], np.nonzero(rabs >= ZIG_KI[idx])[0])
