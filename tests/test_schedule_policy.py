"""Dose schedules (issue 23): the programme, its exact bundle form, the search and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.policies.bundle import BundlePolicy, load_bundle
from controller.policies.factory import build_policy
from controller.train_cli import main as train_main
from controller.training.export import action_fields_for
from controller.training.schedule import STEP_WIDTH, DoseSchedule, write_schedule_bundle
from controller.training.schedule_search import (
    cost,
    parse_schedule,
    schedule_observation,
    score_grid,
    search_box,
)
from core.errors import ConfigError
from protocol.envelope.config import load_envelope
from protocol.observables import unobservable

EMULATOR = load_envelope("emulator")
OBS = schedule_observation("physical")
ACT = action_fields_for(EMULATOR)
#: 1.0 mA up to 360 µC, 2.5 mA up to 1260 µC, 3.0 mA up to 2340 µC, then off: parts of 360,
#: 900 and 1080 µC, each 4 s at 100 Hz and 450 µs (a mA × 0.45 ms × 2 phases × 100 Hz × 4 s).
SCHEDULE = DoseSchedule((1.0, 2.5, 3.0), 100.0, 450.0, 2340.0, "dose_uc")


def _bundle(tmp_path: Path, schedule: DoseSchedule = SCHEDULE) -> Path:
    write_schedule_bundle(schedule, tmp_path / "b", observation_fields=OBS, action_fields=ACT,
                          envelope_hash=EMULATOR.sha256(),
                          training={"control_period_ms": 100.0, "onset_ms": 2000.0})  # fmt: skip
    return tmp_path / "b"


def test_the_schedule_holds_each_parts_amplitude_then_stops() -> None:
    assert SCHEDULE.breakpoints == pytest.approx((360.0, 1260.0, 2340.0))
    got = [SCHEDULE.amplitude_at(d) for d in (0.0, 359.0, 360.1, 1259.9, 1260.1, 2339.0, 2340.0)]
    assert got == [1.0, 1.0, 2.5, 2.5, 3.0, 3.0, 0.0]
    # each part lasts 4 s at the schedule's rate and width
    per_s = [2 * a * 0.45 * 100.0 for a in SCHEDULE.amplitudes]  # µC/s
    parts = np.diff((0.0, *SCHEDULE.breakpoints))
    assert parts / per_s == pytest.approx([4.0, 4.0, 4.0])
    assert SCHEDULE.amplitude_at(1e9) == 0.0


@pytest.mark.parametrize(
    ("amplitudes", "stop", "match"),
    [((), 100.0, "at least one"), ((1.0, float("nan")), 100.0, "finite"),
     ((0.0,), 100.0, "> 0"), ((1.0, 2.0), 0.05, "longer than")],
)  # fmt: skip
def test_a_bad_schedule_is_refused_naming_the_value(
    amplitudes: tuple[float, ...], stop: float, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        DoseSchedule(amplitudes, 100.0, 450.0, stop, "dose_uc")


def test_the_bundle_gives_the_schedules_setting_at_every_dose(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path))
    assert bundle.observation_fields == ("dose_uc",)  # nothing sensed: runs without sensing
    assert bundle.metadata["algorithm"] == "CMA-ES dose schedule"
    assert bundle.metadata["schedule"]["amplitudes"] == [1.0, 2.5, 3.0]
    rng = np.random.default_rng(3)
    doses = np.concatenate([rng.uniform(0.0, 4000.0, 400), [0.0, 359.9, 360.1, 2339.9, 2341]])
    for dose in doses:
        if min(abs(dose - b) for b in SCHEDULE.breakpoints) <= 2 * STEP_WIDTH:
            continue  # inside a step of the network
        obs = np.array([float(dose)])
        sp = bundle.action_map.to_setpoint(bundle.actor(obs))
        want = SCHEDULE.setpoint_at(float(dose))
        assert sp.amplitude == pytest.approx(want.amplitude, abs=1e-5), dose
        assert sp.frequency_hz == pytest.approx(100.0, abs=1e-4)
        assert sp.pulse_width_us == pytest.approx(450.0, abs=1e-3)


def test_the_bundle_is_accepted_on_a_device_and_delivers_nothing_before_its_onset(
    tmp_path: Path,
) -> None:
    path = _bundle(tmp_path)
    policy = build_policy(str(path), EMULATOR, backend_kind="serial")
    assert isinstance(policy, BundlePolicy)
    assert not unobservable(policy.required_fields)
    fields = {name: 0.0 for name in policy.required_fields}
    assert policy.act(fields, 1990.0).amplitude == 0.0  # a Setpoint: off before 2000 ms


def test_a_schedule_outside_the_action_box_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"amplitude in the action box \[0.0, 4.0\] mA"):
        _bundle(tmp_path, DoseSchedule((5.0,), 100.0, 450.0, 3000.0, "dose_uc"))
    with pytest.raises(ConfigError, match="pulse_width_us in the action box"):
        _bundle(tmp_path, DoseSchedule((1.0,), 100.0, 1000.0, 3000.0, "dose_uc"))


def test_the_search_box_round_trips_and_parses_the_command_line_form() -> None:
    box = search_box(ACT, OBS[-1], 3)
    assert box.dim == 6
    assert box.stop_dose == (450.0, 12000.0)
    x = box.encode(SCHEDULE)
    back = box.decode(x)
    assert back.amplitudes == pytest.approx(SCHEDULE.amplitudes)
    assert back.stop_dose == pytest.approx(2340.0)
    assert parse_schedule("1,2.5,3,100,450,2340", box) == SCHEDULE
    with pytest.raises(ConfigError, match="6 finite numbers"):
        parse_schedule("1,2,100,450,2340", box)
    with pytest.raises(ConfigError, match="frequency_hz in"):
        parse_schedule("1,2.5,3,300,450,2340", box)


def test_the_cost_is_the_mean_charge_fraction_plus_the_mean_tail_excess() -> None:
    bars = {1: {"charge": 100.0, "r_tail": 0.04}, 2: {"charge": 200.0, "r_tail": 0.03}}
    rows = [{"seed": 1, "charge": 50.0, "r_tail": 0.035},
            {"seed": 2, "charge": 50.0, "r_tail": 0.05}]  # fmt: skip
    # mean R 0.0425 against FTSTS's mean 0.035: 0.0075 over the bar
    assert cost(rows, bars, 30.0, 0.0) == pytest.approx(0.375 + 30.0 * 0.0075)
    assert cost(rows, bars, 30.0, 0.01) == pytest.approx(0.375 + 30.0 * 0.0175)
    under = [
        {"seed": 1, "charge": 50.0, "r_tail": 0.03},
        {"seed": 2, "charge": 50.0, "r_tail": 0.03},
    ]
    assert cost(under, bars, 30.0, 0.0) == pytest.approx(0.375)


def test_a_grid_is_scored_per_setting_with_the_search_cost() -> None:
    ftsts = [{"seed": 1, "charge": 100.0, "r_tail": 0.04},
             {"seed": 2, "charge": 200.0, "r_tail": 0.03}]  # fmt: skip
    cheap = [{"seed": 1, "charge": 40.0, "r_tail": 0.05, "weight_end_mv": 80.0},
             {"seed": 2, "charge": 80.0, "r_tail": 0.04, "weight_end_mv": 90.0}]  # fmt: skip
    dear = [{"seed": 1, "charge": 60.0, "r_tail": 0.03, "weight_end_mv": 60.0},
            {"seed": 2, "charge": 120.0, "r_tail": 0.03, "weight_end_mv": 70.0}]  # fmt: skip
    settings = [{"amplitude_ma": 2.0}, {"amplitude_ma": 3.0}]
    score = score_grid(ftsts + cheap + dear, 2, settings, 30.0, 0.0)
    # bar: FTSTS's mean tail R 0.035; cheap: 40 % and 0.045 (0.01 over), dear: 60 % and 0.03
    assert score.bar_r_tail == pytest.approx(0.035)
    first, second = score.candidates
    assert first["amplitude_ma"] == 2.0
    assert first["runs"] == cheap
    assert first["charge_vs_ftsts"] == pytest.approx(0.4)
    assert first["cost"] == pytest.approx(0.4 + 30.0 * 0.01)
    assert not first["meets"]
    assert second["cost"] == pytest.approx(0.6)
    assert second["meets"]
    assert second["weight_end_mv"] == pytest.approx(65.0)
    assert score.best is second  # 0.6 < 0.7
    assert score.cheapest_meeting_the_bar is second
    report = score.report()
    assert report["ftsts"] == {"1": {"charge": 100.0, "r_tail": 0.04},
                               "2": {"charge": 200.0, "r_tail": 0.03}}  # fmt: skip
    assert "runs" not in report["best"]
    assert report["best"]["amplitude_ma"] == 3.0
    with pytest.raises(ConfigError, match=r"2 × \(1 \+ 2\) rows, actual 5"):
        score_grid((ftsts + cheap + dear)[:5], 2, settings, 30.0, 0.0)


def test_neuroloop_train_schedule_refuses_the_oracle_observations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(["--algo", "schedule", "--out", str(tmp_path), "--observations", "oracle"])
    assert exc.value.code == 2
    assert "Expected --observations measurable with --algo schedule" in capsys.readouterr().err


def test_neuroloop_train_schedule_writes_a_bundle_and_a_journal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = train_main([
        "--algo", "schedule", "--out", str(out), "--n-scale", "0.05", "--envelope", "emulator",
        "--observations", "measurable", "--control-period-ms", "100", "--onset-ms", "500",
        "--controlled-s", "1", "--tail-s", "0.5", "--generations", "1", "--popsize", "2",
        "--train-seeds", "1", "--segments", "2", "--workers", "1", "--seed", "5",
        "--log-level", "warning",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "train.json").read_text("utf-8"))
    journal = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
    assert len(journal) == 2
    assert summary["best"]["cost"] == min(e["cost"] for e in journal)
    assert summary["training_network_seeds"] == [5]
    bundle = load_bundle(out / "bundle")
    assert bundle.metadata["schedule"] == summary["best"]["schedule"]
    assert bundle.metadata["training"]["control_period_ms"] == 100.0
    assert bundle.envelope_hash == EMULATOR.sha256()


def test_a_truncated_schedule_is_the_same_programme_stopped_at_the_dose(tmp_path: Path) -> None:
    cut = SCHEDULE.truncated(1000.0)
    assert cut.amplitudes == (1.0, 2.5)
    assert cut.breakpoints == pytest.approx((360.0, 1000.0))
    assert [cut.amplitude_at(d) for d in (100.0, 500.0, 999.0, 1000.0)] == [1.0, 2.5, 2.5, 0.0]
    assert SCHEDULE.truncated(300.0).amplitudes == (1.0,)
    assert SCHEDULE.truncated(2340.0).breakpoints == pytest.approx(SCHEDULE.breakpoints)
    assert DoseSchedule.from_dict(cut.as_dict()) == cut
    with pytest.raises(ConfigError, match="a dose in"):
        SCHEDULE.truncated(0.0)
    bundle = load_bundle(_bundle(tmp_path, cut))
    for dose, amp in ((100.0, 1.0), (500.0, 2.5), (1000.5, 0.0)):
        sp = bundle.action_map.to_setpoint(bundle.actor(np.array([dose])))
        assert sp.amplitude == pytest.approx(amp, abs=1e-5)


def test_a_malformed_schedule_entry_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ConfigError, match="Expected a schedule with amplitudes"):
        DoseSchedule.from_dict({"amplitudes": [1.0], "frequency_hz": 100.0})
    with pytest.raises(ConfigError, match="one finite part end per amplitude"):
        DoseSchedule((1.0, 2.0), 100.0, 450.0, 100.0, "dose_uc", part_ends=(50.0, 90.0))


def test_a_cut_just_after_a_part_starts_stops_at_that_start() -> None:
    cut = SCHEDULE.truncated(360.0 + STEP_WIDTH)  # a second part too short to write
    assert cut.amplitudes == (1.0,)
    assert cut.stop_dose == pytest.approx(360.0)


def test_neuroloop_train_schedule_refuses_ppo_flags_and_an_old_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--algo", "schedule", "--out", str(tmp_path), "--observations", "measurable"]
    with pytest.raises(SystemExit) as exc:
        train_main([*base, "--init-setpoint", "100,180,500"])
    assert exc.value.code == 2
    assert "Expected no --init-setpoint with --algo schedule" in capsys.readouterr().err
    (tmp_path / "search.jsonl").write_text('{"generation": 0}\n', "utf-8")
    code = train_main([*base, "--n-scale", "0.05", "--log-level", "warning"])
    assert code == 2
    assert "search journal is never overwritten" in capsys.readouterr().err
    assert (tmp_path / "search.jsonl").read_text("utf-8") == '{"generation": 0}\n'
