"""One network on several threads, with the same bits as on one (:func:`run_steps_threaded`).

A cell's membrane potential at step ``k`` reads its synaptic variable ``S`` of step ``k − d``
(the delay ``d``, 50 steps of 0.1 ms), and ``S`` is the only way other cells reach it. So each
thread can integrate the potentials of the cells it owns, and find their spikes, a block of
up to ``d/2`` steps ahead of the synapses, and the threads meet once per block (twice with
overwrite semantics, below) instead of twice per step. Each block has two phases and one
barrier:

A. **own cells, step by step**: the step's random words (every thread draws all of them from
   its own copy of the generators' state: drawing is ≈ 0.3 ns a word, cheaper than handing
   them over), the Box–Muller transform of its noise pairs, the potentials (the delay line's
   row, refractoriness, threshold), the E cells' window sums, the spikes (into the thread's
   event list, ascending) and their bookkeeping: the E trace's decay and bump, the pending
   potentiation's ``A``, and what the synapses and the Kuramoto sample will need of each E
   spike (``η·A``, ``η·trace`` before the step's bump, the phasor and its rotation); the
   potentials of the step into the block's buffer;
   — barrier —
B. **own targets, step by step**, from every thread's events of the block merged in ascending
   cell order per step: the synaptic kinetics of its cells (``S``, ``X``, the delay line's
   row), the E spikes' jumps onto its I cells with their synapses' pending potentiation and
   depression (each row's part per thread found once, by :func:`plan`: rows are
   target-ascending), the I spikes' hits on its E cells, the I traces; thread 0 records the
   spikes; the last thread samples the Kuramoto order parameter (it alone writes the phasors
   and the E cells' ``prev_spike``); each step's population means, and the next block's mean
   delayed ``S``, are summed by one thread (two steps in ``2T − 1`` per thread but the last,
   which has one; the delay line's rows of the next block hold ``S`` of steps at least
   ``d/2`` back, complete once this block's barrier has passed and rewritten only after the
   next one); at a segment's end, each thread applies its synapses' pending potentiation.

With overwrite semantics (the paper's, and the default) the E→I rows are not split by target:
walking every spiking cell's row for a part of it cost a thread nearly what the whole row
costs (the walk is bound by reaching each row, ``docs/dev/simulator-speed.md``). Phase B is
then two phases with a barrier between them:

B1. **own E cells' whole rows, step by step**: each E spike's synapses (pending potentiation,
    jump weight, depression, a same-step pair's potentiation), from the thread's own copies of
    every I cell's trace and pending-potentiation sum ``G`` (kept up to date from every
    thread's I spikes); each jump's weight goes into the thread's buffer for that step and
    target, stamped with the block, since under overwrite semantics a target's ``X`` takes
    the step's last jump only; at a segment's end the thread flushes its own rows;
    — barrier —
B2. **own targets, step by step**, as B above without the E rows and the I traces: a target's
    jump is the one of the highest thread that stamped it (threads own ascending E ranges).

Blocks never cross a call's end or a potentiation segment's end (the segment's ``A`` of every
E cell is kept for phase B in one of two buffers), and the event lists and potential buffers
alternate between two halves, so phase A of the next block can start while another thread
is still in phase B of this one. A thread owns one contiguous range of the E cells and one
of the I cells, cut at multiples of 64 cells (:func:`thread_ranges`), so that two threads
write the same cache line of a per-cell array only where the ranges meet (threads writing
into each other's lines cost more than the work: ``docs/dev/simulator-speed.md``, eighth
session). Pair ``j`` of a step's draws gives cells ``j`` and ``j + h`` (:mod:`simulator.noise`):
a thread transforms every pair with a cell of its own, into a row of normals of its own (a
pair split between two owners is transformed by both, with the same bits). Nothing is summed
across threads: each cell, synapse and
target is updated by one thread in the order of the one-thread kernel (a target's jumps in
ascending order of the spiking cell), and every sum over cells is taken by one thread in the
documented order. So every thread count gives the same bits as
:func:`simulator.kernel.run_steps` (``tests/test_sim_threads.py`` checks the digests).

The variants with a serial loop of their own (recurrent E→E/I→I input, Fig 8; plastic I→E,
Fig 11; the symmetric STDP rule, Fig 12), explicit noise (``integrate_explicit``) and a delay
shorter than two steps run on one thread: :func:`threadable` says which.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from simulator import aligned
from simulator.barrier import barrier_abort, barrier_wait, new_barrier
from simulator.intrinsics import at, cttz, cycles, fma_f32, fma_f64
from simulator.kernel import (
    LTP_SEGMENT_STEPS,
    TWO_PI,
    _count_hits,
    _flush_rows,
    _kuramoto_sample,
    _lazy_e_row,
    _overwrite_hits,
    _subtract_in_order,
    sum_in_lanes,
)
from simulator.kernel_args import PassLaw, Structure
from simulator.noise import normal_pairs, scratch_words
from simulator.prefetch import prefetch_range
from simulator.sfc64 import LANES, sfc64_words

_F0 = np.float32(0.0)
_I0 = np.int32(0)
_I1 = np.int32(1)
#: Most cell (or noise pair) ranges of one thread
MAX_RANGES = 6
#: Threads' cell ranges end at multiples of this many cells (64 bytes of the per-cell bytes)
CELL_ALIGN = 64
#: Blocks whose phase ticks each thread keeps (``Threading.block_ticks``)
BLOCK_LOG = 4096
#: Per E spike, the floats phase B reads: η·A, η·trace, the phasor (re, im), its rotation
_EV_FLOATS = 6


class Threading(NamedTuple):
    """How one threaded call splits the network, and its scratch (built by :func:`plan`)."""

    n_threads: int
    block: int  #: most steps per block (half the delay)
    barrier: npt.NDArray[np.int64]  #: :func:`simulator.barrier.new_barrier`
    pairs: npt.NDArray[np.int64]  #: ``(threads, MAX_RANGES, 2)``: each thread's noise pairs
    #: ``(threads, MAX_RANGES, 2)``: its cells (one population each), ascending
    cells: npt.NDArray[np.int64]
    n_pairs: npt.NDArray[np.int64]  #: ranges used in ``pairs`` per thread
    n_cells: npt.NDArray[np.int64]  #: ranges used in ``cells`` per thread
    owner: npt.NDArray[np.int32]  #: per cell, the thread that owns it
    rng: npt.NDArray[np.uint64]  #: ``(threads, 4, LANES)``: each thread's generators' state
    words: npt.NDArray[np.uint64]  #: ``(threads, scratch_words(n))``: a step's random words
    #: ``(threads, n padded to CELL_ALIGN)``: each thread's own row of a step's normals
    xi: npt.NDArray[np.float32]
    flags: npt.NDArray[np.bool_]  #: ``(threads, n padded to 32)``: own cells' spike flags
    flag_words: npt.NDArray[np.uint64]  #: the same flags as 64-bit words (a view)
    v_blk: npt.NDArray[np.float32]  #: ``(2, block, n)``: the potentials of a block's steps
    ev_cell: npt.NDArray[np.int64]  #: ``(threads, 2, cap)``: a block's spikes (cell)
    ev_prev: npt.NDArray[np.int64]  #: ``(threads, 2, cap)``: the cell's spike before
    ev_f: npt.NDArray[np.float64]  #: ``(threads, 2, cap, 6)``: what phase B needs of it
    #: ``(threads, 2, block + 1 padded to 8)``: each step's first event (each row its own lines)
    ev_off: npt.NDArray[np.int64]
    m_cell: npt.NDArray[np.int64]  #: ``(threads, n)``: a step's spikes of all threads, merged
    m_src: npt.NDArray[np.int64]  #: ``(threads, n)``: their events (index × threads + thread)
    m_pos: npt.NDArray[np.int64]  #: ``(threads, 2, threads padded to 8)``: the merge's heads, ends
    a_seg: npt.NDArray[np.float64]  #: ``(2, n_e)``: every E cell's ``A`` at a segment's end
    #: ``(threads, 8)``: time-stamp ticks each thread spent in phase A, in phase B and at the
    #: barrier, and the blocks it ran (summed over calls; columns 4–7 pad a thread's row to a
    #: cache line of its own)
    ticks: npt.NDArray[np.int64]
    #: ``(threads, BLOCK_LOG, 2)``: the ticks of phase A and B of each thread's last blocks
    #: (block ``b`` at row ``b mod BLOCK_LOG``; ``bench/bench_thread_phases.py`` reads them)
    block_ticks: npt.NDArray[np.int64]
    #: ``(threads, 2)``: each thread's E ranges and I ranges (as in ``cells``, in that order)
    n_tgt: npt.NDArray[np.int64]
    #: ``(threads, n_e, 2·ranges)``: where E cell j's E→I row enters and leaves each I range
    #: of the thread (positions in the projection's arrays)
    split_ei: npt.NDArray[np.int64]
    #: ``(threads, n_i, 2·ranges)``: the same for the I→E rows and the thread's E ranges
    split_ie: npt.NDArray[np.int64]
    #: ``(threads, n_i)``: each thread's copy of the I cells' pending-potentiation sums ``G``
    #: (rows by spiking cell, :func:`_rows_by_pre`)
    g_rep: npt.NDArray[np.float64]
    #: ``(threads, n_i)``: each thread's copy of the I traces
    tri_rep: npt.NDArray[np.float64]
    #: ``(threads, n_i)``: each thread's flags of the I cells spiking at the step
    post: npt.NDArray[np.bool_]
    #: ``(threads, block, n_i)``: the weight of the last jump a thread's E spikes made onto
    #: each I cell at each step of the block, valid where ``jump_stamp`` holds the block's stamp
    jump_w: npt.NDArray[np.float32]
    jump_stamp: npt.NDArray[np.int64]  #: ``(threads, block, n_i)``
    serial: npt.NDArray[np.int64]  #: ``(8,)``: blocks run so far (the next block's stamp − 1)


def threadable(shape: Structure, explicit_noise: bool, delay_steps: int = 50) -> bool:
    """Whether the threaded kernel covers this network variant (else: one thread)."""
    return not (
        shape.has_rec or shape.plastic_ie or shape.rule_sym or explicit_noise or delay_steps < 2
    )


def thread_ranges(
    n: int, n_e: int, n_threads: int
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:
    """Each thread's noise pairs and cells: ``(pairs, cells, n_pairs, n_cells)``.

    Thread ``t`` owns part ``t`` of the E cells and part ``t`` of the I cells, each one
    contiguous range whose ends (but the populations' ends) are multiples of
    :data:`CELL_ALIGN` cells: two threads then never write the same cache line of a per-cell
    array but at those few ends (``docs/dev/simulator-speed.md``, eighth session). Its pairs
    are every noise pair with a cell among its own, merged into ascending ranges: a pair whose
    cells have two owners is transformed by both (the same bits), each thread into its own row.
    """
    h = (n + 1) // 2
    pairs = np.zeros((n_threads, MAX_RANGES, 2), dtype=np.int64)
    cells = np.zeros((n_threads, MAX_RANGES, 2), dtype=np.int64)
    n_pairs = np.zeros(n_threads, dtype=np.int64)
    n_cells = np.zeros(n_threads, dtype=np.int64)

    def cut(lo: int, hi: int, t: int) -> int:
        if t == 0:
            return lo
        if t == n_threads:
            return hi
        even = lo + (hi - lo) * t // n_threads
        return min(max(lo, round(even / CELL_ALIGN) * CELL_ALIGN), hi)

    for t in range(n_threads):
        wanted: list[tuple[int, int]] = []
        for lo, hi in (cut(0, n_e, t), cut(0, n_e, t + 1)), (cut(n_e, n, t), cut(n_e, n, t + 1)):
            if hi <= lo:
                continue
            cells[t, n_cells[t]] = (lo, hi)
            n_cells[t] += 1
            if lo < h:
                wanted.append((lo, min(hi, h)))
            if hi > h:
                wanted.append((max(lo, h) - h, hi - h))
        for lo, hi in sorted(wanted):
            if n_pairs[t] > 0 and lo <= pairs[t, n_pairs[t] - 1, 1]:
                pairs[t, n_pairs[t] - 1, 1] = max(hi, pairs[t, n_pairs[t] - 1, 1])
            else:
                pairs[t, n_pairs[t]] = (lo, hi)
                n_pairs[t] += 1
    return pairs, cells, n_pairs, n_cells


def plan(
    n: int,
    n_e: int,
    n_threads: int,
    delay_steps: int,
    ei: Any,
    ie: Any,
    block: int | None = None,
) -> Threading:
    """The fixed partition of a network of ``n`` cells (``n_e`` E) among ``n_threads``.

    Args:
        n: Cells.
        n_e: E cells (``0..n_e-1``).
        n_threads: Threads (≥ 1).
        delay_steps: The synaptic delay in steps (≥ 2).
        ei: The E→I :class:`~simulator.connectivity.Projection` (its rows' parts per thread
            are found once, here: a new connectivity needs a new plan).
        ie: The I→E projection.
        block: Most steps per block (default, and at most: half the delay).
    """
    if delay_steps < 2:
        raise ValueError(f"Expected delay_steps >= 2 for the threaded kernel, actual {delay_steps}")
    longest = delay_steps // 2
    block = longest if block is None else min(max(1, int(block)), longest)
    pairs, cells, n_pairs, n_cells = thread_ranges(n, n_e, n_threads)
    owner = np.full(n, -1, dtype=np.int32)
    own = np.zeros(n_threads, dtype=np.int64)
    for t in range(n_threads):
        for r in range(int(n_cells[t])):
            owner[cells[t, r, 0] : cells[t, r, 1]] = t
            own[t] += cells[t, r, 1] - cells[t, r, 0]
    assert bool(np.all(owner >= 0)), "every cell has an owner"
    cap = max(1, int(own.max()) * block)  # every own cell firing at every step of a block
    # each thread's I ranges (I indices) and E ranges, and where each row of E→I (I→E)
    # synapses enters and leaves them
    tgt_i = np.zeros((n_threads, MAX_RANGES, 2), dtype=np.int64)
    tgt_e = np.zeros((n_threads, MAX_RANGES, 2), dtype=np.int64)
    n_tgt = np.zeros((n_threads, 2), dtype=np.int64)
    for t in range(n_threads):
        for lo, hi in cells[t, : n_cells[t]]:
            if lo >= n_e:
                tgt_i[t, n_tgt[t, 1]] = (lo - n_e, hi - n_e)
                n_tgt[t, 1] += 1
            else:
                tgt_e[t, n_tgt[t, 0]] = (lo, hi)
                n_tgt[t, 0] += 1
    width = 2 * max(1, int(n_tgt.max()))
    split_ei = np.zeros((n_threads, n_e, width), dtype=np.int64)
    split_ie = np.zeros((n_threads, n - n_e, width), dtype=np.int64)
    for t in range(n_threads):
        _row_splits(ei.ptr, ei.target, tgt_i[t], n_tgt[t, 1], split_ei[t])
        _row_splits(ie.ptr, ie.target, tgt_e[t], n_tgt[t, 0], split_ie[t])
    padded = -(-n // CELL_ALIGN) * CELL_ALIGN
    n_i_padded = max(CELL_ALIGN, -(-(n - n_e) // CELL_ALIGN) * CELL_ALIGN)
    flags = aligned.zeros((n_threads, padded), np.bool_)
    return Threading(
        n_threads=n_threads, block=block, barrier=new_barrier(), pairs=pairs, cells=cells,
        n_pairs=n_pairs, n_cells=n_cells, owner=owner,
        rng=aligned.zeros((n_threads, 4, LANES), np.uint64),
        words=aligned.zeros((n_threads, scratch_words(n)), np.uint64),
        xi=aligned.zeros((n_threads, padded), np.float32),
        flags=flags, flag_words=flags.view(np.uint64),
        v_blk=aligned.zeros((2, block, n), np.float32),
        ev_cell=aligned.zeros((n_threads, 2, cap), np.int64),
        ev_prev=aligned.zeros((n_threads, 2, cap), np.int64),
        ev_f=aligned.zeros((n_threads, 2, cap, _EV_FLOATS)),
        ev_off=aligned.zeros((n_threads, 2, -(-(block + 1) // 8) * 8), np.int64),
        m_cell=aligned.zeros((n_threads, padded), np.int64),
        m_src=aligned.zeros((n_threads, padded), np.int64),
        m_pos=aligned.zeros((n_threads, 2, 8 * -(-n_threads // 8)), np.int64),
        a_seg=aligned.zeros((2, n_e)), ticks=aligned.zeros((n_threads, 8), np.int64),
        block_ticks=np.zeros((n_threads, BLOCK_LOG, 2), dtype=np.int64),
        n_tgt=n_tgt, split_ei=split_ei, split_ie=split_ie,
        g_rep=aligned.zeros((n_threads, n_i_padded)),
        tri_rep=aligned.zeros((n_threads, n_i_padded)),
        post=aligned.zeros((n_threads, n_i_padded), np.bool_),
        jump_w=aligned.zeros((n_threads, block, n_i_padded), np.float32),
        jump_stamp=aligned.zeros((n_threads, block, n_i_padded), np.int64),
        serial=aligned.zeros(8, np.int64),
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
def _row_splits(ptr, tgt, ranges, n_ranges, out):  # type: ignore[no-untyped-def]
    """``out[j, 2r]``, ``out[j, 2r + 1]``: where row ``j`` enters and leaves target range ``r``."""
    for j in range(ptr.shape[0] - 1):
        for r in range(n_ranges):
            beg = _lower_bound(tgt, ptr[j], ptr[j + 1], ranges[r, 0])
            out[j, 2 * r] = beg
            out[j, 2 * r + 1] = _lower_bound(tgt, beg, ptr[j + 1], ranges[r, 1])


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _flush_part(n_e, split, r, tgt, w, snap, g, a, eta_ltp, w_hi):  # type: ignore[no-untyped-def]
    """:func:`simulator.kernel._flush_potentiation` for the synapses onto I range ``r``.

    ``split`` says where each E cell's row enters and leaves the thread's I ranges.
    """
    for j in range(n_e):
        a_j = eta_ltp * a[j]
        beg = split[j, 2 * r]
        end = split[j, 2 * r + 1]
        for s in range(np.uint64(beg), np.uint64(end)):
            pend = g[np.uint64(tgt[s])] - snap[s]
            w[s] = np.float32(min(fma_f64(a_j, pend, np.float64(w[s])), w_hi))
            snap[s] = 0.0


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _lazy_row_jumps(  # type: ignore[no-untyped-def]
    beg, end, tgt, w, snap, g, jump_w, jump_stamp, stamp, post, tr_i,
    a_j, ltp_now, d_now, eta_ltd, w_lo, w_hi,
):  # fmt: skip
    """:func:`simulator.kernel._lazy_e_row` (``overwrite``) with the jumps left in a buffer.

    The same operations on each synapse, but each jump's weight goes to ``jump_w`` (stamped)
    instead of onto its target's ``X``: with overwrite semantics a target's ``X`` takes the
    last jump of the step, so the buffer's last weight per target is all the target's owner
    needs (:func:`_apply_jumps`).
    """
    for su in range(beg, end):
        ku = np.uint64(tgt[su])
        g_k = g[ku]
        w0 = np.float32(min(fma_f64(a_j, g_k - snap[su], np.float64(w[su])), w_hi))
        jump_w[ku] = w0
        jump_stamp[ku] = stamp
        p = post[ku]
        w_ltd = np.float32(max(fma_f64(eta_ltd, tr_i[ku], np.float64(w0)), w_lo))
        w_ltp = np.float32(min(w0 + ltp_now, w_hi))
        w[su] = w_ltp if p else w_ltd
        snap[su] = g_k + d_now if p else g_k


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _static_row_jumps(beg, end, tgt, w, jump_w, jump_stamp, stamp):  # type: ignore[no-untyped-def]
    """The jumps of one E spike's row without plasticity, left in the buffer."""
    for su in range(np.uint64(beg), np.uint64(end)):
        ku = np.uint64(tgt[su])
        jump_w[ku] = w[su]
        jump_stamp[ku] = stamp


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _apply_jumps(  # type: ignore[no-untyped-def]
    jump_w, jump_stamp, s, stamp, lo, hi, n_e, n_threads, x_then, x_now
):  # fmt: skip
    """``X(t+dt) = X(t) + w`` for each I cell ``lo:hi`` (I indices) hit at step ``s`` of the block.

    ``w`` is the last jump's: thread ``t`` owns lower E cells than thread ``t + 1``, so the
    highest thread with a jump holds the step's last.
    """
    # selects, not branches (which hits a step has is random: a branch per cell mispredicted
    # often enough to cost ≈ 10 ticks a cell), thread by thread so that the last hit stays
    for tt in range(n_threads):
        stamps = jump_stamp[tt, s]
        weights = jump_w[tt, s]
        for i in range(np.uint64(lo), np.uint64(hi)):
            gi = np.uint64(n_e) + i
            hit = stamps[i] == stamp
            x_now[gi] = x_then[gi] + weights[i] if hit else x_now[gi]


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _v_pass(lo, hi, h, v, ref, hist, xi, flags, v_row, law, ue, ui):  # type: ignore[no-untyped-def]
    """The potentials' half of :func:`simulator.kernel._neuron_pass` over cells ``lo:hi``.

    The same operations on ``V``, the refractory counter and the spike flag, in the same order
    (``S`` and ``X`` are phase B's, :func:`_sx_pass`); the new potentials also go to ``v_row``.
    """
    scale, dt_over_tau, base, coef_e, coef_i, noise_gain, v_new = (
        law.scale, law.dt_over_tau, law.base, law.coef_e, law.coef_i, law.noise_gain, law.v_new
    )  # fmt: skip
    v_th, v_reset, v_rest, ref_steps = law.v_th, law.v_reset, law.v_rest, law.ref_steps
    for i in range(np.uint64(lo), np.uint64(hi)):
        s_delayed = hist[h, i]
        vo = v[i]
        t = fma_f32(at(scale, i), s_delayed, -vo) + at(base, i)
        t = fma_f32(at(coef_e, i), ue, t)
        t = fma_f32(at(coef_i, i), ui, t)
        vn = fma_f32(t, at(dt_over_tau, i), vo) + at(v_new, i)
        vn = fma_f32(at(noise_gain, i), xi[i], vn)
        r = ref[i]
        sp = (vo < v_th) & (vn >= v_th)
        hold = sp | (r > 0)
        vv = v_reset if hold else max(vn, v_rest)
        v[i] = vv
        v_row[i] = vv
        ref[i] = ref_steps if sp else max(r - _I1, _I0)
        flags[i] = sp


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _sx_pass(lo, hi, h, s_cross, hist, x_then, x_now, syn_d, x_decay):  # type: ignore[no-untyped-def]
    """The synapses' half of :func:`simulator.kernel._neuron_pass` over cells ``lo:hi``."""
    for i in range(np.uint64(lo), np.uint64(hi)):
        so = s_cross[i]
        hist[h, i] = so
        xo = x_then[i]
        s_cross[i] = fma_f32(syn_d, xo - so, so)
        x_now[i] = xo * x_decay


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _scan(words, lo, hi, out, count):  # type: ignore[no-untyped-def]
    """Append the cells ``lo:hi`` whose flag (a byte of ``words``) is set to ``out``, ascending."""
    u1 = np.uint64(1)
    u3 = np.uint64(3)
    lo_u = np.uint64(lo)
    hi_u = np.uint64(hi)
    for wq in range(lo_u >> u3, (hi_u + np.uint64(7)) >> u3):
        word = words[wq]
        if word == 0:
            continue
        first = wq << u3
        if first < lo_u:  # keep the bytes from lo on
            word &= ~((u1 << ((lo_u - first) << u3)) - u1)
        if first + np.uint64(8) > hi_u:  # keep the bytes before hi
            word &= (u1 << ((hi_u - first) << u3)) - u1
        while word != 0:
            out[count] = (wq << u3) + (cttz(word) >> u3)
            word &= word - u1
            count += 1
    return count


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _merge(ev_cell, ev_off, buf, s, n_threads, m_cell, m_src, pos):  # type: ignore[no-untyped-def]
    """Step ``s``'s spikes of every thread (each list ascending) merged into ``m_cell``, ascending.

    ``m_src`` gets each spike's event as ``index × threads + thread``; ``pos`` is scratch
    ``(2, threads)``. Returns the number of spikes.
    """
    n_now = 0
    if n_threads == 2:  # two lists: two heads in registers
        p0, e0 = ev_off[0, buf, s], ev_off[0, buf, s + 1]
        p1, e1 = ev_off[1, buf, s], ev_off[1, buf, s + 1]
        while p0 < e0 and p1 < e1:
            c0 = ev_cell[0, buf, p0]
            c1 = ev_cell[1, buf, p1]
            if c0 < c1:
                m_cell[n_now] = c0
                m_src[n_now] = p0 * 2
                p0 += 1
            else:
                m_cell[n_now] = c1
                m_src[n_now] = p1 * 2 + 1
                p1 += 1
            n_now += 1
        while p0 < e0:
            m_cell[n_now] = ev_cell[0, buf, p0]
            m_src[n_now] = p0 * 2
            p0 += 1
            n_now += 1
        while p1 < e1:
            m_cell[n_now] = ev_cell[1, buf, p1]
            m_src[n_now] = p1 * 2 + 1
            p1 += 1
            n_now += 1
        return n_now
    for t in range(n_threads):
        pos[0, t] = ev_off[t, buf, s]
        pos[1, t] = ev_off[t, buf, s + 1]
    while True:
        best = -1
        cell = 0
        for t in range(n_threads):
            if pos[0, t] < pos[1, t]:
                c = ev_cell[t, buf, pos[0, t]]
                if best < 0 or c < cell:
                    best = t
                    cell = c
        if best < 0:
            return n_now
        m_cell[n_now] = cell
        m_src[n_now] = pos[0, best] * n_threads + best
        pos[0, best] += 1
        n_now += 1


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def _block_end(k0, n_steps, block, seg):  # type: ignore[no-untyped-def]
    """The end of the block starting at step ``k0`` (``block`` steps at most).

    Clipped to the call's end and to the end of the potentiation segment (``seg`` steps each,
    from the call's start).
    """
    return min(k0 + block, n_steps, (k0 // seg + 1) * seg)


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def run_steps_threaded(  # type: ignore[no-untyped-def]
    tid, par, step, shape, st, consts, spk, pl, rule, syn, noise, kop, out,
):  # fmt: skip
    """Thread ``tid``'s share of :func:`simulator.kernel.run_steps` (the module docstring)."""
    n_steps, step0, plast_on, uniform = step.n_steps, step.step0, step.plast_on, step.uniform
    if n_steps <= 0:
        return
    n_threads = par.n_threads
    bar = par.barrier
    gen = 0
    u_e, u_i = step.u_e, step.u_i
    n_e, overwrite = shape.n_e, shape.overwrite
    v, ref, s_cross = st.v, st.ref, st.s_cross
    x_cross, xprev_cross, hist, head = st.x_cross, st.xprev_cross, st.hist_cross, st.head
    scale_cross, dt_over_tau, base = consts.scale_cross, consts.dt_over_tau, consts.base
    coef_e, coef_i = consts.coef_e, consts.coef_i
    syn_d, x_decay = consts.syn_d, consts.x_decay
    contact_cells = consts.contact_cells
    contacts = contact_cells.shape[1] - 1
    ei_ptr, ei_tgt, ei_w = syn.ei.ptr, syn.ei.target, syn.ei.weight
    ie_tgt, ie_w = syn.ie.target, syn.ie.weight
    ltp_snap, ltp_g, ltp_a, tr_e, tr_i = pl.ltp_snap, pl.ltp_g, pl.ltp_a, pl.tr_e, pl.tr_i
    tr_e_decay, tr_i_decay, a0 = rule.tr_e_decay, rule.tr_i_decay, rule.a0
    eta_ltd, eta_ltp, w_lo_ei, w_hi_ei = rule.eta_ltd, rule.eta_ltp, rule.w_lo_ei, rule.w_hi_ei
    last_spike, prev_spike, spiked, ie_hits = (
        spk.last_spike,
        spk.prev_spike,
        spk.spiked,
        spk.ie_hits,
    )
    spk_step, spk_idx, n_spk = out.spk_step, out.spk_idx, out.n_spk
    kop_every, kop_z_re, kop_z_im, kop_r_re, kop_r_im = (
        kop.every, kop.z_re, kop.z_im, kop.r_re, kop.r_im
    )  # fmt: skip
    kop_acc = out.kop_acc
    block = par.block
    n_cr = par.n_cells[tid]
    n_pr = par.n_pairs[tid]
    pairs = par.pairs[tid]
    cells = par.cells[tid]
    owner = par.owner
    rng = noise.rng_state if tid == 0 else par.rng[tid]
    words = par.words[tid]
    xi_row = par.xi[tid, : v.shape[0]]
    flags = par.flags[tid]
    flag_words = par.flag_words[tid]
    m_cell = par.m_cell[tid]
    m_src = par.m_src[tid]
    m_pos = par.m_pos[tid]
    my_ticks = par.ticks[tid]
    n_er = par.n_tgt[tid, 0]
    n_ir = par.n_tgt[tid, 1]
    split_ei = par.split_ei[tid]
    split_ie = par.split_ie[tid]
    recorder = tid == 0
    sampler = tid == n_threads - 1
    n = v.shape[0]
    n_i = n - n_e
    # overwrite semantics: the E→I rows by spiking cell (each thread its own E cells' whole
    # rows, between two barriers), the jumps handed to the targets' owners in a buffer
    by_pre = overwrite
    g_rep = par.g_rep[tid]
    tri_rep = par.tri_rep[tid]
    post = par.post[tid]
    jump_w = par.jump_w[tid]
    jump_stamp = par.jump_stamp[tid]
    serial0 = par.serial[0]
    n_blocks = 0
    if by_pre:
        for i in range(n_i):
            tri_rep[i] = tr_i[i]
            g_rep[i] = ltp_g[i]
    depth = hist.shape[0]
    cap = spk_step.shape[0]
    inv_e = 1.0 / n_e
    inv_i = 1.0 / (n - n_e)
    w_ie = ie_w[0] if ie_w.shape[0] > 0 else 0.0
    n_e_u = np.uint64(n_e)
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
    law_e = PassLaw(
        scale_cross[0], dt_over_tau[0], base[0], coef_e[0], coef_i[0], step.noise_gain[0], _F0,
        syn_d, x_decay, consts.v_th, consts.v_reset, consts.v_rest, consts.ref_steps,
    )  # fmt: skip
    law_i = PassLaw(
        scale_cross[n_e], dt_over_tau[n_e], base[n_e], coef_e[n_e], coef_i[n_e],
        step.noise_gain[n_e], _F0, syn_d, x_decay, consts.v_th, consts.v_reset, consts.v_rest,
        consts.ref_steps,
    )  # fmt: skip
    law_all = PassLaw(
        scale_cross, dt_over_tau, base, coef_e, coef_i, step.noise_gain, st.v_new, syn_d,
        x_decay, consts.v_th, consts.v_reset, consts.v_rest, consts.ref_steps,
    )  # fmt: skip
    if lazy:
        for r in range(n_cr):
            if cells[r, 0] < n_e:
                for i in range(cells[r, 0], cells[r, 1]):
                    ltp_a[i] = tr_e[i]
    # phase A's and phase B's own counters: the delay line's row, the segment's start
    h_a = head[0]
    h_b = head[0]
    seg0_a = 0
    seg0_b = 0
    n_seg_a = 0
    n_seg_b = 0
    ns = n_spk[0]
    x_then = xprev_cross
    x_now = x_cross
    # the sums over cells of step k are taken by thread ((k mod P) div 2), P = 2·threads − 1:
    # two steps in P for each thread but the last, one for the last (it samples the Kuramoto
    # order parameter besides)
    period = 2 * n_threads - 1
    # the first block's delayed S (no thread writes those rows before its barrier)
    for s in range(_block_end(0, n_steps, block, seg)):
        if (s % period) >> 1 == tid:
            out.s_ie_e[s] = sum_in_lanes(hist[(h_a + s) % depth], 0, n_e) * inv_e
    k0 = 0
    buf = 0
    while k0 < n_steps:
        k1 = _block_end(k0, n_steps, block, seg)
        tick0 = cycles()
        # ================= A. own cells' potentials and spikes, step by step
        ev_cell = par.ev_cell[tid, buf]
        ev_prev = par.ev_prev[tid, buf]
        ev_f = par.ev_f[tid, buf]
        ev_off = par.ev_off[tid, buf]
        count = 0
        ev_off[0] = 0
        for k in range(k0, k1):
            s = k - k0
            t_end = step0 + k + 1
            sfc64_words(rng, words)
            for r in range(n_pr):
                normal_pairs(words, xi_row, pairs[r, 0], pairs[r, 1])
            v_row = par.v_blk[buf, s]
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
                        _v_pass(a, b, h_a, v, ref, hist, xi_row, flags, v_row, law, ue, ui)
                    else:
                        _v_pass(a, b, h_a, v, ref, hist, xi_row, flags, v_row, law_all, ue, ui)
                if pop == 0:
                    for i in range(lo, hi):
                        vv = np.float64(v[i])
                        out.sum_v_e[i] += vv
                        out.sumsq_v_e[i] = fma_f64(vv, vv, out.sumsq_v_e[i])
            first = count
            for r in range(n_cr):
                count = _scan(flag_words, cells[r, 0], cells[r, 1], ev_cell, count)
            # what the synapses read of an E spike: η·A and η·trace before the step's bump
            for q in range(first, count):
                i = ev_cell[q]
                if i < n_e:
                    ev_f[q, 0] = eta_ltp * ltp_a[i]
                    ev_f[q, 1] = eta_ltp * tr_e[i]
            for r in range(n_cr):
                if cells[r, 0] < n_e:
                    for i in range(cells[r, 0], cells[r, 1]):
                        tr_e[i] *= tr_e_decay
            for q in range(first, count):
                i = ev_cell[q]
                last = last_spike[i]
                if i < n_e:
                    tr_e[i] += a0
                    if lazy:
                        ltp_a[i] = tr_e[i] * dinv[k - seg0_a + 1]
                    if last >= 0:
                        isi = t_end - last
                        ahead = (kop_every - t_end % kop_every) % kop_every
                        per_step = 1.0 / isi
                        ang = (TWO_PI * ahead) * per_step
                        ev_f[q, 2] = math.cos(ang)
                        ev_f[q, 3] = math.sin(ang)
                        rot = (TWO_PI * kop_every) * per_step
                        ev_f[q, 4] = math.cos(rot)
                        ev_f[q, 5] = math.sin(rot)
                    ev_prev[q] = last  # E cells' prev_spike: the sampler's, in phase B
                last_spike[i] = t_end
            ev_off[s + 1] = count
            h_a += 1
            if h_a == depth:
                h_a = 0
            if lazy and (k + 1 == n_steps or k + 1 - seg0_a == seg):
                a_seg = par.a_seg[n_seg_a % 2]
                for r in range(n_cr):
                    if cells[r, 0] < n_e:
                        for i in range(cells[r, 0], cells[r, 1]):
                            a_seg[i] = ltp_a[i]
                            ltp_a[i] = tr_e[i]
                seg0_a = k + 1
                n_seg_a += 1
        tick1 = cycles()
        gen = barrier_wait(bar, n_threads, gen)
        if gen < 0:
            return
        tick2 = cycles()
        n_blocks += 1
        stamp = serial0 + n_blocks
        tick_b1 = tick2
        tick_b2 = tick2
        if by_pre:
            # ================= B1. own E cells' whole E→I rows, step by step
            own_cell = par.ev_cell[tid, buf]
            own_off = par.ev_off[tid, buf]
            own_f = par.ev_f[tid, buf]
            for k in range(k0, k1):
                s = k - k0
                d_now = dpow[k - seg0_b] if lazy else 0.0  # segments advance only if lazy
                for tt in range(n_threads):  # the step's I spikes of every thread
                    for idx in range(par.ev_off[tt, buf, s], par.ev_off[tt, buf, s + 1]):
                        c = par.ev_cell[tt, buf, idx]
                        if c >= n_e:
                            post[c - n_e] = True
                for q in range(own_off[s], own_off[s + 1]):
                    j = own_cell[q]
                    if j >= n_e:
                        break
                    prefetch_range(ei_w, ei_ptr[j], ei_ptr[j + 1])
                    prefetch_range(ei_tgt, ei_ptr[j], ei_ptr[j + 1])
                    if lazy:
                        prefetch_range(ltp_snap, ei_ptr[j], ei_ptr[j + 1])
                jw_s = jump_w[s]
                js_s = jump_stamp[s]
                for q in range(own_off[s], own_off[s + 1]):
                    j = own_cell[q]
                    if j >= n_e:
                        break
                    if lazy:
                        _lazy_row_jumps(
                            np.uint64(ei_ptr[j]), np.uint64(ei_ptr[j + 1]), ei_tgt, ei_w,
                            ltp_snap, g_rep, jw_s, js_s, stamp, post, tri_rep, own_f[q, 0],
                            own_f[q, 1], d_now, eta_ltd, w_lo_ei, w_hi_ei,
                        )  # fmt: skip
                    else:
                        _static_row_jumps(ei_ptr[j], ei_ptr[j + 1], ei_tgt, ei_w, jw_s, js_s,
                                          stamp)  # fmt: skip
                # the I spikes' pending potentiation, the I traces' decay and bumps
                for i in range(n_i):
                    tri_rep[i] *= tr_i_decay
                for tt in range(n_threads):
                    for idx in range(par.ev_off[tt, buf, s], par.ev_off[tt, buf, s + 1]):
                        c = par.ev_cell[tt, buf, idx]
                        if c >= n_e:
                            if lazy:
                                g_rep[c - n_e] += d_now
                            tri_rep[c - n_e] += a0
                            post[c - n_e] = False
            if lazy and (k1 == n_steps or k1 - seg0_b == seg):
                a_seg = par.a_seg[n_seg_b % 2]
                for r in range(n_cr):
                    lo, hi = cells[r, 0], cells[r, 1]
                    if lo < n_e:
                        _flush_rows(lo, hi, ei_ptr, ei_tgt, ei_w, ltp_snap, g_rep, a_seg,
                                    eta_ltp, w_hi_ei)  # fmt: skip
                for i in range(n_i):
                    g_rep[i] = 0.0
                seg0_b = k1
                n_seg_b += 1
            tick_b1 = cycles()
            gen = barrier_wait(bar, n_threads, gen)
            if gen < 0:
                return
            tick_b2 = cycles()
        # ================= B. own targets, step by step, from every thread's spikes
        own_cell = par.ev_cell[tid, buf]
        own_off = par.ev_off[tid, buf]
        for k in range(k0, k1):
            s = k - k0
            t_end = step0 + k + 1
            x_then, x_now = x_now, x_then
            for r in range(n_cr):
                _sx_pass(cells[r, 0], cells[r, 1], h_b, s_cross, hist, x_then, x_now, syn_d,
                         x_decay)  # fmt: skip
            n_now = _merge(par.ev_cell, par.ev_off, buf, s, n_threads, m_cell, m_src, m_pos)
            if recorder:
                for q in range(n_now):
                    if ns < cap:
                        spk_step[ns] = t_end
                        spk_idx[ns] = m_cell[q]
                    ns += 1
            if by_pre:  # the E spikes' jumps onto own I cells, from every thread's buffer
                for r in range(n_cr):
                    lo, hi = cells[r, 0], cells[r, 1]
                    if lo >= n_e:
                        _apply_jumps(par.jump_w, par.jump_stamp, s, stamp, lo - n_e, hi - n_e,
                                     n_e, n_threads, x_then, x_now)  # fmt: skip
            else:
                for q in range(own_off[s], own_off[s + 1]):
                    spiked[own_cell[q]] = True
            d_now = dpow[k - seg0_b] if lazy and not by_pre else 0.0
            # ask for the own parts of the step's synapse rows at once
            for q in range(n_now):
                g = m_cell[q]
                if g < n_e:
                    if by_pre:
                        continue
                    for r in range(n_ir):
                        beg = split_ei[g, 2 * r]
                        end = split_ei[g, 2 * r + 1]
                        prefetch_range(ei_w, beg, end)
                        prefetch_range(ei_tgt, beg, end)
                        if lazy:
                            prefetch_range(ltp_snap, beg, end)
                else:
                    for r in range(n_er):
                        prefetch_range(
                            ie_tgt, split_ie[g - n_e, 2 * r], split_ie[g - n_e, 2 * r + 1]
                        )
            # E spikes, ascending: jumps onto own I cells, their synapses' plasticity
            for q in range(n_now):
                j = m_cell[q]
                if j >= n_e or by_pre:
                    break
                src = m_src[q]
                tt = src % n_threads
                idx = src // n_threads
                for r in range(n_ir):
                    beg = np.uint64(split_ei[j, 2 * r])
                    end = np.uint64(split_ei[j, 2 * r + 1])
                    if lazy:
                        _lazy_e_row(
                            beg, end, n_e_u, overwrite, ei_tgt, ei_w, ltp_snap, ltp_g, x_then,
                            x_now, spiked, tr_i, par.ev_f[tt, buf, idx, 0],
                            par.ev_f[tt, buf, idx, 1], d_now, eta_ltd, w_lo_ei, w_hi_ei,
                        )  # fmt: skip
                    else:
                        for su in range(beg, end):
                            gu = n_e_u + np.uint64(ei_tgt[su])
                            if overwrite:
                                x_now[gu] = x_then[gu] + ei_w[su]
                            else:
                                x_now[gu] += ei_w[su]
            # I spikes: hits on own E cells, applied in one pass; own I cells' pending LTP
            ie_hit = False
            for q in range(n_now):
                g = m_cell[q]
                if g < n_e:
                    continue
                j = g - n_e
                for r in range(n_er):
                    _count_hits(ie_tgt, split_ie[j, 2 * r], split_ie[j, 2 * r + 1], ie_hits)
                    ie_hit = True
                if lazy and not by_pre and owner[g] == tid:
                    ltp_g[j] += d_now
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
            # own I traces: decay, then the bumps; the spike flags cleared (rows by spiking
            # cell: each thread keeps every I trace, B1)
            if not by_pre:
                for r in range(n_cr):
                    lo, hi = cells[r, 0], cells[r, 1]
                    if lo >= n_e:
                        for i in range(lo - n_e, hi - n_e):
                            tr_i[i] *= tr_i_decay
                for q in range(own_off[s], own_off[s + 1]):
                    i = own_cell[q]
                    spiked[i] = False
                    if i >= n_e:
                        tr_i[i - n_e] += a0
            if sampler:  # the E spikes' phasors, then the causal Kuramoto sample
                for tt in range(n_threads):
                    for idx in range(par.ev_off[tt, buf, s], par.ev_off[tt, buf, s + 1]):
                        j = par.ev_cell[tt, buf, idx]
                        if j >= n_e:
                            continue
                        last = par.ev_prev[tt, buf, idx]
                        if last >= 0:
                            kop_z_re[j] = par.ev_f[tt, buf, idx, 2]
                            kop_z_im[j] = par.ev_f[tt, buf, idx, 3]
                            kop_r_re[j] = par.ev_f[tt, buf, idx, 4]
                            kop_r_im[j] = par.ev_f[tt, buf, idx, 5]
                        prev_spike[j] = last
                if t_end % kop_every == 0:
                    _kuramoto_sample(
                        kop_acc, n_e, prev_spike, kop_z_re, kop_z_im, kop_r_re, kop_r_im
                    )
            h_b += 1
            if h_b == depth:
                h_b = 0
        # ---- the block's sums over cells (each step's by one thread, above)
        for k in range(k0, k1):
            if (k % period) >> 1 == tid:
                v_row = par.v_blk[buf, k - k0]
                out.pop_mean_e[k] = sum_in_lanes(v_row, 0, n_e) * inv_e
                out.pop_mean_i[k] = sum_in_lanes(v_row, n_e, n) * inv_i
        k2 = _block_end(k1, n_steps, block, seg) if k1 < n_steps else k1
        # the next block's delayed S (its rows are complete and stay until its barrier)
        for k in range(k1, k2):
            if (k % period) >> 1 == tid:
                out.s_ie_e[k] = sum_in_lanes(hist[(h_b + k - k1) % depth], 0, n_e) * inv_e
        # ---- pending potentiation at the end of a segment: own targets
        if lazy and not by_pre and (k1 == n_steps or k1 - seg0_b == seg):
            a_seg = par.a_seg[n_seg_b % 2]
            for r in range(n_ir):
                _flush_part(n_e, split_ei, r, ei_tgt, ei_w, ltp_snap, ltp_g, a_seg, eta_ltp,
                            w_hi_ei)  # fmt: skip
            for r in range(n_cr):
                lo, hi = cells[r, 0], cells[r, 1]
                if lo >= n_e:
                    for i in range(lo - n_e, hi - n_e):
                        ltp_g[i] = 0.0
            seg0_b = k1
            n_seg_b += 1
        tick3 = cycles()
        b_ticks = tick3 - tick_b2 + tick_b1 - tick2
        my_ticks[0] += tick1 - tick0
        my_ticks[1] += b_ticks
        my_ticks[2] += tick2 - tick1 + tick_b2 - tick_b1
        row = my_ticks[3] % BLOCK_LOG
        par.block_ticks[tid, row, 0] = tick1 - tick0
        par.block_ticks[tid, row, 1] = b_ticks
        my_ticks[3] += 1
        k0 = k1
        buf = 1 - buf
    if n_steps % 2 == 1:  # X(t+dt) is in xprev_cross: swap own cells' contents back
        for r in range(n_cr):
            for i in range(cells[r, 0], cells[r, 1]):
                x_cross[i], xprev_cross[i] = xprev_cross[i], x_cross[i]
    if by_pre:  # own I traces back from this thread's copy
        for r in range(n_cr):
            lo, hi = cells[r, 0], cells[r, 1]
            if lo >= n_e:
                for i in range(lo - n_e, hi - n_e):
                    tr_i[i] = tri_rep[i]
    if recorder:
        head[0] = h_b
        n_spk[0] = ns
        par.serial[0] = serial0 + n_blocks


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
    par.rng[1:] = args[8].rng_state  # the other threads draw the same words from copies
    futures = [_pool(par.n_threads - 1).submit(_share, tid, par, args)
               for tid in range(1, par.n_threads)]  # fmt: skip
    error: BaseException | None = None
    try:
        _share(0, par, args)
    except BaseException as exc:
        error = exc
    for future in futures:  # every thread has stopped before the stamps are cleared
        try:
            future.result()
        except BaseException as exc:
            error = error if error is not None else exc
    if error is not None:
        par.jump_stamp.fill(0)  # an aborted call's stamps are not taken again (serial unmoved)
        raise error
