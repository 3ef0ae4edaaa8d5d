"""The implant's view (simulator/sensing): hand-computed spectra, filter, blanking, units."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from core.errors import ConfigError
from simulator.config import NetworkConfig
from simulator.network import OBSERVATION_FIELDS, Network
from simulator.sensing import SENSED_FIELDS, SensingConfig, Sensor
from simulator.sensing.artefact import amplifier
from simulator.sensing.sampling import Decimator, butterworth_sos, response
from simulator.sensing.spectrum import Welch, band_power, features, spectral_peak
from simulator.sensing.units import RecordedUnits
from simulator.stimulus import FTSTS_DESYNC, PulseTrain, Stimulus

SMALL = NetworkConfig(n_e=160, n_i=40)
RATE_HZ = 1000.0


def _welch_of(x: np.ndarray) -> tuple[Welch, np.ndarray]:
    w = Welch(x.shape[0], 500, RATE_HZ)
    return w, w(x)


def test_a_sine_on_a_bin_gives_its_parseval_power_and_frequency() -> None:
    """A sine of amplitude A has mean square A²/2: all of it lands in the band around it."""
    t = np.arange(1000) / RATE_HZ
    amp = 3.0
    w, psd = _welch_of(amp * np.sin(2 * np.pi * 20.0 * t + 0.3) + 7.0)  # + DC: removed
    assert band_power(w.freqs_hz, psd, w.df_hz, 13.0, 30.0) == pytest.approx(amp**2 / 2, rel=1e-3)
    assert band_power(w.freqs_hz, psd, w.df_hz, 40.0, 100.0) < 1e-6 * amp**2
    assert spectral_peak(w.freqs_hz, psd, 5.0, 100.0) == pytest.approx(20.0, abs=1e-9)
    beta, band, peak, peak_power = features(w.freqs_hz, psd, w.df_hz, 13.0, 30.0, 5.0, 100.0,
                                            4.0, 50.0)  # fmt: skip
    assert (beta, peak) == (pytest.approx(amp**2 / 2, rel=1e-3), pytest.approx(20.0))
    assert peak_power == pytest.approx(amp**2 / 2, rel=1e-3)
    assert band < 1e-6  # the band fixed at 50 Hz holds nothing


@pytest.mark.parametrize("f_hz", [23.3, 34.6, 61.1])
def test_an_off_bin_sine_gives_its_frequency_and_most_of_its_power(f_hz: float) -> None:
    t = np.arange(1000) / RATE_HZ
    w, psd = _welch_of(2.0 * np.sin(2 * np.pi * f_hz * t))
    peak = spectral_peak(w.freqs_hz, psd, 5.0, 100.0)
    assert peak == pytest.approx(f_hz, abs=0.25)  # an eighth of the 2 Hz bin
    # ± 4 Hz holds the Hann main lobe: within 1 % of A²/2 = 2
    assert band_power(w.freqs_hz, psd, w.df_hz, peak - 4.0, peak + 4.0) == pytest.approx(
        2.0, rel=0.01
    )


def test_the_anti_alias_filter_passes_the_band_and_removes_tones_above_nyquist() -> None:
    sos = butterworth_sos(8, 250.0, 10_000.0)
    assert response(sos, np.array([0.0, 30.0, 100.0]), 10_000.0) == pytest.approx(1.0, abs=1e-6)
    assert float(response(sos, np.array([500.0]), 10_000.0)[0]) < 10 ** (-48 / 20)
    t = np.arange(20_000) / 10_000.0
    tone = np.sin(2 * np.pi * 700.0 * t)  # would fold onto 300 Hz at 1 kHz
    plain = tone[9::10]
    filtered = Decimator(10_000.0, 10, 8, 250.0)(tone)
    assert filtered.shape == plain.shape
    assert np.sqrt(np.mean(plain[1000:] ** 2)) > 0.5
    assert np.sqrt(np.mean(filtered[1000:] ** 2)) < 1e-3
    slow = np.sin(2 * np.pi * 30.0 * t)
    kept = Decimator(10_000.0, 10, 8, 250.0)(slow)
    assert np.sqrt(np.mean(kept[1000:] ** 2)) == pytest.approx(math.sqrt(0.5), rel=1e-3)


def _ftsts_drive(steps: int) -> tuple[np.ndarray, np.ndarray]:
    u_e, u_i, _, _ = PulseTrain().drive(FTSTS_DESYNC, 0.0, steps, 0.1)
    return u_e, (u_e != 0.0) | (u_i != 0.0)


def _amp_state() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(3), np.zeros(1), np.zeros(1, dtype=np.bool_)


def test_blanking_with_sample_and_hold_removes_the_pulse_artefact() -> None:
    drive, active = _ftsts_drive(2400)
    clean = np.zeros(2400)
    never = np.zeros(2400, dtype=np.bool_)
    gain, decay = 20.0, math.exp(-0.1 / 0.25)
    raw, none_blanked = amplifier(clean, drive, never, gain, 0.5, decay, 1, 10, *_amp_state())
    assert not none_blanked.any()
    assert np.abs(raw).max() >= 0.9 * gain * 100.0  # the 100 mV pulses at 20 µV/mV
    out, blanked = amplifier(clean, drive, active, gain, 0.5, decay, 1, 10, *_amp_state())
    assert out[0] == 0.0  # the output runs one step (the pre-blank) late: align it
    out, blanked, active = out[1:], blanked[:-1], active[:-1]
    assert blanked[active].all()  # every pulse step is blanked, and 1 ms after each
    assert blanked.mean() == pytest.approx(31 / 120, abs=0.01)
    # what leaks past the blank is the tail e^(−4) later: under 1 % of the pulse
    assert np.abs(out).max() < 0.01 * np.abs(raw).max()
    # a held stretch repeats the sample before it
    first = int(np.flatnonzero(blanked[1:] & ~blanked[:-1])[0]) + 1  # the second blank
    assert np.all(out[first : first + 31] == out[first - 1])
    assert out[first + 31] != out[first - 1]


def _units_r(trains: list[np.ndarray], t_end_ms: float) -> float:
    n = len(trains)
    units = RecordedUnits(n, n, n, 1.0)
    units.reset(np.random.default_rng(0))
    times = np.concatenate(trains)
    cells = np.concatenate([np.full(len(tr), k) for k, tr in enumerate(trains)])
    order = np.argsort(times, kind="stable")
    times, cells = times[order], cells[order]
    rs = []
    for t0 in np.arange(0.0, t_end_ms, 20.0):
        sel = (times > t0) & (times <= t0 + 20.0)
        r, _ = units.window(t0, t0 + 20.0, times[sel], cells[sel], np.zeros(200, bool), 0.1)
        rs.append(r)
    return float(np.mean(rs[10:]))


def test_units_synchrony_is_one_for_identical_trains_and_small_for_independent_ones() -> None:
    periodic = np.arange(3.0, 5000.0, 29.0)
    assert _units_r([periodic.copy() for _ in range(16)], 5000.0) > 0.999
    rng = np.random.default_rng(5)
    n = 64
    poisson = [np.round(np.cumsum(rng.exponential(30.0, 400)), 1) for _ in range(n)]
    r = _units_r([p[p < 5000.0] for p in poisson], 5000.0)
    # independent phases: E|Σ e^{iφ}|/n = √(π/4n) = 0.111 for 64 units
    assert 0.5 / math.sqrt(n) < r < 1.5 / math.sqrt(n)


def test_units_rate_counts_the_recorded_cells_and_loses_spikes_in_blanking() -> None:
    units = RecordedUnits(2, 4, 5, 1.0)
    units.reset(np.random.default_rng(1))
    a, b = (int(c) for c in units.cells)
    times = np.array([1.0, 2.0, 3.0, 15.0])
    cells = np.array([a, b, 4, a])  # cell 4 is an I cell: never recorded
    _, rate = units.window(0.0, 20.0, times, cells, np.zeros(200, bool), 0.1)
    assert rate == pytest.approx(3 / 2 / 0.02)
    lost = np.zeros(200, bool)
    lost[149] = True  # the step that ends at 15.0 ms
    _, rate = units.window(20.0, 40.0, times + 20.0, cells, lost, 0.1)
    assert rate == pytest.approx(2 / 2 / 0.02)


class _Recording(Sensor):
    """A sensor that keeps what the network hands it (the kernel's records)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.records: list[tuple[np.ndarray, np.ndarray]] = []

    def window(self, t0_ms, t1_ms, s_ie_e, s_ee_e, *rest):  # type: ignore[no-untyped-def]
        self.records.append((s_ie_e.copy(), s_ee_e.copy()))
        return super().window(t0_ms, t1_ms, s_ie_e, s_ee_e, *rest)


def _recording_network(cfg: NetworkConfig, threads: int = 1) -> tuple[Network, _Recording]:
    net = Network(cfg, threads=threads)
    net.sensor = sensor = _Recording(net.sensor.config, cfg)
    return net, sensor


@pytest.mark.parametrize("recurrent", [False, True])
def test_the_kernel_records_the_mean_delayed_s_of_the_e_cells(recurrent: bool) -> None:
    """Each step's record is the E mean of the delay line's row that step reads: S(t − d)."""
    cfg = SMALL.replace(semantics="clean", j_ee_mv=50.0 if recurrent else 0.0)
    net, sensor = _recording_network(cfg)
    net.reset(2)
    d = cfg.delay_steps
    for _ in range(5):
        net.advance(FTSTS_DESYNC, 20.0)
    h = int(net._head[0])
    rows = [(h + j) % d for j in range(d)]
    want_ie = [net._hist_cross[r, : cfg.n_e].astype(np.float64).mean() for r in rows]
    want_ee = [net._hist_rec[r, : cfg.n_e].astype(np.float64).mean() for r in rows]
    net.advance(FTSTS_DESYNC, 20.0)
    s_ie, s_ee = sensor.records[-1]
    assert np.all(s_ie < 0.0)  # inhibitory
    np.testing.assert_allclose(s_ie[:d], want_ie, rtol=1e-12, atol=0.0)
    if recurrent:
        assert np.all(s_ee > 0.0)
        np.testing.assert_allclose(s_ee[:d], want_ee, rtol=1e-12, atol=0.0)
    else:
        assert not s_ee.any()


def test_one_and_two_threads_record_and_sense_the_same_bits() -> None:
    runs = []
    for threads in (1, 2):
        net, sensor = _recording_network(SMALL, threads)
        net.reset(4)
        obs = [net.advance(FTSTS_DESYNC if w >= 5 else None, 20.0).observation()
               for w in range(12)]  # fmt: skip
        runs.append((np.concatenate([r[0] for r in sensor.records]), obs))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def _sensed(seed: int, windows: int = 60) -> list[dict[str, float]]:
    net = Network(SMALL)
    net.reset(seed)
    out = []
    for w in range(windows):
        obs = net.advance(FTSTS_DESYNC if w >= 40 else None, 20.0).observation()
        out.append({k: obs[k] for k in SENSED_FIELDS})
    return out


def test_every_window_reports_the_six_sensed_fields_reproducibly_per_seed() -> None:
    assert OBSERVATION_FIELDS[-6:] == SENSED_FIELDS
    a, b, c = _sensed(3), _sensed(3), _sensed(4)
    assert a == b
    assert a != c
    assert all(math.isfinite(v) for row in a for v in row.values())
    late = a[-1]
    assert 5.0 <= late["lfp_peak_hz"] <= 100.0
    assert late["lfp_peak_uv2"] > 0.0
    assert late["units_rate_hz"] > 0.0
    assert 0.0 <= late["units_synchrony"] <= 1.0


def test_each_window_carries_its_sensed_lfp_samples() -> None:
    net = Network(SMALL)
    net.reset(2)
    chunks = [net.advance(None, 20.0).lfp_uv for _ in range(60)]
    assert all(c.shape == (20,) for c in chunks)  # 20 ms at 1 kHz
    # the last second of them is what the spectrum was estimated from
    np.testing.assert_array_equal(np.concatenate(chunks[-50:]), net.sensor._buffer)


def test_the_sensor_does_not_change_the_network_it_senses() -> None:
    """Network dynamics do not depend on the sensor's settings or draws."""
    runs = []
    for sensing in (SensingConfig(), SensingConfig(n_units=3, noise_uv_per_sqrt_hz=1.0)):
        net = Network(SMALL, sensing=sensing)
        net.reset(6)
        stats = [net.advance(FTSTS_DESYNC, 20.0) for _ in range(5)]
        runs.append(np.concatenate([s.spike_times_ms for s in stats]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_synthetic_proxy_goes_through_the_chain_with_its_power() -> None:
    """A sinusoidal mean S gives gain·1.65·(J_E/c)·a as the sensed sine's amplitude."""
    sensing = SensingConfig(noise_uv_per_sqrt_hz=0.0, n_units=0, band_centre_hz=20.0)
    sensor = Sensor(sensing, SMALL)
    sensor.reset(1)
    a = 0.01
    t_ms = np.arange(30_000) * 0.1
    s_ie = -(0.05 + a * np.sin(2 * np.pi * 20.0 * t_ms / 1000.0))
    none = np.zeros(200)
    for k in range(150):
        sl = slice(200 * k, 200 * (k + 1))
        obs = sensor.window(20.0 * k, 20.0 * (k + 1), s_ie[sl], none, none,
                            np.zeros(200, bool), np.zeros(0), np.zeros(0, np.int32))  # fmt: skip
    amp = sensing.gain_uv_per_mv * 1.65 * SMALL.j_e_mv / SMALL.c_norm * a
    assert obs["lfp_beta_uv2"] == pytest.approx(amp**2 / 2, rel=1e-3)
    assert obs["lfp_band_uv2"] == pytest.approx(amp**2 / 2, rel=1e-3)
    assert obs["lfp_peak_hz"] == pytest.approx(20.0, abs=1e-6)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"sample_rate_hz": -1.0}, "Expected sample_rate_hz a finite number > 0.0, actual -1.0"),
        ({"gain_uv_per_mv": math.nan}, "Expected gain_uv_per_mv a finite number"),
        ({"common_mode_residual": 2.0}, "common_mode_residual a finite number >= 0.0 and <= 1.0"),
        ({"antialias_order": 3}, "Expected antialias_order an even integer >= 2, actual 3"),
        ({"n_units": -2}, "Expected n_units an integer >= 0, actual -2"),
        ({"beta_band_hz": (30.0, 13.0)}, "Expected beta_band_hz a (low, high) pair"),
        ({"peak_range_hz": (5.0, 900.0)}, "Nyquist frequency 500.0 Hz, actual (5.0, 900.0)"),
        ({"segment_s": 2.0}, "Expected segment_s <= spectrum_window_s (1.0), actual 2.0"),
        ({"band_centre_hz": 0.0}, "Expected band_centre_hz a finite number > 0.0"),
    ],
)
def test_bad_sensing_settings_are_refused_naming_expected_and_actual(
    changes: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        SensingConfig().replace(**changes)
    assert needle in str(err.value)


def test_a_sample_rate_that_does_not_divide_the_kernel_rate_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"divide the kernel's rate 10000 Hz.*actual 3000"):
        Network(SMALL, sensing=SensingConfig(sample_rate_hz=3000.0))


