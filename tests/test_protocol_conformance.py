"""The shipped conformance check, run over every backend we ship (real ZeroMQ, real pty).

Each backend is served by the real :class:`~protocol.server.BackendServer` in a thread (or a
process), and :func:`protocol.conformance.check_backend` talks to it over a TCP socket. The
check itself is tested too: backends broken on purpose must fail it, with the right section.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from controller.replay.backend import ReplayBackend
from controller.replay.session import load_session
from drivers.bridge import SerialBackend
from drivers.firmware import DeviceFirmware
from drivers.messages import FaultBits
from drivers.sensing import SENSE_FIELDS
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import ToyNetwork, running_emulator, wait_until
from drivers.tissue import Tissue
from drivers.virtual import VirtualStimulator
from protocol.backend import Backend
from protocol.conformance import AREAS, Report, check_backend
from protocol.conformance.cli import main as check_main
from protocol.conformance.cli import parse_option
from protocol.conformance.context import Context
from protocol.conformance.envelope import derive_envelope, envelope_hash
from protocol.conformance.wire import Peer
from protocol.envelope.monitor import EnvelopeMonitor
from protocol.envelope.setpoint import Setpoint
from protocol.loopback import LoopbackBackend
from protocol.process import spawn_local_backend
from protocol.server import serving
from simulator.server import SimulatorBackend

DATA = Path(__file__).parent / "data" / "replay"
#: A short session timeout keeps the loss-of-contact checks to a few seconds, and still leaves
#: heartbeats (every third of it) a wide margin on a loaded machine.
TIMEOUT_S = 1.0


def served(backend: Backend) -> AbstractContextManager[str]:
    """Serve ``backend`` on a free loopback TCP port in a thread; yield the endpoint."""
    return serving(backend)


def assert_conforms(report: Report) -> None:
    """Every check passed or was skipped; the failures are shown in full otherwise."""
    assert report.ok, report.to_text()
    assert report.counts()["pass"] >= 130, report.to_text(verbose=True)


def failed(report: Report) -> set[str]:
    return {f"{r.area}: {r.name}" for r in report.failures}


def test_envelope_hash_follows_the_test_vector_of_section_12() -> None:
    limits = [
        {"name": "frequency_hz", "unit": "Hz", "role": "frequency", "min": 1.0, "max": 250.0},
        {"name": "amplitude_mv", "unit": "mV", "role": "amplitude", "min": 0.0, "max": 200.0},
    ]
    digest = envelope_hash(limits, {"q_max_uc": 1.8})
    assert digest == "4fe07fbb483605a56e7b8467d7c5ebe49c86fd240466b7418e1cc1ef4600aeb3"


def test_loopback_conforms() -> None:
    with served(LoopbackBackend(session_timeout_s=TIMEOUT_S)) as endpoint:
        report = check_backend(endpoint)
    assert_conforms(report)
    assert report.backend == "loopback/LoopbackBackend"
    sections = {r.section for r in report.results}
    assert {"§5", "§7.3", "§5.1 #6a", "§3.3, §6 envelope_rejected"} <= sections
    assert {r.area for r in report.results} == {
        "handshake",
        "state machine",
        "refusals",
        "envelope",
        "stops",
        "loss of contact",
    }


def test_simulator_conforms() -> None:
    backend = SimulatorBackend(session_timeout_s=TIMEOUT_S)
    backend.warm_up()  # as `neuroloop-sim serve` does before its ready line
    with served(backend) as endpoint:
        report = check_backend(endpoint, options={"n_scale": 0.02}, big_body=False)
    assert_conforms(report)
    assert report.backend == "sim/SimulatorBackend"


@pytest.mark.parametrize("recording", ["sim_ftsts_fast.nlrec", "device_constant_realtime.nlrec"])
def test_replay_conforms(recording: str) -> None:
    backend = ReplayBackend(load_session(DATA / recording), session_timeout_s=TIMEOUT_S)
    with served(backend) as endpoint:
        report = check_backend(endpoint, big_body=False)
    assert_conforms(report)
    assert report.backend == "replay/ReplayBackend"


def test_serial_bridge_with_the_virtual_device_conforms() -> None:
    firmware = DeviceFirmware()
    firmware.sense = dict.fromkeys((f.feature for f in SENSE_FIELDS), 0.5)  # a quiet sensor
    driver = VirtualStimulator(firmware)
    driver.handshake()
    with served(SerialBackend(driver, session_timeout_s=TIMEOUT_S)) as endpoint:
        report = check_backend(endpoint, big_body=False)
    assert_conforms(report)
    assert report.backend == "serial/SerialBackend"


def test_serial_bridge_with_the_emulated_device_over_a_pty_conforms() -> None:
    with running_emulator(tissue=Tissue(ToyNetwork())) as emu:
        driver = SerialStimulator(emu.port.url, ack_timeout_s=0.2, link_timeout_s=0.5)
        driver.handshake()
        try:
            with served(SerialBackend(driver, session_timeout_s=TIMEOUT_S)) as endpoint:
                report = check_backend(endpoint, big_body=False)
        finally:
            driver.close()
    assert_conforms(report)


# ------------------------------------------------- a non-conformance the check found, fixed


def _stimulating_session(ctx: Context) -> tuple[Peer, str]:
    """A session on ``ctx``'s backend with the check's routine stimulus on."""
    p = ctx.peer()
    welcome = p.request("hello", client_name="test")
    ctx.welcome = welcome.body or {}
    ctx.env = derive_envelope(ctx.welcome["capabilities"])
    sid = welcome.get("session_id")
    assert ctx.configure(p, sid).type == "configured"
    assert p.request("reset", session_id=sid, seed=None).type == "status"
    assert ctx.step(p, sid, None).type == "observation"
    assert ctx.step(p, sid, ctx.env.stimulus(ctx.env.amp_on)).type == "observation"
    return p, sid


def test_bridge_status_reports_the_lease_that_lapsed_without_steps() -> None:
    """Heartbeats keep a session but not the device's lease: status must say the output stopped.

    Before the fix the bridge answered ``stimulating: true`` (state running) while the device
    had faulted LEASE and switched its output off.
    """
    firmware = DeviceFirmware()
    firmware.sense = dict.fromkeys((f.feature for f in SENSE_FIELDS), 0.5)
    driver = VirtualStimulator(firmware)
    driver.handshake()
    with served(SerialBackend(driver, session_timeout_s=2.0)) as endpoint:
        ctx = Context(endpoint, 2.0, None, 30.0, Report(endpoint))
        try:
            p, sid = _stimulating_session(ctx)
            assert ctx.status(p, sid).get("stimulating") is True
            wait_until(  # heartbeats keep the session alive, never the device's lease
                lambda: p.request("heartbeat", session_id=sid).get("stimulating") is False,
                3.0,
                "status to report the lapsed lease",
                poll_s=0.05,
            )
            assert firmware.fault_bits & FaultBits.LEASE
            status = ctx.status(p, sid)
            assert status.get("state") == "stopped"
            assert status.get("stimulating") is False
            assert "LEASE" in status.get("stop_reason")
            assert ctx.step(p, sid, None).code == "bad_state"
        finally:
            ctx.close()


class LosesStimulation(LoopbackBackend):
    """A backend whose output stops on its own between steps."""

    lost: str | None = None

    def _stimulation_lost(self) -> str | None:
        return self.lost


def test_stimulation_lost_between_steps_is_a_safe_stop_in_status() -> None:
    backend = LosesStimulation(session_timeout_s=2.0)
    with served(backend) as endpoint:
        ctx = Context(endpoint, 2.0, None, 30.0, Report(endpoint))
        try:
            p, sid = _stimulating_session(ctx)
            status = ctx.status(p, sid)
            assert (status.get("state"), status.get("stimulating")) == ("running", True)
            backend.lost = "output fault"
            status = p.request("heartbeat", session_id=sid)
            assert (status.get("state"), status.get("stimulating")) == ("stopped", False)
            assert status.get("stop_reason") == "output fault"
            assert backend.stop_calls[-1] == "output fault"
        finally:
            ctx.close()


# ----------------------------------------------------------------- the check can fail


class NoEnvelopeBackend(LoopbackBackend):
    """Broken on purpose: checks the ranges but not the envelope's rules (slew, soft start …)."""

    def _check_envelope_rules(
        self, monitor: EnvelopeMonitor, stimulus: Mapping[str, float] | None
    ) -> Setpoint:
        return Setpoint(amplitude=0.0, frequency_hz=0.0, pulse_width_us=0.0)


