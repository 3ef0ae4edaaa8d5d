"""What the kernel takes, grouped: the network's state, its constants and one call's inputs.

:func:`simulator.kernel.run_steps` once took 93 positional arguments, and two arrays of one
type passed in each other's place would have compiled and run. It now takes the named tuples
below, each one idea, built by :class:`simulator.network.Network` and read by field name in
the kernel. Numba compiles a named tuple of arrays and scalars into the same code as the
separate arguments (its calling convention passes the members one by one), so the grouping
costs nothing at run time (``docs/dev/simulator-speed.md``, the sixth session, has the
alternated benchmark).

Every field's type is fixed by the network, so that one compiled kernel serves every run:
arrays of the documented dtype, Python ``bool`` flags, ``float`` (float64) or ``np.float32``
scalars as annotated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class Structure(NamedTuple):
    """The network's shape and the variants of its dynamics (fixed by the config)."""

    n_e: int  #: E cells are ``0..n_e-1``, I cells ``n_e..n-1``
    overwrite: bool  #: the released code's jump quirk (``docs/simulator.md``)
    has_rec: bool  #: E→E / I→I recurrent projections exist (Fig 8)
    plastic_ie: bool  #: I→E synapses are plastic (Fig 11)
    rule_sym: bool  #: the symmetric STDP rule (Fig 12) instead of the asymmetric one


class NeuronState(NamedTuple):
    """The neurons' dynamic state (float32 unless noted), advanced in place."""

    v: F32  #: membrane potentials (mV)
    ref: npt.NDArray[np.int32]  #: refractory steps left
    x_cross: F32  #: X(t+dt) of the E↔I synapses (on return)
    s_cross: F32  #: S of the E↔I synapses
    x_rec: F32  #: X of the recurrent synapses
    s_rec: F32  #: S of the recurrent synapses
    xprev_cross: F32  #: X(t) of the E↔I synapses (on return)
    xprev_rec: F32  #: X(t) of the recurrent synapses
    hist_cross: F32  #: delay line of S (rows: steps, ring buffer)
    hist_rec: F32  #: delay line of the recurrent S (one column unless ``has_rec``)
    head: I64  #: ``head[0]``: the delay line's current row
    v_new: F32  #: scratch: a step's recurrent input per cell


class NeuronConstants(NamedTuple):
    """Per-neuron constants (float32 arrays) and the neuron pass's scalars."""

    dt_over_tau: F32  #: dt / τ_m
    base: F32  #: V_rest + μ
    coef_e: F32  #: weight of the E waveform per cell
    coef_i: F32  #: weight of the I waveform per cell
    scale_cross: F32  #: J / c_norm of the cross-population input
    scale_rec: F32  #: J / N of the recurrent input
    v_rest: np.float32
    v_th: np.float32
    v_reset: np.float32
    ref_steps: np.int32
    syn_d: np.float32  #: dt / τ_d
    x_decay: np.float32  #: 1 − dt / τ_r
    #: ``(2, contacts + 1)``: the E (row 0) and I (row 1) cells of each contact of the lead
    contact_cells: I64


class Synapses(NamedTuple):
    """The four projections (:class:`simulator.connectivity.Projection` each)."""

    ei: tuple  # type: ignore[type-arg]  # a Projection (E→I, plastic, float32 weights)
    ie: tuple  # type: ignore[type-arg]  # I→E
    ee: tuple  # type: ignore[type-arg]  # E→E (recurrent, Fig 8)
    ii: tuple  # type: ignore[type-arg]  # I→I (recurrent, Fig 8)


class StdpRule(NamedTuple):
    """The plasticity rule's constants (all float64)."""

    tr_e_decay: float  #: per-step decay of the E traces
    tr_i_decay: float  #: per-step decay of the I traces
    a0: float  #: trace increment per spike
    eta_ltd: float  #: η·A_LTD
    eta_ltp: float  #: η·A_LTP
    w_lo_ei: float
    w_hi_ei: float
    w_lo_ie: float
    w_hi_ie: float
    c_p: float  #: symmetric rule: potentiation amplitude
    k_p: float  #: symmetric rule: dt / τ_p
    c_d: float  #: symmetric rule: depression amplitude
    k_d: float  #: symmetric rule: dt / τ_d


class PlasticityState(NamedTuple):
    """STDP traces and the pending potentiation (float64; ``kernel._flush_potentiation``)."""

    tr_e: F64
    tr_i: F64
    ltp_snap: F64  #: per E→I synapse
    ltp_g: F64  #: per I cell
    ltp_a: F64  #: per E cell


class SpikeState(NamedTuple):
    """Spike bookkeeping and the spike loops' scratch."""

    last_spike: I64  #: labelled step of each cell's last spike (−1: none)
    prev_spike: I64  #: the one before
    spiked: npt.NDArray[np.bool_]  #: this step's flags, padded to 32 cells
    spiked_words: npt.NDArray[np.uint64]  #: the same flags as 64-bit words (a view)
    step_spk: I64  #: scratch: this step's spiking cells, ascending
    ie_hits: npt.NDArray[np.uint16]  #: scratch: static I→E hits per E cell


class Kuramoto(NamedTuple):
    """The causal Kuramoto order parameter's phasors (E cells, float64)."""

    every: int  #: sample every this many steps
    z_re: F64
    z_im: F64
    r_re: F64  #: per-sample rotation
    r_im: F64


class NoiseState(NamedTuple):
    """The SFC64 generators' state words and the draws' scratch."""

    rng_state: npt.NDArray[np.uint64]
    rng_words: npt.NDArray[np.uint64]


class StepInputs(NamedTuple):
    """One call's steps and what drives them."""

    n_steps: int
    step0: int  #: the network's step count at the call's start
    plast_on: bool  #: STDP active
    uniform: bool  #: run the neuron pass with per-population scalar constants
    u_e: F64  #: step-averaged drive of E cells, ``(n_steps, contacts)``: per step and contact
    u_i: F64  #: of I cells
    noise_gain: F32  #: per-cell noise scale
    gen_noise: bool  #: draw the noise from ``NoiseState`` (else read ``xi[k]``)
    xi: F32  #: explicit draws ``(n_steps, n)``, or the one-row scratch


class Recorder(NamedTuple):
    """Where a call writes what it observed."""

    spk_step: I64  #: spike (labelled step) per spike
    spk_idx: npt.NDArray[np.int32]  #: spike (cell) per spike
    n_spk: I64  #: ``n_spk[0]``: spikes so far (may exceed the capacity: overflow)
    pop_mean_e: F64  #: E population-mean V per step
    pop_mean_i: F64  #: I population-mean V per step
    sum_v_e: F64  #: per E cell Σ V
    sumsq_v_e: F64  #: per E cell Σ V²
    kop_acc: F64  #: ``[Σ R, samples]``
    #: per step, the E population mean of the I→E synaptic variable S as the E cells read it
    #: this step, ``S(t − d)`` (the delay line's row; times ``J_E/c`` it is their mean
    #: inhibitory input; the LFP proxy's GABA term, :mod:`simulator.sensing`)
    s_ie_e: F64
    #: per step, the E mean of the recurrent E→E ``S(t − d)`` (written only with ``has_rec``)
    s_ee_e: F64


class PassLaw(NamedTuple):
    """The neuron pass's constants: per-cell arrays, or scalars for one population."""

    scale: object
    dt_over_tau: object
    base: object
    coef_e: object
    coef_i: object
    noise_gain: object
    v_new: object
    syn_d: np.float32
    x_decay: np.float32
    v_th: np.float32
    v_reset: np.float32
    v_rest: np.float32
    ref_steps: np.int32
