"""Stimulation by contact and the coordinated-reset pattern (Figs 10, 14)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from simulator.config import NetworkConfig
from simulator.experiments import get_experiment
from simulator.network import Network
from simulator.stimulus import PulseTrain, Stimulus

CR = Stimulus(100.0, frequency_hz=1000.0 / 9.0, pattern="coordinated-reset")


def _drive(stimulus: Stimulus, contacts: int, seed: int, windows: int = 10):
    train = PulseTrain()
    train.reset(np.random.default_rng(seed), contacts)
    parts = [train.drive(stimulus, 20.0 * w, 200, 0.1) for w in range(windows)]
    u_e = np.concatenate([p[0] for p in parts])
    u_i = np.concatenate([p[1] for p in parts])
    return u_e, u_i, sum(p[2] for p in parts), sum(p[3] for p in parts)


def test_one_contact_gives_the_drive_of_every_cell() -> None:
    u_e, u_i, charge, pulses = _drive(Stimulus(100.0), 1, 0)
    assert u_e.shape == (2000,)  # one contact: one drive per step
    assert pulses == 17  # one every 12 ms in 200 ms
    assert charge == pytest.approx(17 * 2 * 100.0 * 1.0)
    assert np.array_equal(u_i, -u_e)  # the I waveform mirrors the E waveform


def test_a_contact_reaches_its_subgroups_only() -> None:
    u_e, u_i, _, _ = _drive(Stimulus(100.0, contact=2), 4, 0)
    assert np.any(u_e[:, 2] != 0)
    assert np.any(u_i[:, 2] != 0)
    assert not np.any(np.delete(u_e, 2, axis=1))
    assert not np.any(np.delete(u_i, 2, axis=1))
    train = PulseTrain()
    train.reset(np.random.default_rng(0), 2)
    with pytest.raises(ConfigError, match="contact < the lead's 2 contacts, actual 2"):
        train.drive(Stimulus(100.0, contact=2), 0.0, 200, 0.1)


def test_coordinated_reset_visits_every_subgroup_once_per_cycle_in_a_seeded_order() -> None:
    u_e, u_i, _, pulses = _drive(CR, 4, 7, windows=36)  # 720 ms: five 144 ms cycles
    assert pulses == 80
    period = 90  # steps of 0.1 ms
    onsets = np.arange(pulses) * period
    e_group = [int(np.nonzero(u_e[k])[0][0]) for k in onsets]
    i_group = [int(np.nonzero(u_i[k + 10])[0][0]) for k in onsets]  # I's first phase
    for order in (e_group, i_group):
        bursts = [order[b * 4 : b * 4 + 4] for b in range(20)]
        assert all(len(set(burst)) == 1 for burst in bursts)  # a slot bursts one subgroup
        cycles = [[burst[0] for burst in bursts[c * 4 : c * 4 + 4]] for c in range(5)]
        assert all(sorted(c) == [0, 1, 2, 3] for c in cycles)  # each once per cycle
        assert len({tuple(c) for c in cycles}) > 1  # a new order every cycle
    assert e_group != i_group  # E and I orders drawn independently
    again = _drive(CR, 4, 7, windows=36)
    assert np.array_equal(again[0], u_e)
    assert np.array_equal(again[1], u_i)
    assert not np.array_equal(_drive(CR, 4, 8, windows=36)[0], u_e)


def test_cr_only_gives_the_i_cells_the_e_waveform() -> None:
    same = Stimulus(100.0, frequency_hz=1000.0 / 9.0, pattern="coordinated-reset",
                    i_waveform="same")  # fmt: skip
    u_e, u_i, _, _ = _drive(same, 4, 0)
    assert u_e.shape == (2000, 4)
    assert np.array_equal(u_e.sum(axis=1), u_i.sum(axis=1))


def test_bad_contact_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="contact None or an integer >= 0, actual -1"):
        Stimulus(100.0, contact=-1)
    with pytest.raises(ConfigError, match="coordinated-reset pattern"):
        Stimulus(100.0, contact=1, pattern="coordinated-reset")
    with pytest.raises(ConfigError, match="frequency_hz in"):
        Stimulus(100.0, frequency_hz=400.0)  # only within CR bursts
    with pytest.raises(ConfigError, match="contacts to be an integer >= 1, actual 0"):
        NetworkConfig(contacts=0)


def test_cr_run_is_the_same_on_one_and_two_threads_and_stimulates_by_subgroup() -> None:
    exp = get_experiment("fig14-cr-ftsts")
    cfg = exp.network_config("paper", 0.1).replace(j_ee_mv=0.0, j_ii_mv=0.0)  # threadable
    runs = []
    for threads in (1, 2):
        net = Network(cfg, threads=threads)
        net.reset(seed=3)
        stats = [net.advance(exp.stimulus if w >= 2 else None, 20.0) for w in range(8)]
        runs.append((np.concatenate([s.spike_neurons for s in stats]), net.v.copy(),
                     net.weight_mv))  # fmt: skip
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]
