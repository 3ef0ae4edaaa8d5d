"""Power spectrum of the sensed LFP and the features read from it (decisions D4, D5).

* :class:`Welch` — Welch's estimate over the last ``spectrum_window_s`` of samples: Hann
  segments of ``segment_s`` with half overlap, each segment's mean removed (the amplifier's
  AC coupling), one-sided and scaled as a density, so that ``Σ psd·df`` is the signal's mean
  square (Parseval: a sine of amplitude ``A`` on a bin gives ``A²/2`` in its main lobe).
* :func:`band_power` — ``Σ psd·df`` over the bins whose centre lies in ``[low, high]``.
* :func:`spectral_peak` — the largest bin in a search range, its frequency refined by a
  parabola through the logarithms of it and its two neighbours (exact for a Gaussian peak,
  and within a few hundredths of a bin for a sine under a Hann window), kept in the range.

The per-window work runs in three calls (segments, one FFT, :func:`features`): the sensor
must cost little next to a 20 ms window of the kernel.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]


@njit(cache=True, nogil=True)
def _segments(x, starts, window):  # type: ignore[no-untyped-def]
    """Each segment of ``x`` (from ``starts``), its mean removed, times ``window``."""
    seg = window.shape[0]
    out = np.empty((starts.shape[0], seg))
    for j in range(starts.shape[0]):
        a = starts[j]
        m = 0.0
        for i in range(seg):
            m += x[a + i]
        m /= seg
        for i in range(seg):
            out[j, i] = (x[a + i] - m) * window[i]
    return out


@njit(cache=True, nogil=True)
def _density(spec, scale):  # type: ignore[no-untyped-def]
    """Mean over segments of ``|X|²``, times the one-sided density scale per bin."""
    n_seg, n_bin = spec.shape
    psd = np.zeros(n_bin)
    for j in range(n_seg):
        for b in range(n_bin):
            v = spec[j, b]
            psd[b] += v.real * v.real + v.imag * v.imag
    for b in range(n_bin):
        psd[b] *= scale[b] / n_seg
    return psd


class Welch:
    """Welch's density estimate for a fixed signal length, segment length and rate."""

    def __init__(self, n_samples: int, segment: int, rate_hz: float) -> None:
        self.segment = segment
        self.hop = max(1, segment // 2)
        self.n_segments = 1 + (n_samples - segment) // self.hop
        #: first sample of each segment: the last one ends with the signal
        self.starts = (n_samples - segment - self.hop * np.arange(self.n_segments)[::-1]).copy()
        self.window = np.hanning(segment + 1)[:-1].copy()  # periodic Hann
        self.freqs_hz: F64 = np.fft.rfftfreq(segment, 1.0 / rate_hz).astype(np.float64)
        self.df_hz = rate_hz / segment
        scale = np.full(self.freqs_hz.shape[0], 2.0 / (rate_hz * float(np.sum(self.window**2))))
        scale[0] /= 2.0
        if segment % 2 == 0:
            scale[-1] /= 2.0
        self._scale = scale

    def __call__(self, x: F64) -> F64:
        """The one-sided PSD (units² / Hz) of ``x`` (``n_samples`` long)."""
        psd: F64 = _density(self.spectra(x), self._scale)
        return psd

    def spectra(self, x: F64) -> npt.NDArray[np.complex128]:
        """The segments' Fourier transforms, ``(n_segments, segment // 2 + 1)``."""
        spec: npt.NDArray[np.complex128] = np.fft.rfft(_segments(x, self.starts, self.window))
        return spec

    def features(
        self, x: F64, beta_hz: tuple[float, float], peak_hz: tuple[float, float],
        half_hz: float, centre_hz: float,
    ) -> tuple[float, float, float, float]:  # fmt: skip
        """:func:`features` of the PSD of ``x`` (one FFT call and one compiled call)."""
        out: tuple[float, float, float, float] = _psd_features(
            self.spectra(x), self._scale, self.freqs_hz, self.df_hz, beta_hz[0], beta_hz[1],
            peak_hz[0], peak_hz[1], half_hz, centre_hz,
        )  # fmt: skip
        return out


@njit(cache=True, nogil=True)
def _bin_range(freqs_hz, low_hz, high_hz):  # type: ignore[no-untyped-def]
    lo = np.searchsorted(freqs_hz, low_hz - 1e-9, side="left")
    hi = np.searchsorted(freqs_hz, high_hz + 1e-9, side="right")
    return lo, hi


@njit(cache=True, nogil=True)
def band_power(freqs_hz, psd, df_hz, low_hz, high_hz):  # type: ignore[no-untyped-def]
    """``Σ psd·df`` over the bins whose centre is in ``[low_hz, high_hz]`` (0 if none)."""
    lo, hi = _bin_range(freqs_hz, low_hz, high_hz)
    total = 0.0
    for b in range(lo, hi):
        total += psd[b]
    return total * df_hz


@njit(cache=True, nogil=True)
def spectral_peak(freqs_hz, psd, low_hz, high_hz):  # type: ignore[no-untyped-def]
    """Frequency (Hz) of the largest bin in ``[low_hz, high_hz]``, refined, kept in the range.

    A flat spectrum (e.g. all zero before any signal) gives the range's first bin.
    """
    lo, hi = _bin_range(freqs_hz, low_hz, high_hz)
    if hi <= lo:
        return low_hz
    k = lo
    for b in range(lo + 1, hi):
        if psd[b] > psd[k]:
            k = b
    f = freqs_hz[k]
    if 0 < k < psd.shape[0] - 1:
        a, b, c = psd[k - 1], psd[k], psd[k + 1]
        if a > 0.0 and b > 0.0 and c > 0.0:
            la, lb, lc = math.log(a), math.log(b), math.log(c)
            den = la - 2.0 * lb + lc
            if den < 0.0:
                shift = 0.5 * (la - lc) / den
                f += max(-0.5, min(0.5, shift)) * (freqs_hz[1] - freqs_hz[0])
    return min(max(f, low_hz), high_hz)


@njit(cache=True, nogil=True)
def features(freqs_hz, psd, df_hz, beta_lo, beta_hi, peak_lo, peak_hi, half_hz, centre_hz):  # type: ignore[no-untyped-def]
    """``(beta power, band power, peak Hz, peak power)``; ``centre_hz < 0``: band at the peak."""
    peak = spectral_peak(freqs_hz, psd, peak_lo, peak_hi)
    centre = peak if centre_hz < 0.0 else centre_hz
    return (
        band_power(freqs_hz, psd, df_hz, beta_lo, beta_hi),
        band_power(freqs_hz, psd, df_hz, centre - half_hz, centre + half_hz),
        peak,
        band_power(freqs_hz, psd, df_hz, peak - half_hz, peak + half_hz),
    )


@njit(cache=True, nogil=True)
def _psd_features(spec, scale, freqs_hz, df_hz, beta_lo, beta_hi, peak_lo, peak_hi, half_hz,  # type: ignore[no-untyped-def]
                  centre_hz):  # fmt: skip
    """:func:`features` of the density of the segments' spectra ``spec``."""
    psd = _density(spec, scale)
    return features(freqs_hz, psd, df_hz, beta_lo, beta_hi, peak_lo, peak_hi, half_hz,
                    centre_hz)  # fmt: skip
