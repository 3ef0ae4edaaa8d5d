"""``neuroloop-controller`` end to end: arguments, recording, summary, SIGTERM, real server."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog

from controller.cli import main
from protocol.envelope.config import load_envelope
from protocol.recording import read_recording

SIM = load_envelope("simulator")
SMALL = "[simulator]\nn_e = 80\nn_i = 20\n"


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """CLI runs configure structlog (level filter); every test starts from the defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_commands_inside_envelope(records) -> int:
    commands = [r.payload for r in records if r.kind == "command"]
    for c in commands:
        sp = c["setpoint"]
        assert 0.0 <= sp["amplitude"] <= SIM.amplitude_max
        assert SIM.frequency_min_hz <= sp["frequency_hz"] <= SIM.frequency_max_hz
        assert SIM.pulse_width_min_us <= sp["pulse_width_us"] <= SIM.pulse_width_max_us
        assert sp["amplitude"] * sp["pulse_width_us"] / 1000.0 <= SIM.charge_per_phase_max + 1e-9
    return len(commands)


def test_help_teaches_units_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--policy", "ftsts", "mV", "mA", "--pace", "exit codes", "examples"):
        assert needle in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period-ms", "-5"], "Expected period_ms in [1.0, 10000.0], actual -5.0"),
        (["--policy", "constant"], "Expected --amplitude (mV) for --policy constant"),
        (["--policy", "constant", "--amplitude", "500"], "Expected --amplitude in [0.0, 200.0] mV"),
        (["--policy", "nonsense"], "Expected --policy in ['off', 'constant', 'ftsts', 'ftsts-"),
        (["--backend", "serial", "--pace", "fast"], "fast is for the simulator and replays only"),
        (
            ["--backend", "sim", "x.nlrec"],
            "Expected a SESSION recording only with --backend replay",
        ),
        (["--envelope", "/nonexistent.toml"], "readable envelope TOML file"),
        (["--rt-priority", "0"], "Expected a SCHED_FIFO priority in [1, 99], actual 0"),
        (["--rt-priority", "5", "--in-process"], "Expected no --rt-priority with --in-process"),
        (
            ["--backend", "serial", "--policy", "ftsts", "--connect", "ipc:///x"],
            "Expected policy 'ftsts' to read only fields an implant can measure on the serial "
            "backend, actual unobservable ['weight_mv']; measurable fields: ['charge_mv_ms',",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args, message, capsys):
    code, _out, err = run_main([*args, "--no-record"], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_serial_without_connect_fails_clearly(capsys):
    args = ["--backend", "serial", "--policy", "off", "--no-record", "--envelope", "device"]
    code, _out, err = run_main(args, capsys)
    assert code == 3
    assert "Expected --connect ADDR" in err
    assert "Traceback" not in err


def test_replay_without_session_or_connect_fails_clearly(capsys):
    code, _out, err = run_main(["--backend", "replay", "--policy", "off", "--no-record"], capsys)
    assert code == 2
    assert "Expected --backend replay SESSION (a recording to serve) or --connect ADDR" in err
    assert "Traceback" not in err


def test_bad_config_file_is_named(tmp_path, capsys):
    cfg = write(tmp_path, "[controller]\nperiod_ms = 'fast'\n")
    code, _, err = run_main(["--config", str(cfg)], capsys)
    assert code == 2
    assert f"{cfg}: [controller] period_ms: expected a float, actual 'fast'" in err
    cfg = write(tmp_path, "[controler]\n")
    code, _, err = run_main(["--config", str(cfg)], capsys)
    assert code == 2
    assert "actual unknown ['controler']. Did you mean controller?" in err
    cfg = write(tmp_path, "[controller]\nperiod_ms = -5\n")
    code, _, err = run_main(["--config", str(cfg)], capsys)
    assert code == 2
    assert f"{cfg}: [controller] period_ms: Expected period_ms in [1.0, 10000.0]" in err
    assert err.count("period_ms: Expected") == 1  # printed once


def test_in_process_run_records_every_tick_and_writes_the_summary(tmp_path, capsys):
    cfg = write(tmp_path, "[controller]\nin_process = true\npace = 'fast'\n" + SMALL)
    rec = tmp_path / "run.nlrec"
    code, out, err = run_main(
        [
            "--config",
            str(cfg),
            "--policy",
            "ftsts",
            "--onset-ms",
            "200",
            "--duration",
            "1",
            "--record",
            str(rec),
            "--log-level",
            "warning",
        ],
        capsys,
    )
    assert code == 0, err
    assert "NeuroLoop controller run summary" in out
    assert "synchrony R during" in out
    recording = read_recording(rec)
    assert recording.tail.clean
    assert recording.header.meta["envelope_hash"] == SIM.sha256()
    assert assert_commands_inside_envelope(recording.records) == 50
    kinds = {r.kind for r in recording.records}
    assert {"command", "observation", "action", "timing", "stop", "summary"} <= kinds
    summary = json.loads((tmp_path / "run.nlrec.summary.json").read_text())
    assert summary["ticks"] == 50
    assert summary["end_reason"] == "completed"
    assert summary["clamps"]["ramp_up"] == 4
    assert summary["synchrony"]["before"]["windows"] == 10
    assert summary["charge_delivered"] > 0


def test_no_record_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path, "[controller]\nin_process = true\npace = 'fast'\n" + SMALL)
    code, out, _ = run_main(
        [
            "--config",
            str(cfg),
            "--policy",
            "off",
            "--duration",
            "0.2",
            "--no-record",
            "--log-level",
            "warning",
        ],
        capsys,
    )
    assert code == 0
    assert "ticks (period)" in out
    assert not (tmp_path / "runs").exists()


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_mid_run_stops_stimulation_and_leaves_a_readable_recording(tmp_path):
    cfg = write(tmp_path, "[backend.options]\nn_scale = 0.05\n")
    rec = tmp_path / "term.nlrec"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "--config",
            str(cfg),
            "--policy",
            "constant",
            "--amplitude",
            "80",
            "--duration",
            "60",
            "--record",
            str(rec),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: rec.exists() and rec.stat().st_size > 20_000, 60.0)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 5, err[-2000:]
    recording = read_recording(rec)
    assert recording.tail.clean
    stops = [r.payload for r in recording.records if r.kind == "stop"]
    assert stops == [{"reason": "estop_sigterm"}]
    assert assert_commands_inside_envelope(recording.records) > 10
    on = [r.payload["setpoint"]["amplitude"] for r in recording.records if r.kind == "command"]
    assert max(on) == pytest.approx(80.0)
    summary = json.loads(Path(str(rec) + ".summary.json").read_text())
    assert summary["end_reason"] == "estop_sigterm"
    # The local simulator server was stopped too.
    pids = [int(m) for m in re.findall(r'"sim_server_started".*?"pid": (\d+)', err)]
    pids += [int(m) for m in re.findall(r'"pid": (\d+).*?"sim_server_started"', err)]
    assert pids
    for pid in pids:
        assert _wait_for(lambda pid=pid: not _alive(pid), 10.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_end_to_end_against_the_simulator_server_subprocess(tmp_path):
    cfg = write(
        tmp_path,
        "[controller]\npace = 'fast'\nduration_s = 3.0\n[backend.options]\nn_scale = 0.1\n",
    )
    rec = tmp_path / "e2e.nlrec"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "--backend",
            "sim",
            "--config",
            str(cfg),
            "--policy",
            "ftsts",
            "--onset-ms",
            "500",
            "--record",
            str(rec),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NeuroLoop controller run summary" in proc.stdout
    recording = read_recording(rec)
    assert recording.tail.clean
    assert assert_commands_inside_envelope(recording.records) == 150
    obs = [r.payload for r in recording.records if r.kind == "observation"]
    assert obs[-1]["t_model_ms"] == pytest.approx(3000.0)
    assert all(math.isfinite(o["fields"]["synchrony"]) for o in obs)
    summary = json.loads(Path(str(rec) + ".summary.json").read_text())
    assert summary["backend"].startswith("sim (SimulatorBackend)")
    r = summary["synchrony"]
    assert r["before"]["windows"] == 25
    assert r["during"]["windows"] == 125
    assert r["during"]["mean_r"] < r["before"]["mean_r"]
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            json.loads(line)  # --log-format json: every log line is JSON


def test_command_line_overrides_the_config_file_which_overrides_defaults(tmp_path):
    from controller.config import RunConfig, load_run_config, merge

    cfg = write(tmp_path, "[controller]\nperiod_ms = 10\nduration_s = 2\n[policy]\nname = 'off'\n")
    merged = merge(load_run_config(cfg), {"period_ms": 50.0, "duration_s": None, "policy": None})
    assert merged.period_ms == 50.0  # flag beats file
    assert merged.duration_s == 2.0  # file beats default
    assert merged.policy == "off"
    assert merged.seed == RunConfig().seed  # default


def test_simulator_table_without_in_process_is_refused(tmp_path, capsys):
    cfg = write(tmp_path, SMALL)
    code, _, err = run_main(["--config", str(cfg), "--no-record"], capsys)
    assert code == 2
    assert "Expected a [simulator] table only with in_process = true" in err


def test_exit_hook_stops_the_backend_when_the_process_exits(tmp_path):
    code = (
        "from controller.estop import EStop\n"
        "e = EStop()\n"
        "e.at_exit(lambda: print('STOPPED AT EXIT', flush=True))\n"
        "raise SystemExit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "STOPPED AT EXIT" in proc.stdout
    code_disarmed = code.replace("raise SystemExit", "e.disarm_exit()\nraise SystemExit")
    proc = subprocess.run(
        [sys.executable, "-c", code_disarmed], capture_output=True, text=True, timeout=60
    )
    assert "STOPPED AT EXIT" not in proc.stdout


def test_existing_recording_is_never_overwritten(tmp_path, capsys):
    cfg = write(tmp_path, "[controller]\nin_process = true\npace = 'fast'\n" + SMALL)
    rec = tmp_path / "keep.nlrec"
    rec.write_bytes(b"precious")
    code, _, err = run_main(
        ["--config", str(cfg), "--policy", "off", "--duration", "0.1", "--record", str(rec)],
        capsys,
    )
    assert code == 2
    assert "keep.nlrec" in err
    assert rec.read_bytes() == b"precious"


def test_record_flag_beats_no_record_in_the_file(tmp_path, capsys):
    cfg = write(
        tmp_path, "[controller]\nin_process = true\npace = 'fast'\nno_record = true\n" + SMALL
    )
    rec = tmp_path / "flag.nlrec"
    code, _, err = run_main(
        [
            "--config",
            str(cfg),
            "--policy",
            "off",
            "--duration",
            "0.1",
            "--record",
            str(rec),
            "--log-level",
            "warning",
        ],
        capsys,
    )
    assert code == 0, err
    assert read_recording(rec).tail.clean


def test_tail_s_ends_the_run_without_stimulation_while_observing(tmp_path, capsys):
    """--tail-s: the policy stops being asked, the envelope ramps off, observations go on."""
    cfg = write(tmp_path, "[controller]\nin_process = true\npace = 'fast'\n" + SMALL)
    rec = tmp_path / "tail.nlrec"
    args = ["--config", str(cfg), "--policy", "constant", "--amplitude", "100",
            "--duration", "1", "--tail-s", "0.4", "--record", str(rec),
            "--log-level", "warning"]  # fmt: skip
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    records = read_recording(rec).records
    commands = [r.payload["setpoint"]["amplitude"] for r in records if r.kind == "command"]
    observations = [r for r in records if r.kind == "observation"]
    assert len(commands) == 50
    assert len(observations) == 50  # the tail is observed and recorded
    assert max(commands[:30]) == 100.0  # the policy acted before the tail
    assert commands[-10:] == [0.0] * 10  # off in the tail, reached by the envelope's ramp
    assert all(a <= b for a, b in zip(commands[30:], commands[29:], strict=False))  # ramps down
    assert any(r.kind == "tail" and r.payload.get("tail_s") == 0.4 for r in records)
    summary = json.loads((tmp_path / "tail.nlrec.summary.json").read_text())
    assert summary["synchrony"]["after"]["windows"] > 0


def test_tail_s_must_leave_the_policy_some_of_the_run(capsys):
    code, _, err = run_main(["--duration", "1", "--tail-s", "1"], capsys)
    assert code == 2
    assert "Expected tail_s < duration_s" in err
