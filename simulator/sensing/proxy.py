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

F64 = npt.NDArray[np.float64]


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
        self._ampa_line = np.zeros(shift_steps)

    def reset(self) -> None:
        """Forget the AMPA delay line (the network's S starts at 0)."""
        self._ampa_line[:] = 0.0

    def __call__(self, s_ie_e: F64, s_ee_e: F64) -> F64:
        """The proxy at each step of a window (mV), given the window's mean S per step."""
        out: F64 = -self.gaba * np.abs(s_ie_e)
        if self.ampa > 0.0:
            line = np.concatenate([self._ampa_line, np.abs(s_ee_e)])
            n = s_ee_e.shape[0]
            out += self.ampa * line[:n]
            self._ampa_line = line[n:].copy()
        return out
