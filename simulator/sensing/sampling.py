"""From the kernel's 10 kHz to the device's rate: anti-alias low-pass, then decimation (D3).

The low-pass is a Butterworth filter of even order designed here by the bilinear transform
(no SciPy), run as a cascade of second-order sections in float64 with state kept from window
to window; every ``factor``-th filtered sample is kept. Default: order 8, cut-off a quarter of
the output rate (250 Hz at 1 kHz), so the band the features use (≤ 100 Hz) passes flat
(gain ≥ 1 − 10⁻⁶) while everything that would fold back onto it is ≥ 48 dB down (at the
500 Hz Nyquist frequency) and 77 dB at 750 Hz.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]


def butterworth_sos(order: int, cutoff_hz: float, rate_hz: float) -> F64:
    """Second-order sections ``(order/2, 6)`` (``b0 b1 b2 1 a1 a2``) of a digital low-pass.

    Each section has unit gain at DC. The analogue prototype's poles, pre-warped to the
    cut-off, map through the bilinear transform; the zeros all sit at ``z = −1``.
    """
    if order < 2 or order % 2:
        raise ValueError(f"Expected an even order >= 2, actual {order}")
    if not 0.0 < cutoff_hz < rate_hz / 2.0:
        raise ValueError(f"Expected 0 < cutoff_hz < {rate_hz / 2.0}, actual {cutoff_hz}")
    k2 = 2.0 * rate_hz
    wc = k2 * math.tan(math.pi * cutoff_hz / rate_hz)
    sos = np.empty((order // 2, 6))
    for m in range(order // 2):
        theta = math.pi * (2 * m + 1 + order) / (2 * order)
        p = wc * complex(math.cos(theta), math.sin(theta))  # left half-plane
        z = (k2 + p) / (k2 - p)
        a1 = -2.0 * z.real
        a2 = abs(z) ** 2
        g = (1.0 + a1 + a2) / 4.0
        sos[m] = (g, 2.0 * g, g, 1.0, a1, a2)
    return sos


@njit(cache=True, nogil=True)
def sos_decimate(x, sos, zi, factor, phase):  # type: ignore[no-untyped-def]
    """Filter ``x`` through ``sos`` (state ``zi``, transposed direct form II) and decimate.

    ``phase[0]`` counts the samples since the last one kept; a sample is kept when it
    reaches ``factor``. Returns the kept samples.
    """
    n_sec = sos.shape[0]
    out = np.empty(x.shape[0] // factor + 1)
    n_out = 0
    ph = phase[0]
    for k in range(x.shape[0]):
        y = x[k]
        for s in range(n_sec):
            b0, b1, b2, a1, a2 = sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5]
            v = b0 * y + zi[s, 0]
            zi[s, 0] = b1 * y - a1 * v + zi[s, 1]
            zi[s, 1] = b2 * y - a2 * v
            y = v
        ph += 1
        if ph == factor:
            out[n_out] = y
            n_out += 1
            ph = 0
    phase[0] = ph
    return out[:n_out]


class Decimator:
    """Stateful anti-alias filter and decimator from ``rate_in_hz`` to ``rate_in_hz / factor``."""

    def __init__(self, rate_in_hz: float, factor: int, order: int, cutoff_hz: float) -> None:
        self.factor = factor
        self.sos = butterworth_sos(order, cutoff_hz, rate_in_hz)
        self.zi = np.zeros((self.sos.shape[0], 2))  #: the sections' state
        self.phase = np.zeros(1, dtype=np.int64)  #: samples since the last one kept

    def reset(self) -> None:
        """Zero the filter state and the decimation phase."""
        self.zi[:] = 0.0
        self.phase[0] = 0

    def __call__(self, x: F64) -> F64:
        """The output samples that fall in ``x`` (kernel-rate samples, in order)."""
        out: F64 = sos_decimate(np.ascontiguousarray(x, dtype=np.float64), self.sos,
                                self.zi, self.factor, self.phase)  # fmt: skip
        return out


def response(sos: F64, f_hz: F64, rate_hz: float) -> F64:
    """``|H(f)|`` of the cascade (for tests and docs)."""
    z = np.exp(-2j * np.pi * np.asarray(f_hz) / rate_hz)
    h = np.ones_like(z)
    for b0, b1, b2, _, a1, a2 in sos:
        h *= (b0 + b1 * z + b2 * z * z) / (1.0 + a1 * z + a2 * z * z)
    mag: F64 = np.abs(h)
    return mag
