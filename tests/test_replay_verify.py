"""Replay verification: goldens pass, and a changed policy, envelope or codec makes them fail."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import replay_cli
from controller.policies.bundle import META_FILE, WEIGHTS_FILE
from controller.replay.compare import Tolerance
from controller.replay.edit import rewrite_recording
from controller.replay.session import load_session
from controller.replay.verify import VerifyReport, verify_session
from protocol.envelope.config import envelope_toml as write_envelope_toml
from protocol.recording import Record, RecordingWriter, read_recording

DATA = Path(__file__).parent / "data" / "replay"
GOLDENS = sorted(p.name for p in DATA.glob("*.nlrec"))
BUNDLE_GOLDEN = "sim_bundle_fast.nlrec"
FTSTS_GOLDEN = "sim_ftsts_fast.nlrec"
DEVICE_GOLDEN = "device_constant_realtime.nlrec"
FAULT_GOLDEN = "replay_overrun_fault.nlrec"


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI mains configure structlog onto the captured stderr; start and end from defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def verify(path: Path, **kwargs: Any) -> VerifyReport:
    return verify_session(load_session(path), **kwargs)


def copy_bundle_session(tmp_path: Path) -> Path:
    """The bundle golden and its bundle, copied so both can be changed."""
    shutil.copytree(DATA / "bundle_mlp", tmp_path / "bundle_mlp")
    shutil.copyfile(DATA / BUNDLE_GOLDEN, tmp_path / BUNDLE_GOLDEN)
    return tmp_path / BUNDLE_GOLDEN


def change_weight(bundle: Path, delta: float) -> None:
    """Add ``delta`` to one weight and re-pin weights_sha256 (a consistent, different bundle)."""
    with np.load(bundle / WEIGHTS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["layer1.weight"] = arrays["layer1.weight"].copy()
    arrays["layer1.weight"][0, 0] += np.float32(delta)
    np.savez(bundle / WEIGHTS_FILE, **arrays)
    meta = json.loads((bundle / META_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256((bundle / WEIGHTS_FILE).read_bytes()).hexdigest()
    (bundle / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def envelope_toml(env: dict[str, Any], path: Path) -> Path:
    path.write_text(write_envelope_toml(env))
    return path


# --------------------------------------------------------------------------- goldens pass


def test_goldens_exist_and_are_small():
    assert {BUNDLE_GOLDEN, FTSTS_GOLDEN, DEVICE_GOLDEN, FAULT_GOLDEN} <= set(GOLDENS)
    for name in GOLDENS:
        assert (DATA / name).stat().st_size < 80_000


@pytest.mark.parametrize("name", GOLDENS)
def test_every_golden_replays_exactly_and_keeps_every_invariant(name):
    report = verify(DATA / name)
    assert report.rerun.mismatches == []
    assert report.violations == []
    assert all(c.ok for c in report.checks)
    assert report.rerun.commands == len(load_session(DATA / name).ticks)
    assert report.passed


def test_goldens_cover_policy_ramp_latch_holds_and_fault_paths():
    bundle = verify(DATA / BUNDLE_GOLDEN)
    assert bundle.rerun.actions == 50
    assert bundle.rerun.counts["clamp"]["ramp_up"] > 0
    ftsts = load_session(DATA / FTSTS_GOLDEN)
    summary = ftsts.summary()
    assert summary is not None
    assert summary["latch_time_ms"] is not None
    device = verify(DATA / DEVICE_GOLDEN)
    assert load_session(DATA / DEVICE_GOLDEN).meta["envelope"]["amplitude_unit"] == "mA"
    late_holds = device.rerun.counts["hold"].get("late_observation", 0)
    assert device.timing.deadline_misses == device.timing.late_windows == late_holds
    fault = verify(DATA / FAULT_GOLDEN)
    assert fault.rerun.end_reason == "backend_error"


def test_verification_is_deterministic():
    first = verify(DATA / BUNDLE_GOLDEN).as_dict()
    second = verify(DATA / BUNDLE_GOLDEN).as_dict()
    assert first == second


def test_cli_pass_exit_zero_and_json(capsys):
    assert replay_cli.main(["verify", str(DATA / FTSTS_GOLDEN), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True
    assert out["rerun"]["mismatch_count"] == 0
    assert out["timing"]["pace"] == "fast"
    assert out["timing"]["period_error_ms"]["n"] == 0


# ------------------------------------------------------------------------------- bites


def test_changed_policy_weight_fails_with_tick_field_expected_got(tmp_path, capsys):
    session = copy_bundle_session(tmp_path)
    change_weight(tmp_path / "bundle_mlp", 0.05)
    report = verify(session)
    assert not report.passed
    [check] = [c for c in report.checks if c.field == "policy.bundle_sha256"]
    assert not check.ok
    assert check.binding
    first = report.rerun.mismatches[0]
    assert (first.tick, first.record, first.field) == (0, "action", "action[0]")
    assert not math.isclose(first.expected, first.got, rel_tol=1e-9)
    assert replay_cli.main(["verify", str(session)]) == 1
    text = capsys.readouterr().out
    assert "MISMATCH tick 0, action.action[0]: expected" in text
    assert text.rstrip().endswith("FAIL")


def test_changed_policy_weight_as_override_fails_on_commands_too(tmp_path):
    bundle = tmp_path / "new_bundle"
    shutil.copytree(DATA / "bundle_mlp", bundle)
    change_weight(bundle, 0.05)
    report = verify(DATA / BUNDLE_GOLDEN, policy_spec=str(bundle))
    fields = {(m.record, m.field) for m in report.rerun.mismatches}
    assert ("command", "setpoint.amplitude") in fields
    assert not report.passed
    # The same bundle copied unchanged reproduces the session: the check is the weight.
    same = tmp_path / "same_bundle"
    shutil.copytree(DATA / "bundle_mlp", same)
    assert verify(DATA / BUNDLE_GOLDEN, policy_spec=str(same)).passed


def test_changed_envelope_ramp_limit_fails_at_the_first_ramp(tmp_path):
    env = dict(load_session(DATA / FTSTS_GOLDEN).meta["envelope"])
    same = envelope_toml(env, tmp_path / "same.toml")
    assert verify(DATA / FTSTS_GOLDEN, envelope_path=str(same)).passed
    env["amplitude_up_per_s"] = env["amplitude_up_per_s"] * 0.5
    slower = envelope_toml(env, tmp_path / "slower.toml")
    report = verify(DATA / FTSTS_GOLDEN, envelope_path=str(slower))
    assert not report.passed
    first = report.rerun.mismatches[0]
    assert (first.record, first.field) == ("command", "setpoint.amplitude")
    ramp_tick = next(t.tick for t in load_session(DATA / FTSTS_GOLDEN).ticks if t.events)
    assert first.tick == ramp_tick
    assert first.got == pytest.approx(first.expected / 2.0)
    [check] = [c for c in report.checks if c.field == "envelope_hash"]
    assert not check.ok
    assert not check.binding


def test_tampered_header_envelope_fails_the_hash_check(tmp_path):
    def meta(m: dict[str, Any]) -> dict[str, Any]:
        m["envelope"] = {**m["envelope"], "amplitude_max": 150.0}
        return m

    dst = rewrite_recording(DATA / FTSTS_GOLDEN, tmp_path / "t.nlrec", meta=meta)
    report = verify(dst)
    [check] = [c for c in report.checks if c.field == "envelope_hash"]
    assert not check.ok
    assert check.binding
    assert not report.passed


def _round_observations_to_float32(record: Record) -> dict[str, Any]:
    if record.kind != "observation":
        return record.payload
    fields = {k: float(np.float32(v)) for k, v in record.payload["fields"].items()}
    return {**record.payload, "fields": fields}


def test_codec_rounding_observations_to_float32_fails(tmp_path):
    dst = rewrite_recording(
        DATA / BUNDLE_GOLDEN, tmp_path / BUNDLE_GOLDEN, transform=_round_observations_to_float32
    )
    shutil.copytree(DATA / "bundle_mlp", tmp_path / "bundle_mlp")
    report = verify(dst)
    assert not report.passed
    first = report.rerun.mismatches[0]
    changed = next(
        t.tick
        for t in load_session(DATA / BUNDLE_GOLDEN).ticks
        if any(
            float(np.float32(t.observation["fields"][k])) != v
            for k, v in t.observation["fields"].items()
            if k in ("synchrony", "weight_mv")
        )
    )
    assert (first.tick, first.record) == (changed, "action")
    # ... while a tolerance as loose as float32 rounding would hide it (the default does not).
    assert verify(dst, tolerance=Tolerance(atol=1e-3, rtol=1e-3)).rerun.mismatches == []


def test_codec_rounding_commands_to_float32_fails(tmp_path):
    def transform(record: Record) -> dict[str, Any]:
        if record.kind != "command":
            return record.payload
        sp = {k: float(np.float32(v)) for k, v in record.payload["setpoint"].items()}
        return {**record.payload, "setpoint": sp}

    dst = rewrite_recording(DATA / FTSTS_GOLDEN, tmp_path / "c.nlrec", transform=transform)
    report = verify(dst)
    fields = {m.field for m in report.rerun.mismatches}
    assert "setpoint.frequency_hz" in fields  # 1000/12 Hz is not a float32
    assert not report.passed


# ------------------------------------------------------------------------ invariants


def _tamper_command(src: Path, dst: Path, tick: int, **setpoint: float) -> Path:
    def transform(record: Record) -> dict[str, Any]:
        p = record.payload
        if record.kind == "command" and p["tick"] == tick:
            return {**p, "setpoint": {**p["setpoint"], **setpoint}}
        return p

    return rewrite_recording(src, dst, transform=transform)


@pytest.mark.parametrize(
    ("tick", "change", "invariant"),
    [
        (30, {"amplitude": 250.0}, "bounds"),
        (30, {"amplitude": math.nan}, "finite"),
        (30, {"frequency_hz": 179.0}, "slew"),
        (0, {"amplitude": 5.0}, "soft_start"),
        (30, {"frequency_hz": 500.0}, "duty"),
    ],
)
def test_broken_invariant_is_found_at_its_tick(tmp_path, tick, change, invariant):
    dst = _tamper_command(DATA / FTSTS_GOLDEN, tmp_path / "x.nlrec", tick, **change)
    report = verify(dst)
    assert any(v.tick == tick and v.invariant == invariant for v in report.violations), [
        str(v) for v in report.violations
    ]
    assert not report.passed


def test_command_after_fault_breaks_the_latch(tmp_path):
    """A fault record in the middle of a run that keeps commanding: caught twice."""
    src = load_session(DATA / FTSTS_GOLDEN)
    dst = tmp_path / "latch.nlrec"
    with RecordingWriter(dst, src.meta) as w:
        for record in src.records:
            w.record(record.kind, record.payload)
            if record.kind == "timing" and record.payload["tick"] == 10:
                w.record("fault", {"reason": "estop", "detail": "test"})
    report = verify(dst)
    assert any(v.invariant == "latched" and v.tick == 11 for v in report.violations)
    assert any(m.record == "command" and m.field == "presence" for m in report.rerun.mismatches)


def test_unexplained_change_of_the_request_needs_a_reason(tmp_path):
    def transform(record: Record) -> dict[str, Any] | None:
        p = record.payload
        if record.kind == "envelope_event":
            return None
        if record.kind == "command":
            return {**p, "reasons": []}
        return p

    dst = rewrite_recording(DATA / FTSTS_GOLDEN, tmp_path / "r.nlrec", transform=transform)
    report = verify(dst)
    assert any(v.invariant == "reasons" for v in report.violations)


# ------------------------------------------------------------------- damaged input


def test_torn_tail_is_refused_with_its_offset_then_accepted_on_request(tmp_path, capsys):
    data = (DATA / FTSTS_GOLDEN).read_bytes()
    torn = tmp_path / "torn.nlrec"
    torn.write_bytes(data[: len(data) * 2 // 3])
    assert replay_cli.main(["verify", str(torn)]) == 2
    err = capsys.readouterr().err
    assert "torn tail at byte" in err
    assert "the last good record is" in err
    assert replay_cli.main(["verify", str(torn), "--accept-damaged-tail"]) == 0
    out = capsys.readouterr().out
    assert "torn tail accepted" in out
    assert out.rstrip().endswith("PASS")


def _flip(src: Path, dst: Path, offset: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("accept", [False, True])
def test_mid_file_damage_is_refused_with_every_region_even_with_accept_damaged_tail(
    tmp_path, capsys, accept
):
    src = rewrite_recording(DATA / FTSTS_GOLDEN, tmp_path / "v2.nlrec")  # current format
    records = read_recording(src).records
    first, second = records[40], records[120]
    bad = _flip(src, tmp_path / "bad1.nlrec", first.offset + 30)
    bad = _flip(bad, tmp_path / "bad2.nlrec", second.offset + 5)
    argv = ["verify", str(bad)] + (["--accept-damaged-tail"] if accept else [])
    assert replay_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "2 damaged region(s)" in err
    assert f"corrupt bytes {first.offset}-{records[41].offset}" in err
    assert f"corrupt bytes {second.offset}-{records[121].offset}" in err
    assert "record 40 lost" in err
    assert "record 120 lost" in err
    assert "accepts only a torn tail" in err


def test_accept_damaged_tail_never_turns_a_failing_recording_into_a_pass(tmp_path, capsys):
    failing = _tamper_command(DATA / FTSTS_GOLDEN, tmp_path / "f.nlrec", 30, amplitude=250.0)
    assert replay_cli.main(["verify", str(failing)]) == 1
    capsys.readouterr()
    records = read_recording(failing).records
    early = next(r for r in records if r.payload.get("tick") == 5)
    damaged = _flip(failing, tmp_path / "fd.nlrec", early.offset + 25)
    assert replay_cli.main(["verify", str(damaged), "--accept-damaged-tail"]) != 0
    assert "damaged region" in capsys.readouterr().err
    # damage in the last frame (not a torn tail: the file is complete but its bytes are wrong)
    last_damaged = _flip(failing, tmp_path / "fl.nlrec", records[-1].offset + 20)
    assert replay_cli.main(["verify", str(last_damaged), "--accept-damaged-tail"]) != 0


def test_info_lists_every_damaged_region_and_the_intact_records(tmp_path, capsys):
    src = rewrite_recording(DATA / FTSTS_GOLDEN, tmp_path / "v2.nlrec")
    records = read_recording(src).records
    bad = _flip(src, tmp_path / "bad1.nlrec", records[10].offset + 1)
    bad = _flip(bad, tmp_path / "bad2.nlrec", records[-1].offset + 30)
    capsys.readouterr()  # the writer's log lines
    assert replay_cli.main(["info", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert info["intact_records"] == len(records) - 2
    regions = [(r["kind"], r["start"], r["end"], r["lost"]) for r in info["damaged_regions"]]
    assert regions == [
        ("corrupt", records[10].offset, records[11].offset, [10, 10]),
        ("corrupt", records[-1].offset, src.stat().st_size, None),
    ]
    assert "2 damaged region(s)" in captured.err
    assert replay_cli.main(["info", str(bad)]) == 2
    assert f"corrupt bytes {records[10].offset}-{records[11].offset}" in capsys.readouterr().out


def test_mid_file_damage_of_a_v1_recording_is_found_by_resynchronising(tmp_path, capsys):
    src = DATA / FTSTS_GOLDEN
    assert src.read_bytes()[6] == 1  # the goldens are format version 1
    records = read_recording(src).records
    victim = records[len(records) // 2]
    bad = _flip(src, tmp_path / "bad.nlrec", victim.offset + 20)
    rec = read_recording(bad)
    assert [r.index for r in rec.records] == [r.index for r in records if r is not victim]
    (region,) = rec.tail.regions
    lost = (victim.index, victim.index)
    assert (region.start, region.kind, region.lost) == (victim.offset, "corrupt", lost)
    assert replay_cli.main(["verify", str(bad), "--accept-damaged-tail"]) == 2
    assert "CRC-32" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "Expected a NeuroLoop recording"),
        (b"not a recording at all", "Expected a NeuroLoop recording"),
        (b"NLREC\x00\x09\x00", "Expected recording format version in [1, 2]"),
    ],
)
def test_not_a_recording_exits_2_naming_what_was_expected(tmp_path, capsys, content, message):
    path = tmp_path / "x.nlrec"
    path.write_bytes(content)
    assert replay_cli.main(["verify", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_recording_that_is_not_a_controller_session_exits_2(tmp_path, capsys):
    dst = rewrite_recording(
        DATA / FTSTS_GOLDEN,
        tmp_path / "m.nlrec",
        meta=lambda m: {k: v for k, v in m.items() if k != "envelope"},
    )
    assert replay_cli.main(["verify", str(dst)]) == 2
    assert "missing ['envelope']" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path, capsys):
    assert replay_cli.main(["verify", str(tmp_path / "none.nlrec")]) == 2
    assert "Expected a readable recording" in capsys.readouterr().err


# ------------------------------------------------------------------------- format v1


V1_FIXTURE = DATA / "v1_sim_constant.nlrec"
#: The v1 fixture is frozen: a regenerated file would no longer prove old files still read.
V1_SHA256 = hashlib.sha256(V1_FIXTURE.read_bytes()).hexdigest() if V1_FIXTURE.exists() else ""


def test_v1_fixture_is_format_version_1_and_still_verifies():
    assert V1_FIXTURE.read_bytes()[:8] == b"NLREC\x00\x01\x00"
    session = load_session(V1_FIXTURE)
    assert session.header.format_version == 1
    assert session.tail.clean
    assert len(session.ticks) == 50
    assert verify(V1_FIXTURE).passed


def test_v1_fixture_bytes_are_pinned():
    pinned = (DATA / "v1_sim_constant.sha256").read_text().split()[0]
    assert pinned == V1_SHA256


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("charge_delivered", 1.0),
        ("clamps", {"ramp_up": 3}),
        ("ticks", 59),
        ("latch_time_ms", 500.0),
        ("deadline_misses", 3),
    ],
)
def test_summary_totals_must_match_the_replay(tmp_path, key, value):
    def transform(record: Record) -> dict[str, Any]:
        return {**record.payload, key: value} if record.kind == "summary" else record.payload

    dst = rewrite_recording(DATA / FTSTS_GOLDEN, tmp_path / "s.nlrec", transform=transform)
    report = verify(dst)
    [mismatch] = report.rerun.mismatches
    assert (mismatch.tick, mismatch.record, mismatch.field) == (None, "summary", key)
    assert mismatch.expected == value


def test_nan_observation_is_held_by_the_replayed_envelope_not_passed_on(tmp_path):
    """Recorded NaN observations (ticks 5-7) replay as holds, then a latched invalid streak."""

    def transform(record: Record) -> dict[str, Any]:
        p = record.payload
        if record.kind == "observation" and 5 <= p["tick"] <= 7:
            return {**p, "fields": {**p["fields"], "synchrony": math.nan}}
        return p

    shutil.copytree(DATA / "bundle_mlp", tmp_path / "bundle_mlp")
    dst = rewrite_recording(DATA / BUNDLE_GOLDEN, tmp_path / BUNDLE_GOLDEN, transform=transform)
    report = verify(dst)
    first = report.rerun.mismatches[0]
    assert (first.tick, first.record, first.field) == (5, "action", "presence")
    held = next(m for m in report.rerun.mismatches if m.tick == 6 and m.field == "reasons")
    assert held.got == ["invalid_observation"]
    assert report.rerun.end_reason == "invalid_streak"
    assert report.rerun.counts["reject"] == {"invalid_observation": 3}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    tick=st.integers(min_value=0, max_value=59),
    field=st.sampled_from(["amplitude", "frequency_hz", "pulse_width_us"]),
    relative=st.floats(min_value=1e-8, max_value=0.5),
)
def test_any_changed_command_value_is_caught_at_its_tick(tick, field, relative):
    """Property: perturb one recorded setpoint value by more than the tolerance → FAIL there."""
    with tempfile.TemporaryDirectory() as tmp:
        golden = load_session(DATA / FTSTS_GOLDEN)
        original = golden.ticks[tick].command["setpoint"][field]
        changed = original * (1.0 + relative) if original else relative
        dst = _tamper_command(DATA / FTSTS_GOLDEN, Path(tmp) / "p.nlrec", tick, **{field: changed})
        report = verify(dst)
    assert not report.passed
    first = report.rerun.mismatches[0]
    assert (first.tick, first.record, first.field) == (tick, "command", f"setpoint.{field}")
    assert first.expected == changed
    assert first.got == original


def test_a_run_that_never_started_verifies_with_its_error_noted(tmp_path):
    meta = load_session(DATA / FTSTS_GOLDEN).meta
    path = tmp_path / "e.nlrec"
    with RecordingWriter(path, meta) as w:
        w.record("run_error", {"exit_code": 3, "error": "Expected a backend, actual none"})
    report = verify(path)
    assert report.passed
    assert report.rerun.ticks == 0
    assert any("exited with code 3" in note for note in report.notes)
    # Without the run_error record, a header-only file is an incomplete session.
    bare = tmp_path / "bare.nlrec"
    RecordingWriter(bare, meta).close()
    assert [v.invariant for v in verify(bare).violations] == ["sequence"]
