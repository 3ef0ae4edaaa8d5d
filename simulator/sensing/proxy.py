"""The LFP proxy of the E population: Mazzoni et al. (2015)'s reference weighted sum (RWS).

``LFP(t) ∝ Σ|I_AMPA(t − 6 ms)| − 1.65·Σ|I_GABA(t)|`` over the pyramidal (here: E) cells'
synaptic currents, as ``docs/simulator.md#sensing`` adapts it to this network (decision D1):

* GABA: the E cells' only synaptic input is I→E, whose current is ``(J_E/c)·S(t − d)`` in mV
  of drive; the kernel records its E mean per step (``Recorder.s_ie_e``, already delayed by
  the network's 5 ms), so the term is ``|J_E/c|·|mean S|`` (S ≤ 0 in every E cell, so the
  magnitude of the mean is the mean of the magnitudes).
* AMPA: the constant drive μ_E stands for a tonic excitatory input. Constant, it adds only a
  DC offset, which the amplifier's AC coupling (here: each spectral segment's mean) removes,
  so it is left out. With recurrent E→E synapses (Fig 8) their current
  ``(J_EE/N)·S_EE(t − d)`` enters 6 ms late, as in the RWS.
* The stimulus term ``U_P(t)`` is not a synaptic current: it stays out of the proxy and
  reaches the sensed signal as the artefact (:mod:`simulator.sensing.artefact`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]


@njit(cache=True, nogil=True)
def rws(s_ie_e, s_ee_e, gain, gaba, ampa, line):  # type: ignore[no-untyped-def]
    """``gain·(ampa·|S_EE(t − shift)| − gaba·|S_IE(t)|)`` per step; ``line`` is the AMPA delay.

    ``line`` holds the last ``shift`` values of ``|S_EE|`` (oldest first) and is advanced in
    place. Without an AMPA term (``ampa == 0``) it is left alone.
    """
    n = s_ie_e.shape[0]
    out = np.empty(n)
    if ampa == 0.0:
        for k in range(n):
            out[k] = gain * (-gaba * abs(s_ie_e[k]))
        return out
    shift = line.shape[0]
    joined = np.empty(shift + n)
    joined[:shift] = line
    for k in range(n):
        joined[shift + k] = abs(s_ee_e[k])
    for k in range(n):
        out[k] = gain * ((-gaba * abs(s_ie_e[k])) + ampa * joined[k])
    line[:] = joined[n:]
    return out


class LfpProxy:
    """Per-step RWS proxy (mV of drive) from the kernel's per-step mean S records.

    Args:
        gaba_scale_mv: ``|J_E/c|``, the I→E current per unit of S.
        ampa_scale_mv: ``|J_EE/N|``, the E→E current per unit of S (0: no AMPA term).
        gaba_weight: The GABA term's weight (RWS: 1.65).
        shift_steps: The AMPA term's delay in kernel steps (RWS: 6 ms).
    """

    def __init__(
        self, gaba_scale_mv: float, ampa_scale_mv: float, gaba_weight: float, shift_steps: int
    ) -> None:
        self.gaba = gaba_weight * abs(gaba_scale_mv)
        self.ampa = abs(ampa_scale_mv)
        self.shift_steps = shift_steps
        #: ``|S_EE|`` of the last ``shift_steps`` steps, oldest first (the AMPA delay line)
        self.line = np.zeros(shift_steps)

    def reset(self) -> None:
        """Forget the AMPA delay line (the network's S starts at 0)."""
        self.line[:] = 0.0

    def __call__(self, s_ie_e: F64, s_ee_e: F64, gain: float = 1.0) -> F64:
        """The proxy at each step of a window (mV, times ``gain``), given its mean S per step."""
        out: F64 = rws(s_ie_e, s_ee_e, gain, self.gaba, self.ampa, self.line)
        return out
