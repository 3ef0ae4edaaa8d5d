"""What the sensor measures and how: :class:`SensingConfig` (every default documented).

The defaults describe one sensing contact pair of an implant next to the simulated E
population, sampled at 1 kHz, and 16 recorded E cells (``docs/simulator.md#sensing`` gives
each number's reason). Every value is checked on construction: a bad one raises
:class:`~core.errors.ConfigError` naming what was expected and what arrived.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from protocol.observables import SENSOR_FIELDS

#: The observation fields a :class:`~simulator.sensing.sensor.Sensor` returns, in order (the
#: one list of what an implant senses: ``protocol.observables``).
SENSED_FIELDS: tuple[str, ...] = SENSOR_FIELDS


@dataclass(frozen=True)
class SensingConfig:
    """The sensor's parameters (defaults: ``docs/simulator.md#sensing``).

    Args:
        gain_uv_per_mv: LFP at the contact pair per mV of the proxy (a calibration choice:
            a synchronised network's band amplitude lands at a few µV, as implants report).
        gaba_weight: Weight of the GABA term in the proxy (Mazzoni et al. 2015's RWS: 1.65).
        ampa_shift_ms: Delay of the AMPA term behind the GABA term (RWS: 6 ms).
        field_uv_per_mv: Stimulation field at each sensing contact per mV of drive.
        common_mode_residual: Fraction of that field left after the sandwich montage's
            differential amplifier (the contacts' mismatch).
        recovery_fraction: Weight of the amplifier's exponential recovery tail relative to
            the pulse (the electrode interface's charge relaxing).
        recovery_tau_ms: Time constant of that tail.
        blank_pre_ms: Amplifier blanking before each pulse (the device knows its schedule).
        blank_post_ms: Blanking after each pulse ends; the output is held (sample and hold).
        noise_uv_per_sqrt_hz: White amplifier noise density at the output (one-sided).
        sample_rate_hz: Output sample rate; must divide the kernel's rate (10 kHz).
        antialias_order: Order of the Butterworth anti-alias low-pass (even).
        antialias_fraction: Its cut-off as a fraction of ``sample_rate_hz``.
        spectrum_window_s: Length of signal the spectrum is estimated from (Welch).
        segment_s: Welch segment length (its inverse is the frequency resolution).
        beta_band_hz: The fixed beta band.
        peak_range_hz: Where the spectral peak is searched.
        band_half_width_hz: Half-width of the network band and of the peak's band.
        band_centre_hz: Fixed network band centre; ``None``: calibrated from the spectrum
            at ``calibrate_at_ms`` (before then, the current peak).
        calibrate_at_ms: Model time at which the network band's centre is fixed.
        n_units: Recorded single units (E cells drawn by the sensor's seeded generator).
        units_sample_ms: Sampling interval of the units' Kuramoto order parameter.
    """

    gain_uv_per_mv: float = 2.0
    gaba_weight: float = 1.65
    ampa_shift_ms: float = 6.0
    field_uv_per_mv: float = 2000.0
    common_mode_residual: float = 0.01
    recovery_fraction: float = 0.5
    recovery_tau_ms: float = 0.25
    blank_pre_ms: float = 0.1
    blank_post_ms: float = 1.0
    noise_uv_per_sqrt_hz: float = 0.05
    sample_rate_hz: float = 1000.0
    antialias_order: int = 8
    antialias_fraction: float = 0.25
    spectrum_window_s: float = 1.0
    segment_s: float = 0.5
    beta_band_hz: tuple[float, float] = (13.0, 30.0)
    peak_range_hz: tuple[float, float] = (5.0, 100.0)
    band_half_width_hz: float = 4.0
    band_centre_hz: float | None = None
    calibrate_at_ms: float = 2000.0
    n_units: int = 16
    units_sample_ms: float = 1.0

    def __post_init__(self) -> None:
        positive = ("gain_uv_per_mv", "sample_rate_hz", "spectrum_window_s", "segment_s",
                    "band_half_width_hz", "recovery_tau_ms", "units_sample_ms")  # fmt: skip
        for name in positive:
            _finite(name, getattr(self, name), lo=0.0, lo_open=True)
        for name in ("gaba_weight", "ampa_shift_ms", "field_uv_per_mv", "recovery_fraction",
                     "blank_pre_ms", "blank_post_ms", "noise_uv_per_sqrt_hz",
                     "calibrate_at_ms"):  # fmt: skip
            _finite(name, getattr(self, name), lo=0.0)
        _finite("common_mode_residual", self.common_mode_residual, lo=0.0, hi=1.0)
        _finite("antialias_fraction", self.antialias_fraction, lo=0.0, lo_open=True, hi=0.5)
        order = self.antialias_order
        if isinstance(order, bool) or not isinstance(order, int) or order < 2 or order % 2:
            raise ConfigError(f"Expected antialias_order an even integer >= 2, actual {order!r}")
        units = self.n_units
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise ConfigError(f"Expected n_units an integer >= 0, actual {units!r}")
        if self.segment_s > self.spectrum_window_s:
            raise ConfigError(
                f"Expected segment_s <= spectrum_window_s ({self.spectrum_window_s}), actual "
                f"{self.segment_s}"
            )
        nyquist = self.sample_rate_hz / 2.0
        for name in ("beta_band_hz", "peak_range_hz"):
            band = getattr(self, name)
            if (not isinstance(band, tuple) or len(band) != 2
                    or not all(isinstance(f, (int, float)) and math.isfinite(f) for f in band)
                    or not 0.0 <= band[0] < band[1] <= nyquist):  # fmt: skip
                raise ConfigError(
                    f"Expected {name} a (low, high) pair with 0 <= low < high <= the Nyquist "
                    f"frequency {nyquist} Hz, actual {band!r}"
                )
        if self.band_centre_hz is not None:
            _finite("band_centre_hz", self.band_centre_hz, lo=0.0, lo_open=True, hi=nyquist)
        if round(self.segment_s * self.sample_rate_hz) < 8:
            raise ConfigError(
                f"Expected segment_s * sample_rate_hz >= 8 samples, actual "
                f"{self.segment_s * self.sample_rate_hz}"
            )

    def replace(self, **changes: Any) -> SensingConfig:
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def decimation(self, dt_ms: float) -> int:
        """Kernel steps per output sample at step ``dt_ms``.

        Raises:
            ConfigError: ``sample_rate_hz`` does not divide the kernel's rate.
        """
        ratio = 1000.0 / dt_ms / self.sample_rate_hz
        if ratio < 1.0 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ConfigError(
                f"Expected sample_rate_hz to divide the kernel's rate {1000.0 / dt_ms:g} Hz "
                f"(e.g. 1000, 500, 250), actual {self.sample_rate_hz}"
            )
        return round(ratio)


def _finite(name: str, value: Any, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    """Raise unless ``value`` is a finite real in ``[lo, hi]`` (``(lo, hi]`` when open)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > lo if lo_open else value >= lo)
        and value <= hi
    )
    if not ok:
        low = f"> {lo}" if lo_open else f">= {lo}"
        high = "" if math.isinf(hi) else f" and <= {hi}"
        raise ConfigError(f"Expected {name} a finite number {low}{high}, actual {value!r}")