class NeverTimesOutBackend(LoopbackBackend):
    """Broken on purpose: a silent client keeps its session (and its stimulation)."""

    def check_timeout(self) -> None:
        return None


class SloppyDecodeBackend(LoopbackBackend):
    """Broken on purpose: answers an unknown type with an error without a code."""

    def handle(self, peer: bytes, data: bytes) -> bytes:
        if b"frobnicate" in data:
            return b"\x83\xa1v\x01\xa4type\xa5error\xa2id\x00"  # and not even a valid error
        return super().handle(peer, data)


def test_a_backend_that_skips_the_envelope_rules_fails() -> None:
    with served(NoEnvelopeBackend(session_timeout_s=TIMEOUT_S)) as endpoint:
        report = check_backend(endpoint, areas=("envelope",))
    assert not report.ok
    names = failed(report)
    assert any("first step after reset must be off" in n for n in names), names
    assert any("faster than amplitude_up_per_s" in n for n in names), names
    assert any("(duty)" in n for n in names), names
    text = report.to_text()
    assert "§5.1 #6a" in text
    assert "expected: error limit_exceeded" in text


class OracleDeviceBackend(LoopbackBackend):
    """Broken on purpose: a ``serial`` (device) backend whose observations no implant measures."""

    kind = "serial"


