"""A slow, obvious NumPy implementation of one network step, to test the Numba kernel against.

It follows the model equations line by line with whole-array operations and plain Python loops
over the step's spikes, and shares nothing with :mod:`simulator.kernel` except the state layout.
The neurons' state is stored in float32, as the network stores it; each update is computed in
double and rounded once when stored (the kernel computes in float32, so the two agree to a few
float32 ulps, not bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.config import NetworkConfig
from simulator.connectivity import WeightArray, storable_bounds

FloatArray = npt.NDArray[np.float64]
StateArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass
class ReferenceState:
    """The network's dynamic state, as copies of plain arrays."""

    v: StateArray
    ref: npt.NDArray[np.int32]
    x_cross: StateArray
    s_cross: StateArray
    hist_cross: StateArray  # (delay_steps, n); row ``head`` holds S(t - delay)
    head: int
    tr_e: FloatArray
    tr_i: FloatArray
    w_ei: WeightArray  # E→I weights (float32, as stored) in forward (presynaptic-major) order
    w_ie: FloatArray  # I→E weights


def reference_step(
    cfg: NetworkConfig,
    st: ReferenceState,
    *,
    dt_over_tau: FloatArray,
    noise_increment: FloatArray,
    u_e: float,
    u_i: float,
    plast_on: bool,
    ei: tuple[IntArray, IntArray],
    ie: tuple[IntArray, IntArray],
) -> tuple[ReferenceState, list[int]]:
    """Advance ``st`` by one step of ``cfg.dt_ms`` (baseline network: E↔I only).

    Args:
        cfg: Parameters (``paper`` or ``clean`` semantics; additive STDP; no recurrent links).
        st: State at time t (not modified).
        dt_over_tau: ``dt/τ_m`` per neuron.
        noise_increment: The noise added to each V this step (already scaled).
        u_e: Step-averaged stimulation drive of E cells.
        u_i: Step-averaged stimulation drive of I cells.
        plast_on: Whether STDP is active.
        ei: ``(ptr, target)`` of the E→I projection (targets indexed within I).
        ie: ``(ptr, target)`` of the I→E projection (targets indexed within E).

    Returns:
        The state at t + dt and the indices of the neurons that spiked, ascending.
    """
    n_e, n = cfg.n_e, cfg.n
    dt = cfg.dt_ms
    paper = cfg.semantics == "paper"
    scale = np.concatenate(
        [np.full(n_e, cfg.j_e_mv / cfg.c_norm), np.full(cfg.n_i, cfg.j_i_mv / cfg.c_norm)]
    )
    mu = np.concatenate([np.full(n_e, cfg.mu_e_mv), np.full(cfg.n_i, cfg.mu_i_mv)])
    drive = np.concatenate([np.full(n_e, u_e), np.full(cfg.n_i, u_i)])

    # 1. derivatives from the old state; the delayed S is read from the delay line
    v_old = st.v.astype(np.float64)
    s_old = st.s_cross.astype(np.float64)
    x_old = st.x_cross.astype(np.float64)
    z = scale * st.hist_cross[st.head].astype(np.float64)
    v_euler = (
        v_old + dt_over_tau * (cfg.v_rest_mv - v_old + z + mu + drive) + noise_increment
    ).astype(np.float32)
    s_new = (s_old + dt / cfg.tau_d_ms * (-s_old + x_old)).astype(np.float32)
    x_new = (x_old + dt / cfg.tau_r_ms * (-x_old)).astype(np.float32)
    hist = st.hist_cross.copy()
    hist[st.head] = st.s_cross
    head = (st.head + 1) % hist.shape[0]

    # 2. threshold, refractory clamp, floor (the released if/elseif chain)
    v_new = v_euler.copy()
    ref_new = st.ref.copy()
    spikes: list[int] = []
    for i in range(n):
        if st.v[i] < cfg.v_th_mv <= v_euler[i]:
            v_new[i] = cfg.v_reset_mv
            ref_new[i] = cfg.refractory_steps
            spikes.append(i)
        elif st.ref[i] > 0:
            v_new[i] = cfg.v_reset_mv
            ref_new[i] = st.ref[i] - 1
        elif v_euler[i] < np.float32(cfg.v_rest_mv):
            v_new[i] = cfg.v_rest_mv
    spiking = set(spikes)

    # 3. E spikes: jumps onto I cells, depression of outgoing E→I synapses
    w_ei = st.w_ei.copy()
    w_ie = st.w_ie.copy()
    ei_ptr, ei_tgt = ei
    ie_ptr, ie_tgt = ie
    # weights are stored in float32: each update is computed in double, clipped at the float32
    # bounds just inside [w_min, w_max] and rounded once when stored
    lo, hi = storable_bounds(cfg.w_min_mv / cfg.j_i_mv, cfg.w_max_mv / cfg.j_i_mv)
    for j in (s for s in spikes if s < n_e):
        for syn in range(ei_ptr[j], ei_ptr[j + 1]):
            post = n_e + int(ei_tgt[syn])  # int16 indices: add as Python ints
            if paper:
                x_new[post] = st.x_cross[post] + w_ei[syn]
            else:
                x_new[post] += w_ei[syn]
            if plast_on and not (paper and post in spiking):
                w_ei[syn] = max(lo, float(w_ei[syn]) + cfg.eta * cfg.a_ltd * st.tr_i[ei_tgt[syn]])
    # 4. I spikes: jumps onto E cells, potentiation of incoming E→I synapses
    for g in (s for s in spikes if s >= n_e):
        j = g - n_e
        for syn in range(ie_ptr[j], ie_ptr[j + 1]):
            post = int(ie_tgt[syn])
            if paper:
                x_new[post] = st.x_cross[post] - w_ie[syn]
            else:
                x_new[post] -= w_ie[syn]
        if plast_on:
            for pre in range(n_e):
                for syn in range(ei_ptr[pre], ei_ptr[pre + 1]):
                    if ei_tgt[syn] == j:
                        w_ei[syn] = min(hi, float(w_ei[syn]) + cfg.eta * cfg.a_ltp * st.tr_e[pre])

    # 5. traces: decay, then bump the spiking neurons
    tr_e = st.tr_e * (1.0 - dt / cfg.tau_ltp_ms)
    tr_i = st.tr_i * (1.0 - dt / cfg.tau_ltd_ms)
    for g in spikes:
        if g < n_e:
            tr_e[g] += cfg.trace_increment
        else:
            tr_i[g - n_e] += cfg.trace_increment
    return (
        ReferenceState(
            v=v_new, ref=ref_new, x_cross=x_new, s_cross=s_new, hist_cross=hist, head=head,
            tr_e=tr_e, tr_i=tr_i, w_ei=w_ei, w_ie=w_ie,
        ),
        spikes,
    )  # fmt: skip
