"""The implant's view of the network: :class:`Sensor`, fed window by window.

Per 20 ms window the network hands over the kernel's per-step record (the E cells' mean
delayed S), the delivered stimulation drive per step and the window's spikes. The sensor
builds the LFP proxy (:mod:`~simulator.sensing.proxy`), scales it to µV at the contact pair,
adds the stimulation artefact, blanks and holds around pulses
(:mod:`~simulator.sensing.artefact`), low-pass filters and decimates to the output rate
(:mod:`~simulator.sensing.sampling`), adds the amplifier's white noise, and computes the six
features of :data:`~simulator.sensing.config.SENSED_FIELDS` from the last second of samples
(:mod:`~simulator.sensing.spectrum`) and from the recorded units
(:mod:`~simulator.sensing.units`).

Its random draws (which cells are recorded, the noise) come from its own generator, seeded in
``reset`` from a child of the network's seed: the network's dynamics and digests do not
depend on the sensor.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from simulator.config import NetworkConfig
from simulator.sensing.artefact import amplifier, recovery_decay
from simulator.sensing.config import SensingConfig
from simulator.sensing.proxy import LfpProxy, rws
from simulator.sensing.sampling import Decimator, sos_decimate
from simulator.sensing.spectrum import Welch
from simulator.sensing.units import RecordedUnits

F64 = npt.NDArray[np.float64]


@njit(cache=True, nogil=True)
def _front_end(  # type: ignore[no-untyped-def]
    s_ie_e, s_ee_e, drive, active, gain, gaba, ampa, line, art_gain, recovery_fraction, decay,
    pre, post, amp_state, pending_x, pending_mask, sos, zi, factor, phase,
):  # fmt: skip
    """Proxy (µV) → artefact, blanking and hold → anti-alias filter and decimation.

    One compiled call per window for the three stages of :mod:`~simulator.sensing.proxy`,
    :mod:`~simulator.sensing.artefact` and :mod:`~simulator.sensing.sampling` (each keeps
    its state in the arrays passed): one dispatch instead of a handful of NumPy and Numba
    calls, which cost more than the arithmetic on 200 samples.
    """
    clean = rws(s_ie_e, s_ee_e, gain, gaba, ampa, line)
    held, mask = amplifier(clean, drive, active, art_gain, recovery_fraction, decay, pre, post,
                           amp_state, pending_x, pending_mask)  # fmt: skip
    return sos_decimate(held, sos, zi, factor, phase), mask


class Sensor:
    """A sensing implant's LFP channel and recorded units (``docs/simulator.md#sensing``).

    Args:
        config: The sensor's parameters.
        network: The network it senses (sizes, step, the synaptic scales of the proxy).

    Example:
        >>> sensor = Sensor(SensingConfig(), NetworkConfig(n_e=160, n_i=40))
        >>> sensor.reset(np.random.SeedSequence(1))
    """

    def __init__(self, config: SensingConfig, network: NetworkConfig) -> None:
        self.config = config
        dt = network.dt_ms
        self.dt_ms = dt
        self.factor = config.decimation(dt)
        rate_in = 1000.0 / dt
        self.rate_hz = rate_in / self.factor
        self.proxy = LfpProxy(
            gaba_scale_mv=network.j_e_mv / network.c_norm,
            ampa_scale_mv=network.j_ee_mv / network.n,
            gaba_weight=config.gaba_weight,
            shift_steps=round(config.ampa_shift_ms / dt),
        )
        self.decimator = Decimator(
            rate_in, self.factor, config.antialias_order,
            config.antialias_fraction * self.rate_hz,
        )  # fmt: skip
        n_buf = max(1, round(config.spectrum_window_s * self.rate_hz))
        self.welch = Welch(n_buf, round(config.segment_s * self.rate_hz), self.rate_hz)
        self.units = RecordedUnits(config.n_units, network.n_e, network.n, config.units_sample_ms)
        self._art_gain = config.field_uv_per_mv * config.common_mode_residual
        self._decay = recovery_decay(dt, config.recovery_tau_ms)
        self._pre = round(config.blank_pre_ms / dt)
        self._post = round(config.blank_post_ms / dt)
        self._noise_sd = config.noise_uv_per_sqrt_hz * np.sqrt(self.rate_hz / 2.0)
        self._buffer = np.zeros(n_buf)
        self._amp_state = np.zeros(3)  # the amplifier's tail, blank owed, held value
        self._pending_x = np.zeros(self._pre)  # its last inputs, not yet output
        self._pending_mask = np.zeros(self._pre, dtype=np.bool_)
        self._rng = np.random.default_rng(0)
        self.centre_hz: float | None = config.band_centre_hz
        #: The sensed LFP samples (µV, at ``rate_hz``) of the last window
        self.last_samples_uv: F64 = np.zeros(0)
        self._ready = False

    def reset(self, seed: int | np.random.SeedSequence) -> None:
        """Start a new recording: draw the units, seed the noise, empty every buffer."""
        self._rng = np.random.default_rng(seed)
        self.units.reset(self._rng)
        self.proxy.reset()
        self.decimator.reset()
        self._buffer[:] = 0.0
        self._amp_state[:] = 0.0
        self._pending_x[:] = 0.0
        self._pending_mask[:] = False
        self.centre_hz = self.config.band_centre_hz
        self._ready = True

    def lfp_uv(self, s_ie_e: F64, s_ee_e: F64, drive_e: F64, active: npt.NDArray[np.bool_]
               ) -> tuple[F64, npt.NDArray[np.bool_]]:  # fmt: skip
        """The sensed LFP of one window at the output rate (µV) and the blanked steps.

        Args:
            s_ie_e: Per kernel step, the E cells' mean delayed I→E S.
            s_ee_e: The same for E→E (zeros without recurrent synapses).
            drive_e: Per step, the delivered drive (mV) summed over the lead's contacts.
            active: Per step, whether a pulse delivers drive.
        """
        cfg = self.config
        pr, dec = self.proxy, self.decimator
        out, mask = _front_end(
            s_ie_e, s_ee_e, drive_e, active, cfg.gain_uv_per_mv, pr.gaba, pr.ampa, pr.line,
            self._art_gain, cfg.recovery_fraction, self._decay, self._pre, self._post,
            self._amp_state, self._pending_x, self._pending_mask, dec.sos, dec.zi,
            dec.factor, dec.phase,
        )  # fmt: skip
        if self._noise_sd > 0.0:
            out = out + self._noise_sd * self._rng.standard_normal(out.shape[0])
        return out, mask

    def window(
        self,
        t0_ms: float,
        t1_ms: float,
        s_ie_e: F64,
        s_ee_e: F64,
        drive_e: F64,
        active: npt.NDArray[np.bool_],
        spike_times_ms: F64,
        spike_neurons: npt.NDArray[np.integer],
    ) -> dict[str, float]:
        """The six sensed features after one window (keys: ``SENSED_FIELDS``).

        Args:
            t0_ms: Window start (model time).
            t1_ms: Window end.
            s_ie_e: Per kernel step, the E cells' mean delayed I→E S (``Recorder.s_ie_e``).
            s_ee_e: The same for E→E.
            drive_e: Per step, the delivered drive (mV) summed over the lead's contacts.
            active: Per step, whether a pulse delivers drive (blanking).
            spike_times_ms: The window's spikes.
            spike_neurons: Their cells.
        """
        if not self._ready:
            raise RuntimeError("Sensor.reset(seed) must be called before Sensor.window")
        cfg = self.config
        samples, mask = self.lfp_uv(s_ie_e, s_ee_e, drive_e, active)
        self.last_samples_uv = samples
        m = samples.shape[0]
        buf = self._buffer
        if m >= buf.shape[0]:
            buf[:] = samples[-buf.shape[0] :]
        elif m:
            buf[:-m] = buf[m:]
            buf[-m:] = samples
        centre = -1.0 if self.centre_hz is None else self.centre_hz
        beta, band, peak, peak_power = self.welch.features(
            buf, cfg.beta_band_hz, cfg.peak_range_hz, cfg.band_half_width_hz, centre
        )
        if self.centre_hz is None and t1_ms >= cfg.calibrate_at_ms - 1e-9:
            self.centre_hz = peak  # the survey: the band stays here from now on
        r, rate = self.units.window(t0_ms, t1_ms, spike_times_ms, spike_neurons, mask,
                                    self.dt_ms)  # fmt: skip
        return {
            "lfp_beta_uv2": beta,
            "lfp_band_uv2": band,
            "lfp_peak_hz": peak,
            "lfp_peak_uv2": peak_power,
            "units_synchrony": r,
            "units_rate_hz": rate,
        }
