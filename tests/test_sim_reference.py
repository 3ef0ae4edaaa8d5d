"""The Numba kernel agrees with the slow NumPy reference, step by step."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import NetworkConfig
from simulator.kernel import LTP_SEGMENT_STEPS
from simulator.network import Network
from simulator.noise import load_state
from simulator.reference import ReferenceState, reference_step
from simulator.stimulus import Stimulus


def _assert_within_ulps(got: np.ndarray, expected: np.ndarray, ulps: int = 1) -> None:
    """Float32 arrays equal to within ``ulps`` float32 units in the last place of ``expected``."""
    assert got.dtype == expected.dtype == np.float32
    ulp = ulps * np.spacing(np.abs(expected)).astype(np.float64).ravel()
    off = np.abs(got.astype(np.float64) - expected.astype(np.float64)).ravel()
    worst = int(np.argmax(off - ulp))
    assert off[worst] <= ulp[worst], (
        f"element {worst}: expected {expected.flat[worst]!r} (±{ulps} ulp), "
        f"actual {got.flat[worst]!r}"
    )


def _snapshot(net: Network) -> ReferenceState:
    return ReferenceState(
        v=net.v.copy(),
        ref=net._ref.copy(),
        x_cross=net._x_cross.copy(),
        s_cross=net._s_cross.copy(),
        hist_cross=net._hist_cross.copy(),
        head=int(net._head[0]),
        tr_e=net._tr_e.copy(),
        tr_i=net._tr_i.copy(),
        w_ei=net._ei.weight.copy(),
        w_ie=net._ie.weight.copy(),
    )


@pytest.mark.parametrize("semantics", ["paper", "clean"])
def test_kernel_matches_reference_step_by_step(semantics: str) -> None:
    cfg = NetworkConfig(n_e=80, n_i=20, p_connect=0.3, semantics=semantics)  # type: ignore[arg-type]
    net = Network(cfg)
    net.reset(seed=11)
    # a rich state: synchronous firing, plasticity on, traces and weights away from defaults
    for _ in range(6):
        net.advance(None, 20.0)
    for _ in range(4):
        net.advance(Stimulus(100.0), 20.0)
    rng = np.random.default_rng(5)
    ei = (net._ei.ptr, net._ei.target)
    ie = (net._ie.ptr, net._ie.target)
    total_spikes = 0
    plastic_changes = 0
    for step in range(400):
        state = _snapshot(net)
        xi = rng.standard_normal((1, cfg.n)).astype(np.float32)
        u_e, u_i = (
            (-100.0, 100.0) if step % 12 < 1 else ((100.0, -100.0) if step % 12 < 2 else (0.0, 0.0))
        )
        expected, spikes = reference_step(
            cfg, state, dt_over_tau=net._dt_over_tau,
            noise_increment=net._gain_off * xi[0].astype(np.float64),
            u_e=u_e, u_i=u_i, plast_on=True, ei=ei, ie=ie,
        )  # fmt: skip
        got = net.integrate_explicit(np.array([u_e]), np.array([u_i]), xi, plast_on=True)
        assert list(got) == spikes, f"step {step}: spikes differ"
        # the kernel computes in float32, the reference in double rounded once to float32: one
        # ulp apart, two for X in clean semantics (a one-ulp difference in the decayed X is
        # carried into the sum of the step's jumps, which can be smaller than X was)
        _assert_within_ulps(net.v, expected.v)
        np.testing.assert_array_equal(net._ref, expected.ref)
        _assert_within_ulps(net._x_cross, expected.x_cross, ulps=2)
        _assert_within_ulps(net._s_cross, expected.s_cross)
        np.testing.assert_array_equal(net._hist_cross, expected.hist_cross)  # copies of S
        assert int(net._head[0]) == expected.head
        np.testing.assert_allclose(net._tr_e, expected.tr_e, rtol=0, atol=1e-15)
        np.testing.assert_allclose(net._tr_i, expected.tr_i, rtol=0, atol=1e-15)
        # float32 storage: each update computed in double and rounded once, as in the kernel
        np.testing.assert_array_equal(net._ei.weight.copy(), expected.w_ei)
        plastic_changes += int(np.count_nonzero(state.w_ei != expected.w_ei))
        total_spikes += len(spikes)
    # the comparison exercised spikes, jumps and plasticity, not a quiet network
    assert total_spikes > 60
    assert plastic_changes > 60


def _undriven_reference_run(
    cfg: NetworkConfig, net: Network, state: ReferenceState, xi: np.ndarray
) -> tuple[ReferenceState, list[int], int]:
    """``len(xi)`` reference steps from ``state`` without stimulation, plasticity on.

    Returns:
        The final state, every spike in order, and how many E→I weight updates changed a weight.
    """
    spikes: list[int] = []
    changed = 0
    for k in range(xi.shape[0]):
        new, step_spikes = reference_step(
            cfg, state, dt_over_tau=net._dt_over_tau,
            noise_increment=net._gain_off * xi[k].astype(np.float64),
            u_e=0.0, u_i=0.0, plast_on=True,
            ei=(net._ei.ptr, net._ei.target), ie=(net._ie.ptr, net._ie.target),
        )  # fmt: skip
        changed += int(np.count_nonzero(new.w_ei != state.w_ei))
        spikes.extend(step_spikes)
        state = new
    return state, spikes, changed


@pytest.mark.parametrize(
    ("semantics", "tau_ltp_ms"), [("paper", 20.0), ("clean", 20.0), ("paper", 0.2)]
)
def test_pending_potentiation_matches_reference_over_a_long_call(
    semantics: str, tau_ltp_ms: float
) -> None:
    """Over one kernel call of many steps, potentiation is left pending and applied when the
    E cell fires or the call ends (kernel._flush_potentiation): the same weights as applying
    every step's potentiation at once, up to float32 rounding, and the same spikes. A trace
    that halves every step (τ = 2·dt) gets short segments (d^−m bounded) and still agrees."""
    cfg = NetworkConfig(
        n_e=80, n_i=20, p_connect=0.3, semantics=semantics,  # type: ignore[arg-type]
        tau_ltp_ms=tau_ltp_ms,
    )  # fmt: skip
    net = Network(cfg)
    net.reset(seed=12)
    for _ in range(6):
        net.advance(None, 20.0)
    steps = 1500  # longer than a segment (LTP_SEGMENT_STEPS): the segment restart is exercised
    assert steps > LTP_SEGMENT_STEPS
    rng = np.random.default_rng(8)
    xi = rng.standard_normal((steps, cfg.n)).astype(np.float32)
    u = np.zeros(steps)
    state = _snapshot(net)
    got = net.integrate_explicit(u, u, xi, plast_on=True)
    state, spikes, changed = _undriven_reference_run(cfg, net, state, xi)
    assert list(got) == spikes
    assert len(spikes) > 300
    assert changed > 2000
    # the reference rounds to float32 after every update, the kernel once per batch: a few
    # float32 ulps (6·10⁻⁸ each) apart at most, unbiased
    np.testing.assert_allclose(net._ei.weight, state.w_ei, rtol=1e-6, atol=0)
    diff = net._ei.weight.astype(np.float64) - state.w_ei
    assert abs(diff.mean()) < 2e-8
    # two float32 trajectories 1500 steps apart from their common start (jumps of those weights,
    # the kernel's float32 arithmetic against the reference's rounded double): the leak keeps
    # their differences small, up to 1.5·10⁻⁵ mV measured (8 ulps of 1.9·10⁻⁶ mV at 16–32 mV)
    np.testing.assert_allclose(net.v, state.v, rtol=0, atol=5e-5)
    # nothing left pending between calls
    assert not net._ltp_g.any()
    assert not net._ltp_snap.any()


def test_pending_potentiation_is_not_lost_to_cancellation_with_a_fast_trace() -> None:
    """An I spike long after the segment's first, owed to an E cell that fired just before it:
    with a fast-decaying trace its term d^u is tiny beside the I cell's earlier ones, and a
    segment that let d^u fall below 2^−53 of them lost it (G_k − snap_jk = 0). Forced spikes:
    I at step 2, E at 95, I at 97, in one call of 150 steps."""
    cfg = NetworkConfig(
        n_e=1, n_i=1, p_connect=1.0, semantics="clean", tau_ltp_ms=0.3,
        mu_e_mv=0.0, mu_i_mv=0.0, sigma_e_mv=1.0, sigma_i_mv=1.0,
    )  # fmt: skip
    net = Network(cfg)
    net.reset(seed=1)
    steps = 150
    xi = np.zeros((steps, cfg.n), dtype=np.float32)
    for step, cell in ((2, 1), (95, 0), (97, 1)):
        xi[step, cell] = 1e6  # this cell crosses threshold at this step, and only then
    zero = np.zeros(steps)
    state = _snapshot(net)
    got = net.integrate_explicit(zero, zero, xi, plast_on=True)
    state, _, _ = _undriven_reference_run(cfg, net, state, xi)
    assert list(got) == [1, 0, 1]
    np.testing.assert_allclose(net._ei.weight, state.w_ei, rtol=1e-6, atol=0)


def test_a_trace_that_never_decays_runs() -> None:
    """τ so long that 1 − dt/τ rounds to 1: no segment bound needed, and no division by zero."""
    cfg = NetworkConfig(n_e=40, n_i=10, tau_ltp_ms=1e20)
    net = Network(cfg)
    net.reset(seed=3)
    for _ in range(6):
        stats = net.advance(None, 20.0)
    assert np.isfinite(stats.weight_mv)


def test_noise_drawn_in_the_kernel_is_the_generators_standard_normal_stream() -> None:
    """advance() draws its noise inside the kernel; it must equal explicit draws, row by row."""
    from simulator.noise import standard_normal_f32

    cfg = NetworkConfig(n_e=81, n_i=20, semantics="clean")  # odd N: a half word is left over
    # (and 51 words of a block of 56: five words of the last block are not used)
    inside, outside = Network(cfg), Network(cfg)
    inside.reset(seed=3)
    outside.reset(seed=3)
    inside.advance(None, 30.0)
    steps = round(30.0 / cfg.dt_ms)
    xi = standard_normal_f32(outside._noise, (steps, cfg.n))
    zero = np.zeros(steps)
    outside.integrate_explicit(zero, zero, xi, plast_on=cfg.plasticity_onset_ms <= 0.0)
    np.testing.assert_array_equal(inside.v, outside.v)
    np.testing.assert_array_equal(inside._s_cross, outside._s_cross)
    assert [g.random() for g in inside._noise] == [g.random() for g in outside._noise]


def test_draws_between_windows_move_the_kernels_noise_on() -> None:
    """The kernel reads the generators' state at every window: nothing is replayed."""
    cfg = NetworkConfig(n_e=80, n_i=20, semantics="clean")
    a, b = Network(cfg), Network(cfg)
    a.reset(seed=4)
    b.reset(seed=4)
    a.advance(None, 10.0)
    b.advance(None, 10.0)
    np.testing.assert_array_equal(a.v, b.v)
    a._noise[5].random()  # someone else draws from one of the run's generators
    a.advance(None, 10.0)
    b.advance(None, 10.0)
    assert not np.array_equal(a.v, b.v)


