"""One network on several threads, with the same bits as on one (:func:`run_steps_threaded`).

Every thread runs the whole step loop of :func:`simulator.kernel.run_steps` over the cells it
owns and meets the others at a barrier (:mod:`simulator.barrier`) twice per step:

1. **own cells**: the Box–Muller transform of its noise pairs, the neuron pass, the E cells'
   window sums (thread 0 drew the step's random words during the previous step);
   — barrier —
2. **every thread** collects the step's spikes (ascending, into its own list); thread 0
   records them, sums the E population's mean V and draws the next step's words; the last
   thread sums the I population's mean V, the E cells' mean delayed S of the next step (the
   delay line's next row, complete and not yet overwritten) and takes the previous step's
   Kuramoto sample;
   then, for **own targets**: the E spikes' jumps onto its I cells with their synapses'
   pending potentiation and depression (each row's part whose targets it owns, found by
   binary search: rows are target-ascending), the I spikes' hits on its E cells;
   — barrier —
3. **own cells**: traces decay, the spike bookkeeping of its spiking cells.

Ownership follows the noise: pair ``j`` of a step's draws gives cells ``j`` and ``j + h``
(:mod:`simulator.noise`), so a thread owns a range of pairs in each stretch of the pair space
where both cells stay in one population, and with them both cells (:func:`thread_ranges`).
Nothing is summed across threads: each cell, synapse and target is updated by one thread in
the order of the one-thread kernel (a target's jumps in ascending order of the spiking cell),
and the sums over all cells (population means, the Kuramoto sample) are taken by one thread
in the documented order. So every thread count gives the same bits as ``run_steps``
(``tests/test_sim_threads.py`` checks the digests), and the thread count is only a speed
setting.

The variants with a serial loop of their own (recurrent E→E/I→I input, Fig 8; plastic I→E,
Fig 11; the symmetric STDP rule, Fig 12) and explicit noise (``integrate_explicit``) run on
one thread: :func:`threadable` says which.
"""

from __future__ import annotations

import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from simulator.barrier import barrier_abort, barrier_wait, new_barrier
from simulator.intrinsics import cttz, fma_f64
from simulator.kernel import (
    LTP_SEGMENT_STEPS,
    TWO_PI,
    _count_hits,
    _kuramoto_sample,
    _lazy_e_row,
    _neuron_pass,
    _overwrite_hits,
    _subtract_in_order,
    sum_in_lanes,
)
from simulator.kernel_args import PassLaw, Structure
from simulator.noise import normal_pairs
from simulator.prefetch import prefetch_range
from simulator.sfc64 import sfc64_words

_F0 = np.float32(0.0)
#: Most cell ranges one thread owns (two per stretch of the pair space, at most three stretches)
MAX_RANGES = 6


class Threading(NamedTuple):
    """How one threaded call splits the network (built by :func:`plan`)."""

    n_threads: int
    barrier: npt.NDArray[np.int64]  #: :func:`simulator.barrier.new_barrier`
    pairs: npt.NDArray[np.int64]  #: ``(threads, MAX_RANGES, 2)``: each thread's noise pairs
    cells: npt.NDArray[np.int64]  #: ``(threads, MAX_RANGES, 2)``: its cells (one population each)
    n_pairs: npt.NDArray[np.int64]  #: ranges used in ``pairs`` per thread
    n_cells: npt.NDArray[np.int64]  #: ranges used in ``cells`` per thread
    owner: npt.NDArray[np.int32]  #: per cell, the thread that owns it
    step_spk: npt.NDArray[np.int64]  #: ``(threads, n)``: each thread's list of a step's spikes


def threadable(shape: Structure, explicit_noise: bool) -> bool:
    """Whether the threaded kernel covers this network variant (else: one thread)."""
    return not (shape.has_rec or shape.plastic_ie or shape.rule_sym or explicit_noise)