def test_the_sensed_signal_does_not_depend_on_how_the_run_is_cut_into_windows() -> None:
    """Filter, blanking, hold, decimation phase, AMPA line and noise carry across windows."""
    cfg = SMALL.replace(j_ee_mv=50.0)
    rng = np.random.default_rng(9)
    steps = 4380
    s_ie = -np.abs(rng.normal(0.05, 0.01, steps))
    s_ee = np.abs(rng.normal(0.02, 0.01, steps))
    drive, active = _ftsts_drive(steps)
    buffers = []
    for cut in (200, 73):
        sensor = Sensor(SensingConfig(), cfg)
        sensor.reset(np.random.SeedSequence(3))
        for a in range(0, steps, cut):
            b = min(steps, a + cut)
            sensor.window(a * 0.1, b * 0.1, s_ie[a:b], s_ee[a:b], drive[a:b], active[a:b],
                          np.zeros(0), np.zeros(0, np.int32))  # fmt: skip
        buffers.append(sensor._buffer.copy())
    np.testing.assert_array_equal(buffers[0], buffers[1])
    assert np.count_nonzero(buffers[0]) == 438  # 4380 steps: 438 samples at 1 kHz


def test_a_deep_copy_senses_exactly_like_the_original() -> None:
    net = Network(SMALL)
    net.reset(3)
    for _ in range(20):
        net.advance(None, 20.0)
    snap = copy.deepcopy(net)
    a = [net.advance(FTSTS_DESYNC, 20.0).observation() for _ in range(5)]
    b = [snap.advance(FTSTS_DESYNC, 20.0).observation() for _ in range(5)]
    assert a == b


def test_a_lead_of_several_contacts_is_sensed_with_every_contacts_pulses_blanked() -> None:
    cfg = SMALL.replace(contacts=4)
    net = Network(cfg)
    net.reset(5)
    cr = Stimulus(100.0, frequency_hz=111.0, pattern="coordinated-reset")
    for _ in range(60):
        stats = net.advance(cr, 20.0)
    obs = stats.observation()
    assert all(math.isfinite(obs[k]) for k in SENSED_FIELDS)
    assert stats.lfp_uv.shape == (20,)
    assert np.abs(stats.lfp_uv).max() < 50.0  # 2 mV pulses blanked away