def test_generator_handed_out_late_is_where_the_kernel_left_it() -> None:
    """Until the generators are asked for, the kernel keeps their state words itself (no
    write-back per window); asking later gives the same generator states as asking every window."""
    cfg = NetworkConfig(n_e=80, n_i=20, semantics="paper")
    late, every = Network(cfg), Network(cfg)
    late.reset(seed=6)
    every.reset(seed=6)
    for _ in range(3):
        every._noise  # noqa: B018 - lent from the start: read and written back every window
        late.advance(None, 20.0)
        every.advance(None, 20.0)
    assert not late._rng_lent
    np.testing.assert_array_equal(late.v, every.v)
    np.testing.assert_array_equal(load_state(late._noise), load_state(every._noise))
    assert late._rng_lent
    late._noise[0].random()  # from now on, draws by the holder move the kernel's stream on
    every._noise[0].random()
    late.advance(None, 20.0)
    every.advance(None, 20.0)
    np.testing.assert_array_equal(late.v, every.v)


def test_simultaneous_i_to_e_jumps_subtract_one_at_a_time_in_clean_semantics() -> None:
    """Clean semantics sum simultaneous jumps: 32 I spikes onto one E cell subtract w 32 times
    in order (the kernel counts the hits first; fast-math must not re-associate the sum)."""
    cfg = NetworkConfig(n_e=8, n_i=32, p_connect=1.0, semantics="clean", w_ei=0.3712345)
    net = Network(cfg)
    net.reset(seed=2)
    net._x_cross[:] = np.linspace(0.3, 1.7, cfg.n)  # E cells start from distinct values
    x0 = net._x_cross.copy()
    xi = np.zeros((1, cfg.n), dtype=np.float32)
    spikes = net.integrate_explicit(np.array([0.0]), np.array([1e6]), xi, plast_on=False)
    assert sorted(spikes.tolist()) == list(range(cfg.n_e, cfg.n))  # every I cell, at once
    x_decay = np.float32(1.0 - cfg.dt_ms / cfg.tau_r_ms)
    w = float(net._ie.weight[0])
    for k in range(cfg.n_e):
        expected = x0[k] * x_decay  # float32 state: every result rounded to float32
        for _ in range(cfg.n_i):
            expected = np.float32(float(expected) - w)
        assert net._x_cross[k] == expected, f"E cell {k}"


