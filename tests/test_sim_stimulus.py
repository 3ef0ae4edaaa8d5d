"""Pulse-train waveform: charge balance, exact integration of narrow pulses, parameter checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.errors import ConfigError
from simulator.stimulus import PulseTrain, Stimulus


def _drive(stim: Stimulus | None, windows: int, dt_ms: float = 0.1, window_ms: float = 20.0):
    train = PulseTrain()
    n = round(window_ms / dt_ms)
    u_e, u_i, charge, pulses = [], [], 0.0, 0
    for w in range(windows):
        e, i, q, p = train.drive(stim, w * window_ms, n, dt_ms)
        u_e.append(e)
        u_i.append(i)
        charge += q
        pulses += p
    return np.concatenate(u_e), np.concatenate(u_i), charge, pulses


def test_paper_waveform_sample_by_sample() -> None:
    u_e, u_i, _, _ = _drive(Stimulus(100.0), 1)
    # E: -1 for 10 samples, +1 for 10 samples, 0 for 100 samples; I is the mirror image
    expected_e = np.concatenate([np.full(10, -100.0), np.full(10, 100.0), np.zeros(100)])
    np.testing.assert_allclose(u_e[:120], expected_e, atol=1e-9)
    np.testing.assert_allclose(u_i[:120], -expected_e, atol=1e-9)
    np.testing.assert_allclose(u_e[120:140], expected_e[:20], atol=1e-9)


def test_sync_polarity_swaps_the_waveforms() -> None:
    u_e, u_i, _, _ = _drive(Stimulus(200.0, polarity="sync"), 1)
    assert u_e[0] == pytest.approx(200.0)
    assert u_i[0] == pytest.approx(-200.0)


@pytest.mark.parametrize(
    ("amplitude", "freq", "width_us"),
    [(100.0, 1000 / 12, 1000.0), (200.0, 130.0, 50.0), (37.5, 5.0, 333.0), (150.0, 180.0, 500.0)],
)
def test_every_pulse_is_charge_balanced_and_charge_is_exact(
    amplitude: float, freq: float, width_us: float
) -> None:
    windows = 25  # 0.5 s
    u_e, u_i, charge, pulses = _drive(
        Stimulus(amplitude, frequency_hz=freq, pulse_width_us=width_us), windows
    )
    dt = 0.1
    # net charge of each waveform is zero up to the pulse possibly cut by the end of the run
    period_ms = 1000.0 / freq
    n_full = int(np.floor(500.0 / period_ms))
    assert pulses == n_full + (1 if n_full * period_ms < 500.0 - 1e-9 else 0)
    per_pulse = 2 * amplitude * width_us / 1000.0
    assert abs(u_e.sum() * dt) <= per_pulse / 2 + 1e-9
    # delivered absolute charge equals the integral of |u| at sub-step resolution
    w_ms = width_us / 1000.0
    expected = sum(
        amplitude * (min(w_ms, max(0.0, 500.0 - t)) + min(w_ms, max(0.0, 500.0 - t - w_ms)))
        for t in (k * period_ms for k in range(pulses))
    )
    assert charge == pytest.approx(expected, rel=1e-9)
    # E and I waveforms are mirror images when there is no E–I offset
    np.testing.assert_allclose(u_i, -u_e, atol=1e-9)


def test_narrow_pulse_straddling_steps_keeps_its_charge() -> None:
    # 50 µs phases that start mid-step: each step gets exactly the charge that falls in it
    train = PulseTrain()
    stim = Stimulus(200.0, frequency_hz=100.0, pulse_width_us=50.0)
    train.next_onset_ms = 0.025  # force an onset a quarter-step into the window
    u_e, _, charge, _ = train.drive(stim, 0.0, 200, 0.1)
    # phase 1 covers [0.025, 0.075): all in step 0; phase 2 covers [0.075, 0.125): half and half
    assert u_e[0] * 0.1 == pytest.approx(-200.0 * 0.05 + 200.0 * 0.025)
    assert u_e[1] * 0.1 == pytest.approx(200.0 * 0.025)
    assert charge == pytest.approx(2 * 200.0 * 0.05 * 2)  # two pulses in 20 ms at 100 Hz


def test_setting_change_mid_pulse_finishes_the_running_pulse() -> None:
    train = PulseTrain()
    dt = 0.1
    # 15 ms window cuts nothing; use 0.5 ms windows so the first pulse spans two windows
    u1, _, q1, _ = train.drive(Stimulus(100.0), 0.0, 15, dt)  # 1.5 ms: pulse still running
    u2, _, q2, _ = train.drive(Stimulus(10.0), 1.5, 15, dt)
    total = np.concatenate([u1, u2])
    # the running pulse keeps its 100 mV amplitude for its second phase
    assert total[:10].sum() * dt == pytest.approx(-100.0)
    assert total[10:20].sum() * dt == pytest.approx(100.0)
    assert q1 + q2 == pytest.approx(200.0)


def test_turning_off_lets_the_running_pulse_finish() -> None:
    train = PulseTrain()
    u1, _, _, _ = train.drive(Stimulus(100.0), 0.0, 5, 0.1)
    u2, _, _, _ = train.drive(None, 0.5, 200, 0.1)
    assert (u1.sum() + u2.sum()) * 0.1 == pytest.approx(0.0, abs=1e-9)
    assert np.all(u2[15:] == 0.0)


def test_ei_offset_delays_the_i_waveform() -> None:
    u_e, u_i, _, _ = _drive(
        Stimulus(200.0, frequency_hz=1000 / 24, pulse_width_us=1000.0, ei_offset_ms=11.0), 1
    )
    assert u_e[0] == pytest.approx(-200.0)
    assert u_i[0] == 0.0
    assert u_i[110] == pytest.approx(200.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amplitude_mv": float("nan")}, "Expected a finite amplitude_mv, actual nan"),
        ({"amplitude_mv": float("inf")}, "Expected a finite amplitude_mv, actual inf"),
        ({"amplitude_mv": -1.0}, "Expected amplitude_mv in [0.0, 400.0], actual -1.0"),
        ({"amplitude_mv": 10.0, "frequency_hz": 0.0},
         "Expected frequency_hz in [1.0, 250.0], actual 0.0"),
        ({"amplitude_mv": 10.0, "frequency_hz": 250.0, "pulse_width_us": 3000.0},
         "Expected two phases of 3000.0 µs to fit in one period"),
        ({"amplitude_mv": 10.0, "polarity": "sideways"},
         "Expected polarity 'desync' or 'sync', actual 'sideways'"),
    ],
)  # fmt: skip
def test_invalid_settings_are_refused_with_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Stimulus(**kwargs)


def test_stimulus_for_is_the_one_conversion_off_at_zero_and_order_safe() -> None:
    from drivers.tissue import TissueTransfer
    from simulator.stimulus import stimulus_for

    assert stimulus_for(amplitude_mv=0.0, frequency_hz=130.0, pulse_width_us=90.0) is None
    on = stimulus_for(amplitude_mv=40.0, frequency_hz=130.0, pulse_width_us=90.0, polarity="sync")
    assert on == Stimulus(40.0, frequency_hz=130.0, pulse_width_us=90.0, polarity="sync")
    with pytest.raises(TypeError):
        stimulus_for(40.0, 130.0, 90.0)  # type: ignore[misc]
    with pytest.raises(ConfigError, match="finite amplitude_mv"):
        stimulus_for(amplitude_mv=float("nan"), frequency_hz=130.0, pulse_width_us=90.0)
    # The device emulator's tissue maps µA to model drive, then converts the same way.
    transfer = TissueTransfer(gain_mv_per_ua=0.04)
    assert transfer.stimulus(amp_ua=1000, pw_us=90, freq_dhz=1300) == Stimulus(
        40.0, frequency_hz=130.0, pulse_width_us=90.0
    )
    assert transfer.stimulus(amp_ua=0, pw_us=90, freq_dhz=1300) is None
