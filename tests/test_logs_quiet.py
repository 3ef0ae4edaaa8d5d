"""Logs people read: repeated events folded, numbers readable, warnings only for what is wrong,
one clear line per error.
"""

from __future__ import annotations

import json
import socket

import pytest
import structlog
from structlog.testing import capture_logs

from controller.cli import main
from controller.envelope.governor import SafetyGovernor
from core.logs import configure_logging
from drivers.device_caps import FirmwareConfig
from drivers.envelope import DeviceEnvelope
from drivers.firmware import DeviceFirmware
from drivers.framing import Frame
from drivers.messages import Arm, SetStim, WireMessage
from drivers.messages import Hello as DeviceHello
from protocol.codec import pack, unpack_reply
from protocol.envelope.config import load_envelope
from protocol.envelope.setpoint import Setpoint
from protocol.loopback import LOOPBACK_WIRE_ENVELOPE, LoopbackBackend
from protocol.messages import Configure, Hello, Reset, Step, Stop, Welcome

T = 0.02


@pytest.fixture(autouse=True)
def _defaults():
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def info_and_up(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["log_level"] != "debug"]


# ------------------------------------------------------------------ envelope clamps, folded


def test_a_ramp_is_one_line_when_it_starts_and_one_when_it_ends():
    gov = SafetyGovernor(load_envelope("simulator"), T)
    target = Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0)
    with capture_logs() as logs:
        gov.arm(0.0)
        gov.idle(0.0)  # the first tick is off, as in the loop
        for k in range(1, 15):
            gov.command(target, k * T)
        gov.flush_log()
    ramp = [e for e in info_and_up(logs) if e.get("reason") == "ramp_up"]
    assert [e["event"] for e in ramp] == ["envelope_clamp", "envelope_clamp_end"]
    assert ramp[0]["applied"] == 20.0
    assert ramp[1]["ticks"] == 4
    assert ramp[1]["last_applied"] == 80.0
    # Every tick is still counted (the summary) and visible at debug level.
    assert gov.counts["ramp_up"] == 4
    assert len([e for e in logs if e.get("reason") == "ramp_up"]) == 5


def test_a_clamp_episode_still_open_at_a_fault_is_closed_before_the_fault():
    gov = SafetyGovernor(load_envelope("simulator"), T)
    with capture_logs() as logs:
        gov.arm(0.0)
        for k in range(1, 4):
            gov.command(
                Setpoint(amplitude=100.0, frequency_hz=1000.0 / 12.0, pulse_width_us=1000.0), k * T
            )
        gov.fault("deadline_2t", "Expected the observation within 2·T")
    events = [e["event"] for e in info_and_up(logs)]
    assert events.index("envelope_clamp_end") < events.index("envelope_fault")


def test_device_ramp_numbers_are_rounded_for_people():
    gov = SafetyGovernor(load_envelope("device"), T)
    with capture_logs() as logs:
        gov.arm(0.0)
        for k in range(1, 40):
            gov.command(Setpoint(amplitude=1.0, frequency_hz=130.0, pulse_width_us=90.0), k * T)
        gov.flush_log()
    numbers = [
        e[key]
        for e in logs
        for key in ("requested", "applied", "last_requested", "last_applied")
        if key in e
    ]
    assert numbers
    assert all(repr(x) == repr(float(f"{x:.6g}")) for x in numbers), numbers


def test_console_logs_show_six_significant_digits_and_json_keeps_them_exact(capsys):
    configure_logging("console", "info")
    structlog.get_logger().info(
        "probe", value=0.060000000000000005, detail="actual 0.1 → 0.30000000000000004"
    )
    err = capsys.readouterr().err
    assert "value=0.06" in err
    assert "0.3'" in err or "0.3 " in err or err.rstrip().endswith("0.3")
    assert "0.060000000000000005" not in err
    assert "0.30000000000000004" not in err
    configure_logging("json", "info")
    structlog.get_logger().info("probe", value=0.060000000000000005)
    assert json.loads(capsys.readouterr().err)["value"] == 0.060000000000000005


# ------------------------------------------------------------- warnings only for what is wrong