@pytest.mark.parametrize("semantics", ["paper", "clean"])
def test_scalar_constant_pass_is_the_array_pass_bit_for_bit(semantics: str) -> None:
    """The kernel's pass with per-population scalar constants (taken whenever the constants
    allow it) gives the same bits as its pass over per-neuron arrays, stimulated or not."""
    cfg = NetworkConfig(n_e=400, n_i=100, semantics=semantics, stim_noise_e_mv=10.0)
    nets = [Network(cfg), Network(cfg)]
    for net in nets:
        net.reset(seed=5)
    assert nets[0]._scalar_pass(nets[0]._gain_on)
    nets[1]._uniform = False  # the array pass
    stim = Stimulus(100.0)
    for w in range(12):
        stats = [net.advance(stim if w >= 4 else None, 20.0) for net in nets]
        np.testing.assert_array_equal(stats[0].spike_neurons, stats[1].spike_neurons)
    assert stats[0].spike_neurons.size > 0
    for name in ("v", "_x_cross", "_s_cross", "_hist_cross", "_ref", "_tr_e"):
        np.testing.assert_array_equal(getattr(nets[0], name), getattr(nets[1], name), name)
    np.testing.assert_array_equal(nets[0]._ei.weight, nets[1]._ei.weight)


def test_scalar_constant_pass_is_not_taken_for_heterogeneous_cells() -> None:
    """Per-neuron τ_m (Fig 7) or cross-talk (Fig 9) or recurrent input (Fig 8): array pass."""
    for kwargs in ({"tau_m_spread_ms": 2.0}, {"crosstalk_fraction": 0.25}, {"j_ee_mv": 50.0}):
        net = Network(NetworkConfig(n_e=80, n_i=20, **kwargs))  # type: ignore[arg-type]
        net.reset(seed=1)
        assert not net._scalar_pass(net._gain_off), kwargs
    net = Network(NetworkConfig(n_e=80, n_i=20))
    net.reset(seed=1)
    assert net._scalar_pass(net._gain_off)
    assert not net._scalar_pass(np.linspace(0.1, 0.2, 100))
