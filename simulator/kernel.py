"""The Numba kernel that integrates the FTSTS network for a run of steps.

One call advances every neuron by ``n_steps`` forward-Euler steps of ``dt``. The order of
operations inside a step follows the authors' released code (see ``docs/simulator.md``):

1. every neuron reads its delayed synaptic variable ``S(t − d)`` and updates ``V``, ``S``, ``X``
   from the old state; threshold crossings, the refractory clamp and the floor at ``V_rest``
   are applied in one if/elif chain (when every per-neuron constant is uniform within each
   population, a pass per population with the constants as scalars: the same bits, seven
   arrays less to stream);
2. E spikes (ascending index): jumps onto their targets' ``X``, depression of their outgoing
   E→I synapses;
3. I spikes: jumps onto their targets' ``X``, potentiation of their incoming E→I synapses (left
   pending under the asymmetric rule, below; static I→E jumps are counted per E cell and
   applied in one pass after the I spikes: the same values, without sweeping the E cells'
   state once per I spike);
4. STDP traces decay and the spiking neurons' traces are bumped.

Potentiation under the asymmetric rule is applied lazily, with the same result up to float32
rounding (:func:`_flush_potentiation` has the derivation): an I spike adds one number per I
cell, and a synapse takes the potentiation it is owed when its E cell next fires, before that
spike's jump and depression, or at the end of the call. The E→I weights are stored
presynaptic-major, so both the E-spike loop and the end-of-call flush read each E cell's
synapses as one contiguous row; neither loop touches a synapse at random (immediate updates
had written ≈ 10 000 potentiated and ≈ 8 000 depressed weights per step at N = 10 000, each
on its own cache line of 6.4 MB; ``docs/simulator.md#speed`` has the measurements). A
same-step pre/post pair is handled in the E-spike loop, which knows the step's I spikes (the
pass found them): its potentiation uses the E trace before the step's bump and comes after the
depression (or instead of it, ``overwrite``), as in the released code.

``overwrite=True`` reproduces the released code's quirks: a jump sets ``X(t+dt) = X(t) + w``
(simultaneous jumps onto one target do not add and that step's decay is skipped) and a same-step
pre/post pair keeps only the potentiation. ``overwrite=False`` sums jumps and applies both updates.

Spikes are written as (labelled step at the end of the spiking step, neuron index) pairs into
caller-owned buffers; nothing dense over time is stored. A causal Kuramoto order parameter is
sampled every ``kop_every`` steps from per-neuron phasors (phase extrapolated from the last
inter-spike interval), see :mod:`simulator.synchrony`.

Nothing here is compiled with fast-math: every multiply–add that rounds once is an explicit
``fma_f32`` / ``fma_f64`` and every sum over cells runs in a written-out order, so a seed gives
the same bits on every x86-64 CPU (``docs/simulator.md#reproducibility-across-cpus``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.intrinsics import at, cttz, fma_f32, fma_f64, masked_sum4_f64, sum16_f32
from simulator.kernel_args import PassLaw
from simulator.noise import fill_standard_normal
from simulator.prefetch import prefetch_range

TWO_PI = 2.0 * math.pi
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_I0 = np.int32(0)
_I1 = np.int32(1)
#: Longest stretch of steps over which potentiation is left pending (bounds d^−m).
LTP_SEGMENT_STEPS = 1000


@njit(cache=True, nogil=True, fastmath=False)
def _subtract_in_order(x, w, count):  # type: ignore[no-untyped-def]
    """``x − w − w − …`` (``count`` times), rounded to float32 after each like separate jumps.

    Compiled without fast-math (set explicitly, so that the kernel's flags are not inherited):
    under fast-math LLVM turns the loop into a re-associated vector sum, which rounds differently.
    """
    for _ in range(count):
        x = np.float32(x - w)
    return x


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _overwrite_hits(x_then, x_now, hits, w, lo, hi):  # type: ignore[no-untyped-def]
    """``X(t+dt) = X(t) − w`` for every E cell ``lo:hi`` with a hit (however many); clear counts.

    A function of its own: inline in ``run_steps``, where the two X arrays swap roles every
    step, LLVM no longer vectorised this loop (I-spike section 1.1 → 3.9 ticks per neuron-step).
    """
    for i in range(np.uint64(lo), np.uint64(hi)):
        hit = hits[i] > 0
        x_now[i] = x_then[i] - w if hit else x_now[i]
        hits[i] = 0


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _flush_potentiation(  # type: ignore[no-untyped-def]
    n_e, ptr, tgt, w, snap, g, a, tr_e, eta_ltp, w_hi
):  # fmt: skip
    """Apply every E→I synapse's pending potentiation and start a new segment.

    Between two spikes of E cell j its trace decays geometrically, ``P_j(u) = A_j·d^u`` at
    step ``u`` of the segment, so the potentiation that I cell k's spikes at steps ``u₁, u₂, …``
    owe synapse (j, k) is ``η·A_j·Σ d^u = η·A_j·(G_k − snap_jk)``, where ``G_k`` sums ``d^u``
    over k's spikes and ``snap_jk`` is ``G_k`` as of the synapse's last update. Potentiation
    steps are all positive, so clipping at ``w_max`` once after their sum is clipping after
    each. A synapse is brought up to date when its E cell fires (the spike loop, rows read
    contiguously) and here, at the end of a call or segment, for all; then ``G``, ``snap`` and
    ``A`` restart from the current traces.
    """
    _flush_rows(0, n_e, ptr, tgt, w, snap, g, a, eta_ltp, w_hi)
    for j in range(n_e):
        a[j] = tr_e[j]
    for k in range(g.shape[0]):
        g[k] = 0.0


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _flush_rows(lo, hi, ptr, tgt, w, snap, g, a, eta_ltp, w_hi):  # type: ignore[no-untyped-def]
    """The pending potentiation of the whole rows of E cells ``lo:hi`` (snapshots cleared).

    :func:`_flush_potentiation` over every row; the threaded kernel's threads over their own.
    """
    for j in range(lo, hi):
        a_j = eta_ltp * a[j]
        for s in range(np.uint64(ptr[j]), np.uint64(ptr[j + 1])):
            pend = g[np.uint64(tgt[s])] - snap[s]
            w[s] = np.float32(min(fma_f64(a_j, pend, np.float64(w[s])), w_hi))
            snap[s] = 0.0


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _lazy_e_row(  # type: ignore[no-untyped-def]
    beg, end, n_e_u, overwrite, tgt, w, snap, g, x_then, x_now, spiked, tr_i,
    a_j, ltp_now, d_now, eta_ltd, w_lo, w_hi,
):  # fmt: skip
    """One firing E cell's E→I row (asymmetric rule, lazy potentiation; see ``run_steps``).

    Per synapse: the potentiation it has pending (``a_j = η·A_j`` times its I cell's ``G_k``
    since its snapshot), then the jump with that weight, the depression, and, for a same-step
    pair, the potentiation with the trace before this step's bump (``ltp_now``). A function of
    its own so that LLVM keeps the loop's invariants in registers (inline in ``run_steps`` it
    reloaded them from the stack every synapse).
    """
    for su in range(beg, end):
        ku = np.uint64(tgt[su])
        gu = n_e_u + ku
        g_k = g[ku]
        w0 = np.float32(min(fma_f64(a_j, g_k - snap[su], np.float64(w[su])), w_hi))
        if overwrite:
            x_now[gu] = x_then[gu] + w0
        else:
            x_now[gu] += w0
        post = spiked[gu]
        w_ltd = np.float32(max(fma_f64(eta_ltd, tr_i[ku], np.float64(w0)), w_lo))
        w1 = w0 if overwrite and post else w_ltd
        w_ltp = np.float32(min(w1 + ltp_now, w_hi))
        w[su] = w_ltp if post else w1
        snap[su] = g_k + d_now if post else g_k


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _count_hits(tgt, lo, hi, hits):  # type: ignore[no-untyped-def]
    """``hits[t] += 1`` for each target ``t`` of the synapses ``lo:hi`` (one I spike's)."""
    for qu in range(np.uint64(lo), np.uint64(hi)):
        hits[np.uint64(tgt[qu])] += 1


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _neuron_pass(  # type: ignore[no-untyped-def]
    lo, hi, h, row, st, x_then, x_now, xi, spiked, law, ue, ui
):  # fmt: skip
    """The neuron pass over cells ``lo:hi`` (see ``run_steps``).

    ``st`` is the :class:`~simulator.kernel_args.NeuronState` (V, refractory counters, S and
    its delay line at row ``h``); ``x_then``/``x_now`` are X(t) and X(t+dt); ``xi[row]`` the
    step's draws. Each per-neuron constant of ``law`` (a
    :class:`~simulator.kernel_args.PassLaw`: ``scale`` … ``v_new``) is either an array over all
    cells or one scalar for the whole range: with every constant uniform within each
    population, the kernel calls this once per population with scalars and streams seven
    arrays less per step. The
    update is written out with explicit FMAs in the order LLVM had compiled it to under
    fast-math for AVX2 (``S ← fma(syn_d, X − S, S)``; ``t = fma(scale, S_delayed, −V) + base``,
    ``fma(c_e, u_e, t)``, ``fma(c_i, u_i, t)``, then ``fma(t, dt/τ, V) + v_new`` and
    ``fma(gain, ξ, ·)``) and compiled without fast-math, so that both forms, and every CPU, give
    the same bits (``docs/simulator.md#reproducibility-across-cpus``);
    ``tests/test_sim_reference.py`` checks the two forms against each other.
    """
    v, ref, s_cross, hist_cross = st.v, st.ref, st.s_cross, st.hist_cross
    syn_d, x_decay, v_th, v_reset, v_rest, ref_steps = (
        law.syn_d, law.x_decay, law.v_th, law.v_reset, law.v_rest, law.ref_steps
    )  # fmt: skip
    scale, dt_over_tau, base, coef_e, coef_i, noise_gain, v_new = (
        law.scale, law.dt_over_tau, law.base, law.coef_e, law.coef_i, law.noise_gain, law.v_new
    )  # fmt: skip
    for i in range(np.uint64(lo), np.uint64(hi)):
        s_delayed = hist_cross[h, i]
        so = s_cross[i]
        hist_cross[h, i] = so
        xo = x_then[i]
        s_cross[i] = fma_f32(syn_d, xo - so, so)
        x_now[i] = xo * x_decay
        vo = v[i]
        t = fma_f32(at(scale, i), s_delayed, -vo) + at(base, i)
        t = fma_f32(at(coef_e, i), ue, t)
        t = fma_f32(at(coef_i, i), ui, t)
        vn = fma_f32(t, at(dt_over_tau, i), vo) + at(v_new, i)
        vn = fma_f32(at(noise_gain, i), xi[row, i], vn)
        r = ref[i]
        sp = (vo < v_th) & (vn >= v_th)
        hold = sp | (r > 0)
        v[i] = v_reset if hold else max(vn, v_rest)
        ref[i] = ref_steps if sp else max(r - _I1, _I0)
        spiked[i] = sp


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def sum_in_lanes(x, lo, hi):  # type: ignore[no-untyped-def]
    """``Σ x[lo:hi]`` in float64, in a fixed order of sixteen, then four lanes (any CPU).

    The order is the one LLVM had vectorised the plain loop into for AVX2 (four float64 lanes,
    unrolled four times: lane ``l`` of the 16 sums every 16th element), kept so that the
    published observations do not change: the 16 lane sums are combined as
    ``((a₄₊ₗ + aₗ) + a₈₊ₗ) + a₁₂₊ₗ`` into four, the four as ``(b₀ + b₂) + (b₁ + b₃)``; a
    remainder of four or more elements is summed the same way in four lanes, the first starting
    from the sum so far; the last ``n mod 4`` elements are added one by one. Fewer than four
    elements are summed one by one. Written out, so that the result no longer depends on the
    vector width LLVM picks for the CPU (``docs/simulator.md#reproducibility-across-cpus``).
    """
    n = hi - lo
    s = 0.0
    i = lo
    if n < 4:
        for j in range(lo, hi):
            s += x[j]
        return s
    if n >= 16:
        s = 0.0 + sum16_f32(x, np.int64(lo), np.int64(n // 16))
        i = lo + (n - n % 16)
    if hi - i >= 4:
        e0 = s
        e1 = e2 = e3 = 0.0
        stop = lo + (n - n % 4)
        while i < stop:
            e0 += x[i]
            e1 += x[i + 1]
            e2 += x[i + 2]
            e3 += x[i + 3]
            i += 4
        s = 0.0 + ((e0 + e2) + (e1 + e3))
    while i < hi:
        s += x[i]
        i += 1
    return s


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _kuramoto_sample(kop_acc, n_e, prev_spike, z_re, z_im, r_re, r_im):  # type: ignore[no-untyped-def]
    """Add one causal Kuramoto sample to ``kop_acc`` (``[sum of R, samples]``).

    The phasors of the E cells that have spiked twice are summed, then rotated by one sample;
    ``R = |sum| / count`` is added, and the sample counted, when any cell has a phasor. From 52
    cells on, the sum runs in the order LLVM had vectorised the plain loop into for AVX2: four
    lanes (lane ``l`` sums cells ``l, l + 4, …`` up to the last whole group of four), combined
    as ``(l₀ + l₂) + (l₁ + l₃)``, then the remaining cells one by one; the phasors are summed
    before they rotate. Each rotation is ``z·r`` with the real part ``fma(r_re, z_re,
    −r_im·z_im)`` and the imaginary part ``fma(r_im, z_re, r_re·z_im)``.
    """
    sr = 0.0
    si = 0.0
    i = 0
    if n_e >= 52:
        i = n_e - n_e % 4
        sr = 0.0 + masked_sum4_f64(z_re, prev_spike, np.int64(i // 4))
        si = 0.0 + masked_sum4_f64(z_im, prev_spike, np.int64(i // 4))
    while i < n_e:
        if prev_spike[i] >= 0:
            sr += z_re[i]
            si += z_im[i]
        i += 1
    valid = 0
    for j in range(n_e):
        if prev_spike[j] >= 0:
            valid += 1
            zr = z_re[j]
            zi = z_im[j]
            rr = r_re[j]
            ri = r_im[j]
            z_re[j] = fma_f64(rr, zr, -(ri * zi))
            z_im[j] = fma_f64(ri, zr, rr * zi)
    if valid > 0:
        kop_acc[0] += math.sqrt(fma_f64(si, si, sr * sr)) / valid
        kop_acc[1] += 1.0


@njit(cache=True, nogil=True, fastmath=False)
def _stdp_symmetric(w, lag, c_p, k_p, c_d, k_d):  # type: ignore[no-untyped-def]
    """``w + c_p·e^(−lag·k_p) − c_d·e^(−lag·k_d)`` as two FMAs, left to right.

    ``exp`` is the C library's, whose last bit can depend on the CPU (glibc has FMA and SSE2
    versions): ``docs/simulator.md#reproducibility-across-cpus`` lists this limit.
    """
    return fma_f64(-c_d, math.exp(-lag * k_d), fma_f64(c_p, math.exp(-lag * k_p), w))


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def run_steps(  # type: ignore[no-untyped-def]  # noqa: D103 - documented in the module docstring
    step, shape, st, consts, spk, pl, rule, syn, noise, kop, out,
):  # fmt: skip
    # step: StepInputs, shape: Structure, st: NeuronState, consts: NeuronConstants, spk: SpikeState,
    # pl: PlasticityState, rule: StdpRule, syn: Synapses, noise: NoiseState, kop: Kuramoto,
    # out: Recorder (simulator/kernel_args.py). Their members are read into locals here, by
    # name: the body below is the same code as when they were separate arguments.
    n_steps, step0, plast_on, uniform = step.n_steps, step.step0, step.plast_on, step.uniform
    u_e, u_i, noise_gain, xi = step.u_e, step.u_i, step.noise_gain, step.xi
    gen_noise = step.gen_noise
    n_e, overwrite, has_rec = shape.n_e, shape.overwrite, shape.has_rec
    plastic_ie, rule_sym = shape.plastic_ie, shape.rule_sym
    v, x_cross = st.v, st.x_cross
    x_rec, s_rec, xprev_cross, xprev_rec = st.x_rec, st.s_rec, st.xprev_cross, st.xprev_rec
    hist_cross, hist_rec, head, v_new = st.hist_cross, st.hist_rec, st.head, st.v_new
    dt_over_tau, base = consts.dt_over_tau, consts.base
    coef_e, coef_i = consts.coef_e, consts.coef_i
    scale_cross, scale_rec = consts.scale_cross, consts.scale_rec
    contact_cells = consts.contact_cells
    contacts = contact_cells.shape[1] - 1
    syn_d, x_decay = consts.syn_d, consts.x_decay
    v_th, v_reset, v_rest, ref_steps = consts.v_th, consts.v_reset, consts.v_rest, consts.ref_steps
    rng_state, rng_words = noise.rng_state, noise.rng_words
    ei_ptr, ei_tgt, ei_w = syn.ei.ptr, syn.ei.target, syn.ei.weight
    ei_in_ptr, ei_in_syn, ei_pre = syn.ei.in_ptr, syn.ei.in_syn, syn.ei.pre_of
    ltp_snap, ltp_g, ltp_a = pl.ltp_snap, pl.ltp_g, pl.ltp_a
    ie_ptr, ie_tgt, ie_w = syn.ie.ptr, syn.ie.target, syn.ie.weight
    ie_in_ptr, ie_in_syn, ie_pre = syn.ie.in_ptr, syn.ie.in_syn, syn.ie.pre_of
    ee_ptr, ee_tgt, ii_ptr, ii_tgt = syn.ee.ptr, syn.ee.target, syn.ii.ptr, syn.ii.target
    tr_e, tr_i = pl.tr_e, pl.tr_i
    tr_e_decay, tr_i_decay, a0 = rule.tr_e_decay, rule.tr_i_decay, rule.a0
    eta_ltd, eta_ltp = rule.eta_ltd, rule.eta_ltp
    w_lo_ei, w_hi_ei, w_lo_ie, w_hi_ie = rule.w_lo_ei, rule.w_hi_ei, rule.w_lo_ie, rule.w_hi_ie
    c_p, k_p, c_d, k_d = rule.c_p, rule.k_p, rule.c_d, rule.k_d
    last_spike, prev_spike, spiked = spk.last_spike, spk.prev_spike, spk.spiked
    spiked_words, step_spk, ie_hits = spk.spiked_words, spk.step_spk, spk.ie_hits
    spk_step, spk_idx, n_spk = out.spk_step, out.spk_idx, out.n_spk
    pop_mean_e, pop_mean_i, sum_v_e, sumsq_v_e = (
        out.pop_mean_e, out.pop_mean_i, out.sum_v_e, out.sumsq_v_e
    )  # fmt: skip
    kop_every, kop_z_re, kop_z_im = kop.every, kop.z_re, kop.z_im
    kop_r_re, kop_r_im = kop.r_re, kop.r_im
    kop_acc = out.kop_acc
    s_ie_e, s_ee_e = out.s_ie_e, out.s_ee_e
    n = v.shape[0]
    n_i = n - n_e
    depth = hist_cross.shape[0]
    h = head[0]
    ns = n_spk[0]
    cap = spk_step.shape[0]
    inv_e = 1.0 / n_e
    inv_i = 1.0 / n_i
    w_ie = ie_w[0] if ie_w.shape[0] > 0 else 0.0
    # unsigned indices in the spike loops: Numba's negative-index wraparound on signed ones
    # costs a shift, a mask and an add per access (and keeps LLVM from simplifying the loops)
    n_e_u = np.uint64(n_e)
    u1 = np.uint64(1)
    u2 = np.uint64(2)
    u3 = np.uint64(3)
    u4 = np.uint64(4)
    # X(t) and X(t+dt) of the cross-population synapses live in two arrays whose roles swap
    # every step (the pass reads X(t) from one and writes the decayed X(t+dt) into the other,
    # which the jumps then build on): no copy of X(t) is stored per neuron-step. On return
    # x_cross holds X(t+dt) and xprev_cross X(t), as if each step had copied.
    x_then = xprev_cross
    x_now = x_cross
    # potentiation of E→I synapses (asymmetric rule) is applied lazily, see _flush_potentiation:
    # dpow[m] = d^m and dinv[m] = d^−m for the E trace's per-step decay d, m steps into the
    # current segment (which starts at step seg0 of this call)
    lazy = plast_on and not rule_sym
    # Shorter for a fast-decaying trace: G_k − snap_jk cancels two sums whose terms reach
    # d^0 = 1, so a term d^m is kept to ≈ 2^−53/d^m relative; d^m ≥ e^−14 (≈ 2^−20) keeps the
    # owed potentiation to ≈ 2^−33 relative (below float32 weights' 2^−24). No decay (d = 1,
    # a time constant ~10^16·dt) needs no bound.
    seg = min(n_steps, LTP_SEGMENT_STEPS)
    if tr_e_decay < 1.0:
        seg = min(seg, max(1, int(14.0 / -math.log(tr_e_decay))))
    dpow = np.empty(seg + 2)
    dinv = np.empty(seg + 2)
    dpow[0] = 1.0
    dinv[0] = 1.0
    for m in range(1, seg + 2):
        dpow[m] = dpow[m - 1] * tr_e_decay
        dinv[m] = 1.0 / dpow[m]
    seg0 = 0
    if lazy:
        for i in range(n_e):
            ltp_a[i] = tr_e[i]
    for k in range(n_steps):
        t_end = step0 + k + 1
        x_then, x_now = x_now, x_then
        n_now = 0
        if gen_noise:
            fill_standard_normal(rng_state, rng_words, xi[0])
            row = 0
        else:
            row = k
        # the E cells' mean delayed S as this step reads it (the sensor's LFP proxy), summed
        # before the pass overwrites the delay line's row
        s_ie_e[k] = sum_in_lanes(hist_cross[h], 0, n_e) * inv_e
        # recurrent input first (Fig 8 only), so the main pass stays a single vectorisable loop
        if has_rec:
            s_ee_e[k] = sum_in_lanes(hist_rec[h], 0, n_e) * inv_e
            for i in range(n):
                v_new[i] = dt_over_tau[i] * scale_rec[i] * hist_rec[h, i]
                hist_rec[h, i] = s_rec[i]
                s_rec[i] = fma_f32(syn_d, x_rec[i] - s_rec[i], s_rec[i])
                xprev_rec[i] = x_rec[i]
                x_rec[i] *= x_decay
        # main pass (branch-free, vectorisable): delayed synaptic input, synaptic kinetics,
        # Euler step of V, then the released code's if/elif chain written as selects:
        # spike (V crosses V_th from below) -> V_reset and refractory; refractory -> V_reset;
        # otherwise V is floored at V_rest.
        # one pass per population and contact of the lead, each with its own drive; when
        # every per-neuron constant is uniform within each population and there is no
        # recurrent input (Network decides), the constants as scalars (seven arrays less to
        # stream per step)
        law_all = PassLaw(
            scale_cross, dt_over_tau, base, coef_e, coef_i, noise_gain, v_new, syn_d,
            x_decay, v_th, v_reset, v_rest, ref_steps,
        )  # fmt: skip
        for pop in range(2):
            first = 0 if pop == 0 else n_e
            law = PassLaw(
                scale_cross[first], dt_over_tau[first], base[first], coef_e[first],
                coef_i[first], noise_gain[first], _F0, syn_d, x_decay, v_th, v_reset, v_rest,
                ref_steps,
            )  # fmt: skip
            for g in range(contacts):
                lo = contact_cells[pop, g]
                hi = contact_cells[pop, g + 1]
                ue = np.float32(u_e[k, g])
                ui = np.float32(u_i[k, g])
                if uniform:
                    _neuron_pass(lo, hi, h, row, st, x_then, x_now, xi, spiked, law, ue, ui)
                else:
                    _neuron_pass(lo, hi, h, row, st, x_then, x_now, xi, spiked, law_all, ue, ui)
        # window statistics (vectorisable)
        for i in range(n_e):
            vv = np.float64(v[i])
            sum_v_e[i] += vv
            sumsq_v_e[i] = fma_f64(vv, vv, sumsq_v_e[i])
        pop_mean_e[k] = sum_in_lanes(v, 0, n_e) * inv_e
        pop_mean_i[k] = sum_in_lanes(v, n_e, n) * inv_i
        # collect this step's spikes in ascending index order (the released loop order),
        # skipping 32 silent neurons at a time (four words of spike flags, padded to that)
        # and finding each spiking cell of a word by its lowest set byte (one tzcnt) instead of
        # testing the eight bytes one branch at a time
        for wb in range(np.uint64(spiked_words.shape[0]) >> u2):
            w4 = wb << u2
            if (spiked_words[w4] | spiked_words[w4 + u1] | spiked_words[w4 + u2]
                    | spiked_words[w4 + u3]) == 0:  # fmt: skip
                continue
            for wq in range(w4, w4 + u4):
                word = spiked_words[wq]
                while word != 0:
                    iu = (wq << u3) + (cttz(word) >> u3)
                    word &= word - u1
                    step_spk[n_now] = iu
                    n_now += 1
                    if ns < cap:
                        spk_step[ns] = t_end
                        spk_idx[ns] = iu
                    ns += 1
        h += 1
        if h == depth:
            h = 0

        # ---- ask for the synapse rows of all of this step's spikes at once
        for q in range(n_now):
            g = step_spk[q]
            if g < n_e:
                prefetch_range(ei_w, ei_ptr[g], ei_ptr[g + 1])
                prefetch_range(ei_tgt, ei_ptr[g], ei_ptr[g + 1])
                if lazy:
                    prefetch_range(ltp_snap, ei_ptr[g], ei_ptr[g + 1])
            else:
                j = g - n_e
                prefetch_range(ie_tgt, ie_ptr[j], ie_ptr[j + 1])
                if plast_on and rule_sym:
                    prefetch_range(ei_in_syn, ei_in_ptr[j], ei_in_ptr[j + 1])

        # ---- E spikes: jumps onto I (and E), LTD of outgoing E→I, LTD of incoming I→E (Fig 11)
        for q in range(n_now):
            j = step_spk[q]
            if j >= n_e:
                break
            beg = np.uint64(ei_ptr[j])
            end = np.uint64(ei_ptr[j + 1])
            # E→I weights are stored presynaptic-major: this cell's row is contiguous
            if lazy:
                # the potentiation its synapses have pending (their I cells' spikes since this
                # cell last fired), then the jump with that weight, the depression, and the
                # potentiation of a same-step pair (its trace before this step's bump)
                _lazy_e_row(
                    beg, end, n_e_u, overwrite, ei_tgt, ei_w, ltp_snap, ltp_g, x_then, x_now,
                    spiked, tr_i, eta_ltp * ltp_a[j], eta_ltp * tr_e[j], dpow[k - seg0],
                    eta_ltd, w_lo_ei, w_hi_ei,
                )  # fmt: skip
            else:
                for su in range(beg, end):
                    ku = np.uint64(ei_tgt[su])
                    gu = n_e_u + ku
                    w0 = ei_w[su]
                    if overwrite:
                        x_now[gu] = x_then[gu] + w0
                    else:
                        x_now[gu] += w0
                    if plast_on and last_spike[gu] >= 0:  # symmetric rule
                        lag = t_end - last_spike[gu]
                        w = _stdp_symmetric(np.float64(w0), lag, c_p, k_p, c_d, k_d)
                        ei_w[su] = min(max(w, w_lo_ei), w_hi_ei)
            if has_rec:
                for s in range(ee_ptr[j], ee_ptr[j + 1]):
                    g = ee_tgt[s]
                    if overwrite:
                        x_rec[g] = xprev_rec[g] + _F1
                    else:
                        x_rec[g] += _F1
            if plastic_ie and plast_on:
                for qq in range(ie_in_ptr[j], ie_in_ptr[j + 1]):
                    s = ie_in_syn[qq]
                    pre = ie_pre[s]
                    if overwrite and spiked[n_e + pre]:
                        continue
                    w = fma_f64(eta_ltd, tr_i[pre], ie_w[s])
                    ie_w[s] = w if w > w_lo_ie else w_lo_ie

        # ---- I spikes: jumps onto E (and I), LTP of incoming E→I, LTP of outgoing I→E (Fig 11)
        ie_hit = False
        for q in range(n_now):
            g = step_spk[q]
            if g < n_e:
                continue
            j = g - n_e
            if not plastic_ie:
                # static I→E synapses all keep their common initial weight (Network.reset
                # checks it): count the hits per E cell here, apply them in one pass below
                _count_hits(ie_tgt, ie_ptr[j], ie_ptr[j + 1], ie_hits)
                ie_hit = True
            else:
                for s in range(ie_ptr[j], ie_ptr[j + 1]):
                    kk = ie_tgt[s]
                    if overwrite:
                        x_now[kk] = x_then[kk] - ie_w[s]
                    else:
                        x_now[kk] -= ie_w[s]
                    if plast_on:
                        w = fma_f64(eta_ltp, tr_e[kk], ie_w[s])
                        ie_w[s] = w if w < w_hi_ie else w_hi_ie
            if has_rec:
                for s in range(ii_ptr[j], ii_ptr[j + 1]):
                    gg = n_e + ii_tgt[s]
                    if overwrite:
                        x_rec[gg] = xprev_rec[gg] - _F1
                    else:
                        x_rec[gg] -= _F1
            if lazy:
                # the potentiation of this cell's inputs is left pending: one number per I cell
                ltp_g[j] += dpow[k - seg0]
            elif plast_on:  # symmetric rule: the inputs of I cell j, through the reverse index
                for qq in range(ei_in_ptr[j], ei_in_ptr[j + 1]):
                    s = ei_in_syn[qq]
                    pre = ei_pre[s]
                    if last_spike[pre] >= 0:
                        lag = t_end - last_spike[pre]
                        w = _stdp_symmetric(np.float64(ei_w[s]), lag, c_p, k_p, c_d, k_d)
                        ei_w[s] = min(max(w, w_lo_ei), w_hi_ei)

        # the static I→E jumps, one pass over the E cells instead of one sweep per I spike:
        # X(t+dt) = X(t) − w (overwrite: however many hits), or w subtracted once per hit
        if ie_hit:
            if overwrite:
                _overwrite_hits(x_then, x_now, ie_hits, w_ie, 0, n_e)
            else:
                for i in range(n_e):
                    c = ie_hits[i]
                    if c > 0:
                        x_now[i] = _subtract_in_order(x_now[i], w_ie, c)
                        ie_hits[i] = 0

        # ---- traces decay, then the spiking neurons' bumps; spike bookkeeping
        for i in range(n_e):
            tr_e[i] *= tr_e_decay
        for i in range(n_i):
            tr_i[i] *= tr_i_decay
        for q in range(n_now):
            gu = np.uint64(step_spk[q])
            spiked[gu] = False
            if gu < n_e_u:
                tr_e[gu] += a0
                if lazy:
                    ltp_a[gu] = tr_e[gu] * dinv[k - seg0 + 1]
                last = last_spike[gu]
                if last >= 0:
                    isi = t_end - last
                    # phasor at the next sample time and its per-sample rotation
                    ahead = (kop_every - t_end % kop_every) % kop_every
                    # one division, by the interval, for both angles (as compiled before)
                    per_step = 1.0 / isi
                    ang = (TWO_PI * ahead) * per_step
                    kop_z_re[gu] = math.cos(ang)
                    kop_z_im[gu] = math.sin(ang)
                    rot = (TWO_PI * kop_every) * per_step
                    kop_r_re[gu] = math.cos(rot)
                    kop_r_im[gu] = math.sin(rot)
                prev_spike[gu] = last
            else:
                tr_i[gu - n_e_u] += a0
            last_spike[gu] = t_end

        # ---- causal Kuramoto sample
        if t_end % kop_every == 0:
            _kuramoto_sample(kop_acc, n_e, prev_spike, kop_z_re, kop_z_im, kop_r_re, kop_r_im)

        # ---- pending potentiation applied at the end of the call and of every segment
        if lazy and (k + 1 == n_steps or k + 1 - seg0 == seg):
            _flush_potentiation(n_e, ei_ptr, ei_tgt, ei_w, ltp_snap, ltp_g, ltp_a, tr_e,
                                eta_ltp, w_hi_ei)  # fmt: skip
            seg0 = k + 1
    head[0] = h
    n_spk[0] = ns
    if n_steps % 2 == 1:  # X(t+dt) is in xprev_cross: swap the contents back
        for i in range(n):
            x_cross[i], xprev_cross[i] = xprev_cross[i], x_cross[i]


@njit(cache=True, nogil=True)
def _by_neuron_then_time(times, neurons, n_e):  # type: ignore[no-untyped-def]
    """Positions of the E spikes (``neurons < n_e``) by neuron, then time (a counting sort).

    Spikes arrive in time order from a run, so each neuron's block is usually sorted already;
    a block that is not is sorted by time (stable). No per-spike keys or copies: a sort key
    and an argsort over a 25 s run at N = 2000 were ≈ 50 MB of the run's peak memory.
    """
    start = np.zeros(n_e + 1, dtype=np.int64)
    for q in range(neurons.shape[0]):
        nk = neurons[q]
        if 0 <= nk < n_e:
            start[nk + 1] += 1
    for k in range(n_e):
        start[k + 1] += start[k]
    fill = start[:n_e].copy()
    if neurons.shape[0] >= 2**31:
        raise ValueError("Expected fewer than 2**31 spikes, actual", neurons.shape[0])
    order = np.empty(start[n_e], dtype=np.int32)  # half an int64 index's memory
    for q in range(neurons.shape[0]):
        nk = neurons[q]
        if 0 <= nk < n_e:
            order[fill[nk]] = q
            fill[nk] += 1
    for k in range(n_e):
        lo, hi = start[k], start[k + 1]
        for q in range(lo + 1, hi):
            if times[order[q]] < times[order[q - 1]]:
                block = order[lo:hi]
                order[lo:hi] = block[np.argsort(times[block], kind="mergesort")]
                break
    return order


@njit(cache=True, nogil=True)
def offline_order_parameter(spike_times_ms, spike_neurons, n_e, t_grid_ms, ms_per_unit=1.0):  # type: ignore[no-untyped-def]
    """Kuramoto order parameter of E cells on a time grid, from spike lists (offline).

    The phase of neuron ``k`` rises linearly by 2π between consecutive spikes. A neuron enters
    the average at ``t`` only if two of its spikes bracket ``t`` (first spike ≤ t < last spike):
    before its first and after its last spike its phase is undefined and it is masked, not
    given an artificial phase.

    Args:
        spike_times_ms: Spike times, any order; or integer steps, with ``ms_per_unit``.
        spike_neurons: Neuron index of each spike (E neurons are ``0..n_e-1``).
        n_e: Number of E neurons.
        t_grid_ms: Ascending, evenly spaced sample times.
        ms_per_unit: Milliseconds per unit of ``spike_times_ms`` (``dt_ms`` for steps); a time
            is ``spike_times_ms[q] * ms_per_unit``, which for ``1.0`` is the time itself and
            for steps the time the kernel reported (``step * dt_ms``), so R is the same bit for
            bit either way.

    Returns:
        ``(r, n_valid)``: R(t) (NaN where no neuron is valid) and the number of neurons in the
        average at each sample.
    """
    m = t_grid_ms.shape[0]
    re = np.zeros(m)
    im = np.zeros(m)
    cnt = np.zeros(m, dtype=np.int64)
    if m == 0:
        return re, cnt
    t0 = t_grid_ms[0]
    step = t_grid_ms[1] - t_grid_ms[0] if m > 1 else 1.0
    times = spike_times_ms
    neurons = spike_neurons
    order = _by_neuron_then_time(spike_times_ms, spike_neurons, n_e)
    a = 0
    total = order.shape[0]
    while a < total:
        nk = neurons[order[a]]
        b = a
        while b + 1 < total and neurons[order[b + 1]] == nk:
            b += 1
        for q in range(a, b):
            ta = times[order[q]] * ms_per_unit
            tb = times[order[q + 1]] * ms_per_unit
            isi = tb - ta
            if isi <= 0.0:
                continue
            first = math.ceil((ta - t0) / step - 1e-9)
            if first < 0:
                first = 0
            last = math.ceil((tb - t0) / step - 1e-9) - 1
            if last > m - 1:
                last = m - 1
            if last < first:
                continue
            ang0 = TWO_PI * (t_grid_ms[first] - ta) / isi
            zr = math.cos(ang0)
            zi = math.sin(ang0)
            rot = TWO_PI * step / isi
            rr = math.cos(rot)
            ri = math.sin(rot)
            for g in range(first, last + 1):
                re[g] += zr
                im[g] += zi
                cnt[g] += 1
                nzr = zr * rr - zi * ri
                zi = zr * ri + zi * rr
                zr = nzr
        a = b + 1
    r = np.empty(m)
    for g in range(m):
        r[g] = math.sqrt(re[g] ** 2 + im[g] ** 2) / cnt[g] if cnt[g] > 0 else np.nan
    return r, cnt