def _loopback_session() -> tuple[LoopbackBackend, str, list]:
    backend = LoopbackBackend()
    calls = [0]

    def send(request):
        calls[0] += 1
        _rid, reply = unpack_reply(backend.handle(b"peer", pack(calls[0], request)))
        return reply

    welcome = send(Hello("test"))
    assert isinstance(welcome, Welcome)
    sid = welcome.session_id
    send(Configure(sid, 20.0, LOOPBACK_WIRE_ENVELOPE, {}))
    send(Reset(sid, 1))
    send(Step(sid, None, 100.0))  # off first: the envelope's soft start
    on = {"amplitude_mv": 2.0, "frequency_hz": 130.0, "pulse_width_us": 60.0}
    send(Step(sid, on, 20.0))
    return backend, sid, [send]


def test_a_client_stop_after_a_completed_run_is_info_not_a_warning():
    backend, sid, (send,) = _loopback_session()
    assert backend.stimulating
    with capture_logs() as logs:
        send(Stop(sid, "completed"))
    stopped = [e for e in logs if e["event"] == "stimulation_stopped"]
    assert len(stopped) == 1
    assert stopped[0]["log_level"] == "info"
    assert not [e for e in logs if e["log_level"] in ("warning", "error")]


def test_a_session_timeout_while_stimulating_is_still_a_warning():
    backend, _sid, _ = _loopback_session()
    backend.session_timeout_s = 0.01
    backend._last_seen_s -= 1.0  # the client went silent
    with capture_logs() as logs:
        backend.check_timeout()
    stopped = [e for e in logs if e["event"] == "stimulation_stopped"]
    assert [e["log_level"] for e in stopped] == ["warning"]


def test_the_emulated_device_logs_setpoints_at_debug_only():
    fw = DeviceFirmware(FirmwareConfig(), seed=1, now_s=0.0)
    env = DeviceEnvelope(ramp_up_ua_per_s=2000, ramp_down_ua_per_s=4000, soft_start_ms=500)
    seq = 0

    def send(msg: WireMessage, now_s: float) -> None:
        nonlocal seq
        seq += 1
        fw.handle(Frame(msg.TYPE, seq, payload=msg.pack()), now_s)

    send(DeviceHello(), 0.0)
    send(Arm(env, env.hash()), 0.0)
    with capture_logs() as logs:
        for k in range(500):  # 10 s of 20 ms ticks
            send(SetStim(0, 1000, 90, 1300, 0, 200), 0.001 + k * T)
    setpoints = [e for e in logs if e["event"] == "device_setpoint"]
    assert len(setpoints) == 500
    assert all(e["log_level"] == "debug" for e in setpoints)
    assert len(info_and_up(logs)) <= 3  # the state change to STIMULATING, not one per tick


# --------------------------------------------------------------------------- one clear error


def test_a_misspelt_key_names_file_section_key_and_the_closest_key_once(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[controller]\nperiod_mss = 20\n")
    assert main(["--config", str(cfg), "--no-record"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: [controller] has no key 'period_mss'. Did you mean period_ms?" in err
    assert len(err.strip().splitlines()) == 1


def test_a_misspelt_network_parameter_is_named_in_its_section_once(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[controller]\nin_process = true\n[simulator]\nn_ee = 80\nn_i = 20\n")
    assert main(["--config", str(cfg), "--no-record"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: [simulator] has no key 'n_ee'. Did you mean n_e?" in err
    assert "NetworkConfig" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unreachable_backend_is_one_line_naming_the_address(capsys):
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    args = ["--connect", address, "--timeout-s", "0.5", "--no-record", "--log-level", "warning"]
    assert main(args) == 3
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert address in lines[0]
    assert "not running, wrong address" in lines[0]
    assert "stop_not_acknowledged" not in err


def test_a_misspelt_backend_option_is_refused_with_the_closest_option():
    backend = LoopbackBackend()
    _rid, welcome = unpack_reply(backend.handle(b"peer", pack(1, Hello("test"))))
    configure = Configure(welcome.session_id, 20.0, LOOPBACK_WIRE_ENVELOPE, {"spikes_per_stp": 1})
    _rid, reply = unpack_reply(backend.handle(b"peer", pack(2, configure)))
    assert reply.code == "bad_config"
    assert "actual unknown ['spikes_per_stp']. Did you mean spikes_per_step?" in reply.message