def thread_ranges(
    n: int, n_e: int, n_threads: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:  # noqa: E501
    """Each thread's noise pairs and cells: ``(pairs, cells, n_pairs, n_cells)``.

    The pair space ``[0, h)`` is cut where cell ``j`` or ``j + h`` crosses from E to I, and
    each stretch is split evenly among the threads: thread ``t`` owns part ``t`` of every
    stretch, the pairs' first cells and their second cells (each range in one population).
    """
    h = (n + 1) // 2
    cuts = {0, h}
    for c in (n_e, n_e - h):
        if 0 < c < h:
            cuts.add(c)
    bounds = sorted(cuts)
    pairs = np.zeros((n_threads, MAX_RANGES, 2), dtype=np.int64)
    cells = np.zeros((n_threads, MAX_RANGES, 2), dtype=np.int64)
    n_pairs = np.zeros(n_threads, dtype=np.int64)
    n_cells = np.zeros(n_threads, dtype=np.int64)
    for a, b in itertools.pairwise(bounds):
        for t in range(n_threads):
            lo = a + (b - a) * t // n_threads
            hi = a + (b - a) * (t + 1) // n_threads
            if hi <= lo:
                continue
            pairs[t, n_pairs[t]] = (lo, hi)
            n_pairs[t] += 1
            for c_lo, c_hi in ((lo, hi), (lo + h, min(hi + h, n))):
                if c_hi > c_lo:
                    cells[t, n_cells[t]] = (c_lo, c_hi)
                    n_cells[t] += 1
    return pairs, cells, n_pairs, n_cells


def plan(n: int, n_e: int, n_threads: int) -> Threading:
    """The fixed partition of a network of ``n`` cells (``n_e`` E) among ``n_threads``."""
    pairs, cells, n_pairs, n_cells = thread_ranges(n, n_e, n_threads)
    owner = np.full(n, -1, dtype=np.int32)
    for t in range(n_threads):
        for r in range(int(n_cells[t])):
            owner[cells[t, r, 0] : cells[t, r, 1]] = t
    assert bool(np.all(owner >= 0)), "every cell has an owner"
    return Threading(
        n_threads=n_threads, barrier=new_barrier(), pairs=pairs, cells=cells, n_pairs=n_pairs,
        n_cells=n_cells, owner=owner, step_spk=np.zeros((n_threads, n), dtype=np.int64),
    )  # fmt: skip


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _lower_bound(a, lo, hi, value):  # type: ignore[no-untyped-def]
    """First position in ``a[lo:hi]`` (ascending) whose value is ≥ ``value``."""
    lo = np.int64(lo)
    hi = np.int64(hi)
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _flush_part(n_e, ptr, tgt, w, snap, g, a, eta_ltp, w_hi, k_lo, k_hi):  # type: ignore[no-untyped-def]
    """:func:`simulator.kernel._flush_potentiation` for the synapses onto I cells ``k_lo:k_hi``."""
    for j in range(n_e):
        a_j = eta_ltp * a[j]
        beg = _lower_bound(tgt, ptr[j], ptr[j + 1], k_lo)
        end = _lower_bound(tgt, beg, ptr[j + 1], k_hi)
        for s in range(np.uint64(beg), np.uint64(end)):
            pend = g[np.uint64(tgt[s])] - snap[s]
            w[s] = np.float32(min(fma_f64(a_j, pend, np.float64(w[s])), w_hi))
            snap[s] = 0.0


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def run_steps_threaded(  # type: ignore[no-untyped-def]
    tid, par, step, shape, st, consts, spk, pl, rule, syn, noise, kop, out,
):  # fmt: skip
    """Thread ``tid``'s share of :func:`simulator.kernel.run_steps` (the module docstring)."""
    n_threads = par.n_threads
    words_bar = par.barrier
    gen = 0
    n_steps, step0, plast_on, uniform = step.n_steps, step.step0, step.plast_on, step.uniform
    u_e, u_i, noise_gain, xi = step.u_e, step.u_i, step.noise_gain, step.xi
    n_e, overwrite = shape.n_e, shape.overwrite
    v, x_cross, xprev_cross = st.v, st.x_cross, st.xprev_cross
    hist_cross, head = st.hist_cross, st.head
    dt_over_tau, base = consts.dt_over_tau, consts.base
    coef_e, coef_i = consts.coef_e, consts.coef_i
    scale_cross, syn_d, x_decay = consts.scale_cross, consts.syn_d, consts.x_decay
    contact_cells = consts.contact_cells
    contacts = contact_cells.shape[1] - 1
    rng_state, rng_words = noise.rng_state, noise.rng_words
    ei_ptr, ei_tgt, ei_w = syn.ei.ptr, syn.ei.target, syn.ei.weight
    ie_ptr, ie_tgt, ie_w = syn.ie.ptr, syn.ie.target, syn.ie.weight
    ltp_snap, ltp_g, ltp_a, tr_e, tr_i = pl.ltp_snap, pl.ltp_g, pl.ltp_a, pl.tr_e, pl.tr_i
    tr_e_decay, tr_i_decay, a0 = rule.tr_e_decay, rule.tr_i_decay, rule.a0
    eta_ltd, eta_ltp, w_lo_ei, w_hi_ei = rule.eta_ltd, rule.eta_ltp, rule.w_lo_ei, rule.w_hi_ei
    last_spike, prev_spike, spiked = spk.last_spike, spk.prev_spike, spk.spiked
    spiked_words, ie_hits = spk.spiked_words, spk.ie_hits
    spk_step, spk_idx, n_spk = out.spk_step, out.spk_idx, out.n_spk
    kop_every, kop_z_re, kop_z_im, kop_r_re, kop_r_im = (
        kop.every, kop.z_re, kop.z_im, kop.r_re, kop.r_im
    )  # fmt: skip
    kop_acc = out.kop_acc
    my_spk = par.step_spk[tid]
    owner = par.owner
    n_pr = par.n_pairs[tid]
    n_cr = par.n_cells[tid]
    pairs = par.pairs[tid]
    cells = par.cells[tid]
    first = tid == 0
    last_thread = tid == n_threads - 1
    n = v.shape[0]
    n_i = n - n_e
    depth = hist_cross.shape[0]
    h = head[0]
    ns = n_spk[0]
    cap = spk_step.shape[0]
    inv_e = 1.0 / n_e
    inv_i = 1.0 / n_i
    w_ie = ie_w[0] if ie_w.shape[0] > 0 else 0.0
    n_e_u = np.uint64(n_e)
    u1 = np.uint64(1)
    u2 = np.uint64(2)
    u3 = np.uint64(3)
    u4 = np.uint64(4)
    x_then = xprev_cross
    x_now = x_cross
    lazy = plast_on
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
    words = rng_words  # scratch_words(n) long: one step's block
    law_e = PassLaw(
        scale_cross[0], dt_over_tau[0], base[0], coef_e[0], coef_i[0], noise_gain[0], _F0,
        syn_d, x_decay, consts.v_th, consts.v_reset, consts.v_rest, consts.ref_steps,
    )  # fmt: skip
    law_i = PassLaw(
        scale_cross[n_e], dt_over_tau[n_e], base[n_e], coef_e[n_e], coef_i[n_e],
        noise_gain[n_e], _F0, syn_d, x_decay, consts.v_th, consts.v_reset, consts.v_rest,
        consts.ref_steps,
    )  # fmt: skip
    law_all = PassLaw(
        scale_cross, dt_over_tau, base, coef_e, coef_i, noise_gain, st.v_new, syn_d, x_decay,
        consts.v_th, consts.v_reset, consts.v_rest, consts.ref_steps,
    )  # fmt: skip
    if lazy:
        for r in range(n_cr):
            lo, hi = cells[r, 0], cells[r, 1]
            if lo < n_e:
                for i in range(lo, hi):
                    ltp_a[i] = tr_e[i]
    if first and n_steps > 0:
        sfc64_words(rng_state, words)
    if last_thread and n_steps > 0:  # the first step's delayed S (nobody writes it yet)
        out.s_ie_e[0] = sum_in_lanes(hist_cross[h], 0, n_e) * inv_e
    gen = barrier_wait(words_bar, n_threads, gen)
    if gen < 0:
        return
    sample_due = False
    for k in range(n_steps):
        t_end = step0 + k + 1
        x_then, x_now = x_now, x_then
        # ---- 1. own cells: noise, neuron pass, window sums
        for r in range(n_pr):
            normal_pairs(words, xi[0], pairs[r, 0], pairs[r, 1])
        for r in range(n_cr):
            lo, hi = cells[r, 0], cells[r, 1]
            pop = 0 if lo < n_e else 1
            law = law_e if pop == 0 else law_i
            for g in range(contacts):  # the range's part near each contact, with its drive
                a = max(lo, contact_cells[pop, g])
                b = min(hi, contact_cells[pop, g + 1])
                if a >= b:
                    continue
                ue = np.float32(u_e[k, g])
                ui = np.float32(u_i[k, g])
                if uniform:
                    _neuron_pass(a, b, h, 0, st, x_then, x_now, xi, spiked, law, ue, ui)
                else:
                    _neuron_pass(a, b, h, 0, st, x_then, x_now, xi, spiked, law_all, ue, ui)
            if lo < n_e:
                for i in range(lo, hi):
                    vv = np.float64(v[i])
                    out.sum_v_e[i] += vv
                    out.sumsq_v_e[i] = fma_f64(vv, vv, out.sumsq_v_e[i])
        gen = barrier_wait(words_bar, n_threads, gen)
        if gen < 0:
            return
        # ---- 2. every thread: this step's spikes, ascending (thread 0 records them)
        n_now = 0
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
                    my_spk[n_now] = iu
                    n_now += 1
                    if first:
                        if ns < cap:
                            spk_step[ns] = t_end
                            spk_idx[ns] = iu
                        ns += 1
        if first:
            out.pop_mean_e[k] = sum_in_lanes(v, 0, n_e) * inv_e
            if k + 1 < n_steps:
                sfc64_words(rng_state, words)  # the next step's words (all read: barrier 1)
        if last_thread:
            out.pop_mean_i[k] = sum_in_lanes(v, n_e, n) * inv_i
            if sample_due:  # the previous step's sample (its bookkeeping is done)
                sr, si, valid = _kuramoto_sample(n_e, prev_spike, kop_z_re, kop_z_im, kop_r_re,
                                                 kop_r_im)  # fmt: skip
                if valid > 0:
                    kop_acc[0] += math.sqrt(fma_f64(si, si, sr * sr)) / valid
                    kop_acc[1] += 1.0
        sample_due = t_end % kop_every == 0
        h += 1
        if h == depth:
            h = 0
        if last_thread and k + 1 < n_steps:
            # the next step's delayed S: its row is complete (barrier 1) and is only
            # overwritten by the next step's pass (after barrier 2)
            out.s_ie_e[k + 1] = sum_in_lanes(hist_cross[h], 0, n_e) * inv_e
        # ---- own targets: E spikes onto own I cells, I spikes onto own E cells
        for q in range(n_now):
            g = my_spk[q]
            if g >= n_e:
                break
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo >= n_e:
                    beg = _lower_bound(ei_tgt, ei_ptr[g], ei_ptr[g + 1], lo - n_e)
                    end = _lower_bound(ei_tgt, beg, ei_ptr[g + 1], hi - n_e)
                    prefetch_range(ei_w, beg, end)
                    prefetch_range(ei_tgt, beg, end)
                    if lazy:
                        prefetch_range(ltp_snap, beg, end)
        for q in range(n_now):
            j = my_spk[q]
            if j >= n_e:
                break
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo < n_e:
                    continue
                b0 = _lower_bound(ei_tgt, ei_ptr[j], ei_ptr[j + 1], lo - n_e)
                beg = np.uint64(b0)
                end = np.uint64(_lower_bound(ei_tgt, b0, ei_ptr[j + 1], hi - n_e))
                if lazy:
                    _lazy_e_row(
                        beg, end, n_e_u, overwrite, ei_tgt, ei_w, ltp_snap, ltp_g, x_then,
                        x_now, spiked, tr_i, eta_ltp * ltp_a[j], eta_ltp * tr_e[j],
                        dpow[k - seg0], eta_ltd, w_lo_ei, w_hi_ei,
                    )  # fmt: skip
                else:
                    for su in range(beg, end):
                        gu = n_e_u + np.uint64(ei_tgt[su])
                        if overwrite:
                            x_now[gu] = x_then[gu] + ei_w[su]
                        else:
                            x_now[gu] += ei_w[su]
        ie_hit = False
        for q in range(n_now):
            g = my_spk[q]
            if g < n_e:
                continue
            j = g - n_e
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo < n_e:
                    beg = _lower_bound(ie_tgt, ie_ptr[j], ie_ptr[j + 1], lo)
                    end = _lower_bound(ie_tgt, beg, ie_ptr[j + 1], hi)
                    _count_hits(ie_tgt, beg, end, ie_hits)
                    ie_hit = True
            if lazy and owner[g] == tid:
                ltp_g[j] += dpow[k - seg0]
        if ie_hit:
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo >= n_e:
                    continue
                if overwrite:
                    _overwrite_hits(x_then, x_now, ie_hits, w_ie, lo, hi)
                else:
                    for i in range(lo, hi):
                        c = ie_hits[i]
                        if c > 0:
                            x_now[i] = _subtract_in_order(x_now[i], w_ie, c)
                            ie_hits[i] = 0
        gen = barrier_wait(words_bar, n_threads, gen)
        if gen < 0:
            return
        # ---- 3. own cells: traces decay, then the spiking cells' bumps and bookkeeping
        for r in range(n_cr):
            lo, hi = cells[r, 0], cells[r, 1]
            if lo < n_e:
                for i in range(lo, hi):
                    tr_e[i] *= tr_e_decay
            else:
                for i in range(lo - n_e, hi - n_e):
                    tr_i[i] *= tr_i_decay
        for q in range(n_now):
            gu = np.uint64(my_spk[q])
            if owner[gu] != tid:
                continue
            spiked[gu] = False
            if gu < n_e_u:
                tr_e[gu] += a0
                if lazy:
                    ltp_a[gu] = tr_e[gu] * dinv[k - seg0 + 1]
                last = last_spike[gu]
                if last >= 0:
                    isi = t_end - last
                    ahead = (kop_every - t_end % kop_every) % kop_every
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
        # ---- pending potentiation at the end of the call and of every segment: own targets
        if lazy and (k + 1 == n_steps or k + 1 - seg0 == seg):
            gen = barrier_wait(words_bar, n_threads, gen)
            if gen < 0:
                return
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo >= n_e:
                    _flush_part(n_e, ei_ptr, ei_tgt, ei_w, ltp_snap, ltp_g, ltp_a, eta_ltp,
                                w_hi_ei, lo - n_e, hi - n_e)  # fmt: skip
            gen = barrier_wait(words_bar, n_threads, gen)
            if gen < 0:
                return
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo < n_e:
                    for i in range(lo, hi):
                        ltp_a[i] = tr_e[i]
                else:
                    for i in range(lo - n_e, hi - n_e):
                        ltp_g[i] = 0.0
            seg0 = k + 1
    if n_steps % 2 == 1:  # X(t+dt) is in xprev_cross: swap own cells' contents back
        for r in range(n_cr):
            for i in range(cells[r, 0], cells[r, 1]):
                x_cross[i], xprev_cross[i] = xprev_cross[i], x_cross[i]
    gen = barrier_wait(words_bar, n_threads, gen)
    if gen < 0:
        return
    if last_thread and sample_due:
        sr, si, valid = _kuramoto_sample(n_e, prev_spike, kop_z_re, kop_z_im, kop_r_re, kop_r_im)
        if valid > 0:
            kop_acc[0] += math.sqrt(fma_f64(si, si, sr * sr)) / valid
            kop_acc[1] += 1.0
    if first:
        head[0] = h
        n_spk[0] = ns


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads (kept: a thread start per call costs ≈ 0.1 ms)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="kernel")
        return pool


def _share(tid: int, par: Threading, args: tuple[Any, ...]) -> None:
    try:
        run_steps_threaded(tid, par, *args)
    except BaseException:
        barrier_abort(par.barrier)  # the other threads return instead of waiting for this one
        raise


def run_threaded(par: Threading, args: tuple[Any, ...]) -> None:
    """Run ``run_steps(*args)`` on ``par.n_threads`` threads (this one is thread 0)."""
    par.barrier[:] = 0
    futures = [_pool(par.n_threads - 1).submit(_share, tid, par, args)
               for tid in range(1, par.n_threads)]  # fmt: skip
    try:
        _share(0, par, args)
    finally:
        for future in futures:
            future.result()