def test_a_device_that_advertises_unobservable_fields_fails() -> None:
    with served(OracleDeviceBackend(session_timeout_s=TIMEOUT_S)) as endpoint:
        report = check_backend(endpoint, areas=(), big_body=False)
    assert failed(report) == {"handshake: a device advertises only measurable observation fields"}
    (result,) = report.failures
    assert result.section == "§3.5"
    assert "unobservable ['amplitude_mv'" in result.got


def test_a_backend_that_never_times_out_fails() -> None:
    with served(NeverTimesOutBackend(session_timeout_s=TIMEOUT_S)) as endpoint:
        report = check_backend(endpoint, areas=("timeouts",))
    assert "loss of contact: silence ends the session with a safe stop" in failed(report)


def test_a_backend_with_a_wrong_error_fails_and_names_the_section() -> None:
    with served(SloppyDecodeBackend(session_timeout_s=TIMEOUT_S)) as endpoint:
        report = check_backend(endpoint, areas=("refusals",), big_body=False)
    assert failed(report) == {"refusals: an unknown type"}
    (result,) = report.failures
    assert result.section == "§2.2, §2.5 #5-11"
    assert "unknown_type" in result.expected


def test_no_backend_at_the_address_is_a_clear_failure_not_a_hang() -> None:
    report = check_backend("tcp://127.0.0.1:9", timeout_s=0.2)
    assert not report.ok
    assert report.failures[0].got.startswith("could not send") or "no reply" in (
        report.failures[0].got
    )


# ----------------------------------------------------------------------------- CLI


def test_cli_checks_a_backend_process_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    cmd = [sys.executable, "-m", "protocol.loopback", "--session-timeout-s", str(TIMEOUT_S)]
    with spawn_local_backend(cmd, "ipc", ready_timeout_s=60.0) as proc:
        code = check_main([proc.address, "--json", "--no-big-body", "--areas", "states"])
        out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["ok"] is True
    assert out["backend"] == "loopback/LoopbackBackend"
    assert out["counts"]["fail"] == 0
    assert {"area", "name", "section", "outcome", "expected", "got"} <= set(out["results"][0])


def test_cli_exit_code_is_1_when_a_check_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with served(NoEnvelopeBackend(session_timeout_s=TIMEOUT_S)) as endpoint:
        code = check_main([endpoint, "--areas", "envelope"])
    out = capsys.readouterr().out
    assert code == 1
    assert "DOES NOT CONFORM" in out
    assert "FAIL" in out


def test_cli_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "neuroloop-check-backend tcp://127.0.0.1:5555",
        "--json",
        "--option",
        "--curve",
        "exit codes",
        "NOT be connected to a patient",
        "Checking a backend",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["tcp://127.0.0.1:5555", "--areas", "states,colours"], "unknown ['colours']"),
        (["not-an-address"], "Expected a ZeroMQ address"),
        (["tcp://127.0.0.1:5555", "--option", "n_scale"], "Expected --option NAME=VALUE"),
        (["tcp://127.0.0.1:5555", "--timeout-s", "0"], "Expected --timeout-s in (0, 3600]"),
        (
            ["tcp://127.0.0.1:5555", "--curve", "nope.key_secret", "nope.key"],
            "Expected readable CURVE key files",
        ),
    ],
)
def test_cli_bad_arguments_exit_2_naming_what_was_expected(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        check_main(argv)
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err


def test_options_are_read_as_int_float_bool_or_text() -> None:
    assert parse_option("n_scale=0.05") == ("n_scale", 0.05)
    assert parse_option("seed=3") == ("seed", 3)
    assert parse_option("verbose=true") == ("verbose", True)
    assert parse_option("semantics=clean") == ("semantics", "clean")
    assert parse_option("network=") == ("network", "")


def test_every_area_is_known() -> None:
    assert AREAS == ("states", "refusals", "envelope", "stops", "timeouts")


def test_the_check_imports_nothing_above_the_protocol_layer(
    fresh_python: Callable[..., str],
) -> None:
    out = fresh_python(
        "import sys, protocol.conformance, protocol.conformance.cli\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'simulator', 'drivers', 'controller', 'fitting'}))"
    )
    assert out == "[]"
