"""The device behind the ZeroMQ protocol: SerialBackend, neuroloop-driver and the emulator CLI."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core.errors import ConfigError, SafetyFaultError, SafetyLimitError
from drivers.bridge import OBSERVATION_FIELDS, SerialBackend, device_envelope
from drivers.device_caps import FirmwareConfig
from drivers.emulator import DeviceEmulator
from drivers.envelope import DeviceEnvelope
from drivers.messages import DeviceState, FaultBits
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import ToyNetwork, ToyWindow, running_emulator, wait_until
from drivers.tissue import Tissue
from protocol.client import BackendClient
from protocol.envelope.config import load_envelope, validate
from protocol.envelope.wire import envelope_from_wire
from protocol.messages import Observation
from protocol.observables import unobservable
from protocol.process import spawn_local_backend
from protocol.schema import WireEnvelope
from protocol.server import BackendServer
from simulator.stimulus import Stimulus

BIN = Path(sys.executable).parent

# The controller's physical envelope (protocol/envelope/defaults/device.toml) with the fastest
# ramps and the shortest soft start the floors allow, as sent on the wire.
RULES = validate(
    replace(
        load_envelope("device"), amplitude_up_per_s=2.0, amplitude_down_per_s=5.0, soft_start_s=1.0
    )
)
WIRE_ENV = RULES.to_wire()
STIM = {"amplitude_ma": 1.0, "frequency_hz": 130.0, "pulse_width_us": 90.0}


def ramp_to(client: BackendClient, stim: dict[str, float], period_ms: float = 100.0) -> Observation:
    """Off for one period, then up at the envelope's 2 mA/s: what the governor would send."""
    obs = client.step(None, period_ms)
    amp, target = 0.0, stim["amplitude_ma"]
    while amp < target:
        amp = min(target, amp + RULES.amplitude_up_per_s * period_ms / 1000.0)
        obs = client.step({**stim, "amplitude_ma": amp}, period_ms)
    return obs


def test_device_envelope_conversion_rounds_to_the_safe_side() -> None:
    env = device_envelope(envelope_from_wire(WIRE_ENV), control_period_ms=100.0, safe_stop_ms=200)
    assert env == DeviceEnvelope(
        amp_min_ua=0,
        amp_max_ua=3500,
        pw_min_us=60,
        pw_max_us=120,
        freq_min_dhz=600,
        freq_max_dhz=1850,
        q_max_nc=1800,
        area_mm2_x100=600,
        d_max_nc_per_mm2=300,
        ramp_up_ua_per_s=2000,
        ramp_down_ua_per_s=5000,
        freq_step_dhz=200,
        pw_step_us=10,
        lease_max_ms=250,
        watchdog_ms=300,
        soft_start_ms=1000,
        safe_stop_ms=200,
        gap_us=0,
        margin_us=100,
    )
    odd = replace(
        RULES,
        amplitude_min=0.0005,
        amplitude_max=2.0009,
        frequency_min_hz=60.04,
        frequency_max_hz=185.06,
        pulse_width_min_us=60.5,
        pulse_width_max_us=120.5,
        amplitude_up_per_s=0.0105,
        soft_start_s=1.0001,
        interphase_gap_us=10.2,
        recharge_margin_us=100.5,
    )
    env = device_envelope(odd, 100.0)
    assert (env.amp_min_ua, env.amp_max_ua) == (1, 2000)
    assert (env.freq_min_dhz, env.freq_max_dhz) == (601, 1850)
    assert (env.pw_min_us, env.pw_max_us) == (61, 120)
    assert (env.ramp_up_ua_per_s, env.soft_start_ms) == (10, 1001)
    assert (env.gap_us, env.margin_us) == (11, 101)


def test_wire_envelope_with_a_missing_or_unknown_value_is_refused_not_defaulted() -> None:
    extra = dict(WIRE_ENV.extra)
    del extra["frequency_step_hz"]
    with pytest.raises(ConfigError, match=r"missing \['frequency_step_hz'\]"):
        envelope_from_wire(WireEnvelope.build(WIRE_ENV.limits, extra))
    with pytest.raises(ConfigError, match=r"unknown \['q_max_uc'\]"):
        envelope_from_wire(WireEnvelope.build(WIRE_ENV.limits, {**WIRE_ENV.extra, "q_max_uc": 1.0}))
    zero_step = {**WIRE_ENV.extra, "pulse_width_step_us": 0.0}
    with pytest.raises(ConfigError, match=r"pulse_width_step_us in \[1, 60\]"):
        envelope_from_wire(WireEnvelope.build(WIRE_ENV.limits, zero_step))


def test_device_gets_every_limit_the_controller_set() -> None:
    """Steps, widths and the duty margin of the controller's envelope reach the device."""
    strict = validate(
        replace(RULES, frequency_step_hz=5.0, pulse_width_step_us=2.0, recharge_margin_us=5200.0)
    )
    env = device_envelope(strict, control_period_ms=100.0)
    assert (env.freq_step_dhz, env.pw_step_us, env.margin_us) == (50, 2, 5200)
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=0.1) as drv:
        drv.handshake()
        drv.arm(env)
        assert emu.firmware.envelope == env  # the device holds exactly these limits
        # 120 µs at 185 Hz: 2·120 + 5200 µs > 5405 µs, a duty breach of this envelope.
        with pytest.raises(SafetyLimitError, match="margin_us 5200"):
            drv.set_stimulation(
                amplitude_ua=500, pulse_width_us=120, frequency_hz=185.0, lease_ms=200
            )
        drv.set_stimulation(amplitude_ua=500, pulse_width_us=90, frequency_hz=130.0, lease_ms=200)
        with pytest.raises(SafetyLimitError, match="frequency step"):
            drv.set_stimulation(
                amplitude_ua=500, pulse_width_us=90, frequency_hz=150.0, lease_ms=200
            )  # 130 → 150 Hz
        with pytest.raises(SafetyLimitError, match="pulse-width step"):
            drv.set_stimulation(
                amplitude_ua=500, pulse_width_us=100, frequency_hz=130.0, lease_ms=200
            )  # 90 → 100 µs


@contextmanager
def served(
    emu: DeviceEmulator, step_mode: str = "window", link_timeout_s: float = 0.5
) -> Iterator[tuple[BackendClient, SerialBackend]]:
    driver = SerialStimulator(emu.port.url, ack_timeout_s=0.1, link_timeout_s=link_timeout_s)
    driver.handshake()
    backend = SerialBackend(driver, session_timeout_s=2.0, step_mode=step_mode)
    server = BackendServer(backend, "tcp://127.0.0.1:*", poll_interval_s=0.01)
    endpoint = server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(stop,), daemon=True)
    thread.start()
    client = BackendClient(endpoint, timeout_s=5.0)
    try:
        yield client, backend
    finally:
        client.close()
        stop.set()
        thread.join(5.0)
        server.close()


def test_protocol_session_drives_the_device_and_senses_the_tissue() -> None:
    tissue = Tissue(ToyNetwork(), window_ms=10.0)
    with running_emulator(tissue=tissue) as emu, served(emu) as (client, _):
        welcome = client.hello()
        assert welcome.backend_kind == "serial"
        names = ("amplitude_ma", "frequency_hz", "pulse_width_us")
        assert welcome.capabilities.param_names == names
        client.configure(WIRE_ENV, control_period_ms=100.0)
        assert emu.snapshot().state == DeviceState.ARMED_IDLE
        client.reset()
        obs = client.step(None, 100.0)
        assert set(obs.fields) == set(OBSERVATION_FIELDS)
        assert not unobservable(obs.fields)  # a device senses only what an implant measures
        assert "weight_mv" not in welcome.capabilities.observation_fields
        assert obs.fields["delivered_amplitude_ma"] == 0.0
        sync_off = obs.fields["units_synchrony"]
        beta_off = obs.fields["lfp_beta_uv2"]
        obs = ramp_to(client, STIM)
        for _ in range(30):  # the device's own soft start lags the commands
            obs = client.step(STIM, 100.0)
            if obs.fields["delivered_amplitude_ma"] == 1.0:
                break
        assert obs.applied == STIM
        assert obs.fields["delivered_amplitude_ma"] == 1.0
        assert obs.fields["delivered_charge_uc"] == 0.09
        assert obs.fields["units_synchrony"] < sync_off  # the tissue responded
        assert obs.fields["lfp_beta_uv2"] < beta_off
        assert emu.snapshot().state == DeviceState.STIMULATING
        client.stop()
        wait_until(lambda: emu.snapshot().amp_ua == 0, 3.0, "output ramped off after stop")
        client.bye()


def test_out_of_envelope_step_is_refused_and_stops() -> None:
    with running_emulator(tissue=Tissue(ToyNetwork())) as emu, served(emu) as (client, _):
        client.hello()
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()
        ramp_to(client, STIM)
        with pytest.raises(SafetyLimitError, match="configured envelope"):
            client.step({**STIM, "amplitude_ma": 4.0}, 100.0)
        assert client.last_error is not None
        assert client.last_error.stopped
        wait_until(lambda: emu.snapshot().target_amp_ua == 0, 2.0, "output commanded off")


def test_lease_too_long_for_loss_of_contact_is_refused() -> None:
    with running_emulator() as emu, served(emu) as (client, _):
        client.hello()
        match = r"lease_periods × control period in \[50, 500\]"
        with pytest.raises(SafetyLimitError, match=match):
            client.configure(WIRE_ENV, control_period_ms=1000.0)  # 2.5 periods = 2.5 s lease


def test_device_reset_mid_session_is_a_fault_until_reconfigured() -> None:
    with running_emulator(tissue=Tissue(ToyNetwork())) as emu, served(emu) as (client, backend):
        client.hello()
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()
        ramp_to(client, STIM)
        emu.request_reset()
        wait_until(lambda: backend.driver.envelope is None, 2.0, "reset detected by the driver")
        with pytest.raises(SafetyFaultError, match="device reset"):
            client.step(STIM, 100.0)
        assert emu.snapshot().amp_ua == 0
        with pytest.raises(SafetyFaultError, match="configure to re-arm"):
            client.reset()
        client.configure(WIRE_ENV, control_period_ms=100.0)  # explicit re-arm
        client.reset()
        ramp_to(client, STIM)
        obs = client.step(STIM, 100.0)
        assert obs.fields["delivered_amplitude_ma"] > 0.0


class FlakySensorNetwork(ToyNetwork):
    """A toy tissue whose sensor reports an unrepresentable value once ``broken`` is set."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.broken = False

    def advance(self, stimulus: Stimulus | None, duration_ms: float) -> ToyWindow:
        window = super().advance(stimulus, duration_ms)
        if self.broken:
            window.values["lfp_band_uv2"] = self.value
        return window


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 1e9], ids=str)
def test_an_unrepresentable_sensed_value_is_an_invalid_block_and_a_backend_fault(
    value: float,
) -> None:
    """Nothing is clamped: the device marks the block invalid, the bridge stops stimulation."""
    network = FlakySensorNetwork(value)
    with (
        running_emulator(tissue=Tissue(network, window_ms=10.0)) as emu,
        served(emu) as (client, backend),
    ):
        client.hello()
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()
        assert client.step(None, 100.0).fields["lfp_band_uv2"] > 0.0

        def invalid_block() -> bool:
            status = backend.driver.status()
            return status is not None and status.sense_valid == 0

        with capture_logs() as logs:
            network.broken = True
            wait_until(invalid_block, 2.0, "a STATUS with an invalid sensed block")
        invalid = next(e for e in logs if e["event"] == "device_sense_invalid")
        assert invalid["feature"] == "lfp_band_uv2"
        assert (
            f"Expected a finite lfp_band_uv2 in [0, 429496.7295], actual {value!r}"
            in (invalid["reason"])
        )
        with pytest.raises(SafetyFaultError, match="sense_valid=0"):
            client.step(None, 100.0)


def test_controller_stall_lets_the_lease_expire() -> None:
    with running_emulator(tissue=Tissue(ToyNetwork())) as emu, served(emu) as (client, _):
        client.hello()
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()
        ramp_to(client, STIM)
        # No step for longer than the lease (250 ms): the device stops on its own.
        wait_until(lambda: bool(emu.snapshot().fault_bits & FaultBits.LEASE), 3.0, "lease fault")
        wait_until(lambda: emu.snapshot().amp_ua == 0, 2.0, "output off")
        with pytest.raises(SafetyFaultError, match="LEASE"):
            client.step(STIM, 100.0)


def test_configure_then_reset_at_once_after_a_latched_fault() -> None:
    """The bridge judges from a STATUS sent after ARM, not from one that still shows the fault."""
    slow_status = FirmwareConfig(status_period_ms=1000)  # no periodic STATUS to hide the bug
    with (
        running_emulator(tissue=Tissue(ToyNetwork()), firmware=slow_status) as emu,
        served(emu, link_timeout_s=5.0) as (client, backend),
    ):
        client.hello()
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()
        ramp_to(client, STIM)

        def fault_seen() -> bool:
            status = backend.driver.status()
            return status is not None and bool(status.fault_bits & FaultBits.LEASE)

        wait_until(fault_seen, 5.0, "a STATUS with the LEASE latch at the driver")
        with pytest.raises(SafetyFaultError):  # NOT_ARMED from the device
            client.step(STIM, 100.0)
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()  # at once: the ARM cleared the latch
        obs = client.step(None, 100.0)
        assert obs.fields["delivered_amplitude_ma"] == 0.0
        assert emu.snapshot().fault_bits == FaultBits.NONE


# ---------------------------------------------------------------------------- processes
def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, f"no output within {timeout_s} s"
    return proc.stdout.readline().decode().strip()


def test_bridge_process_killed_mid_stimulation_device_stops_in_time() -> None:
    tissue = Tissue(ToyNetwork())
    with running_emulator(tissue=tissue) as emu:
        serve = [
            str(BIN / "neuroloop-driver"),
            "serve",
            "--port",
            emu.port.url,
            "--ack-timeout-ms",
            "100",
            "--step-mode",
            "window",  # lockstep: each step lasts its 100 ms
        ]
        proc = spawn_local_backend([*serve, "--log-level", "warning"], "ipc")
        try:
            with BackendClient(proc.address, timeout_s=5.0) as client:
                client.hello()
                client.configure(WIRE_ENV, control_period_ms=100.0)
                client.reset()
                ramp_to(client, STIM)
                for _ in range(30):  # the device's own soft start lags the commands
                    obs = client.step(STIM, 100.0)
                    if obs.fields["delivered_amplitude_ma"] == 1.0:
                        break
                assert emu.snapshot().amp_ua == 1000
                os.kill(proc.pid, signal.SIGKILL)
                proc.popen.wait(10)
        finally:
            proc.stop()
        wait_until(lambda: emu.snapshot().output_off_s is not None, 3.0, "output off")
        wait_until(lambda: emu.snapshot().state == DeviceState.DISARMED, 3.0, "DISARMED")
        snap = emu.snapshot()
        assert snap.fault_bits & (FaultBits.LEASE | FaultBits.WATCHDOG)
        assert snap.output_off_s is not None
        budget_s = (300 + 250) / 1000.0 + 2 * snap.max_tick_gap_s
        assert snap.output_off_s - snap.last_valid_rx_s <= budget_s


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_window_step_sends_stop_before_the_step_ends(sig: signal.Signals) -> None:
    """SIGTERM/SIGINT cut a long lockstep step short: STOP goes out at once, not at its end."""
    step_ms = 2000.0  # the longest step: the old code sent STOP only after it, ≥ 2 s later
    with running_emulator(tissue=Tissue(ToyNetwork())) as emu:
        serve = [str(BIN / "neuroloop-driver"), "serve", "--port", emu.port.url,
                 "--ack-timeout-ms", "100", "--step-mode", "window"]  # fmt: skip
        proc = spawn_local_backend([*serve, "--log-level", "warning"], "ipc")
        errors: list[BaseException] = []
        try:
            with BackendClient(proc.address, timeout_s=10.0) as client:
                client.hello()
                client.configure(WIRE_ENV, control_period_ms=100.0)
                client.reset()
                client.step(None, 500.0)  # 0.5 s off: then 1 mA is within ramp and soft start

                def long_step() -> None:
                    try:
                        client.step(STIM, step_ms)
                    except Exception as err:  # the server goes away mid-step: expected
                        errors.append(err)

                t0 = time.monotonic()  # the step cannot start before this instant
                stepper = threading.Thread(target=long_step, daemon=True)
                stepper.start()
                wait_until(lambda: emu.snapshot().target_amp_ua > 0, 5.0, "the step's SET_STIM")
                os.kill(proc.pid, sig)
                wait_until(lambda: emu.snapshot().target_amp_ua == 0, 10.0, "STOP at the device")
                t_stop = time.monotonic()
                assert proc.popen.wait(10) == 0
                stepper.join(15.0)
                assert errors, "the step must not complete normally"
        finally:
            proc.stop()
        snap = emu.snapshot()
        assert snap.fault_bits == FaultBits.NONE  # a STOP, not the lease running out
        assert snap.state in (DeviceState.STOPPING, DeviceState.ARMED_IDLE)
        assert t_stop - t0 < step_ms / 1000.0  # before the step would have ended
        assert not stepper.is_alive()


def test_emulator_cli_on_tcp_with_probe_and_signals() -> None:
    argv = [str(BIN / "neuroloop-device-emulator"), "--tcp", "0", "--n-e", "160", "--n-i", "40"]
    emu = subprocess.Popen(
        [*argv, "--seed", "4", "--electrode-area-mm2", "7.5", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = _read_line(emu, 60.0)
        assert url.startswith("socket://127.0.0.1:")

        def probe() -> dict[str, object]:
            out = subprocess.run(
                [str(BIN / "neuroloop-driver"), "probe", "--port", url, "--ack-timeout-ms", "100"],
                capture_output=True,
                timeout=30,
                check=True,
            )
            result: dict[str, object] = json.loads(out.stdout)
            return result

        first = probe()
        caps = first["caps"]
        assert isinstance(caps, dict)
        assert caps["amp_max_ua"] == 10_000
        assert caps["area_mm2_x100"] == 750  # the emulated contact, as given
        assert first["state"] == "CONFIGURED"
        features = first["features"]
        assert isinstance(features, dict)
        assert 0.0 <= features["units_synchrony"] <= 1.0
        assert "weight_mv" not in features
        emu.send_signal(signal.SIGUSR1)  # device reset: a new boot id
        wait_until(lambda: probe()["caps"] != caps, 10.0, "a new boot id after SIGUSR1")
        emu.send_signal(signal.SIGTERM)
        assert emu.wait(10) == 0
    finally:
        if emu.poll() is None:
            emu.kill()
            emu.wait(10)


def test_cli_errors_are_clear() -> None:
    out = subprocess.run(
        [str(BIN / "neuroloop-driver"), "probe", "--port", "/dev/nope"],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert b"Cannot open serial URL '/dev/nope'" in out.stderr
    out = subprocess.run(
        [str(BIN / "neuroloop-device-emulator"), "--no-tissue", "--impedance-ohm", "0"],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert b"Expected --impedance-ohm in [1, 65535], actual 0" in out.stderr
    out = subprocess.run(
        [str(BIN / "neuroloop-device-emulator"), "--no-tissue", "--electrode-area-mm2", "0.004"],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert b"Expected --electrode-area-mm2 in [0.01, 655.35] in steps of 0.01" in out.stderr
    help_text = subprocess.run(
        [str(BIN / "neuroloop-driver"), "serve", "--help"], capture_output=True, timeout=30
    ).stdout
    assert b"lease of 2.5 control periods" in help_text


@pytest.mark.parametrize("how", ["SIGUSR2 unplug", "SIGKILL"])
def test_emulator_process_vanishing_is_link_loss_at_the_driver(how: str) -> None:
    emu = subprocess.Popen(
        [str(BIN / "neuroloop-device-emulator"), "--no-tissue", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = _read_line(emu, 60.0)
        assert path.startswith("/dev/")
        with SerialStimulator(path, ack_timeout_s=0.1) as drv:
            drv.handshake()
            drv.arm(DeviceEnvelope(lease_max_ms=500, soft_start_ms=1))
            drv.set_stimulation(
                amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=300
            )
            if how == "SIGKILL":
                emu.kill()
            else:
                emu.send_signal(signal.SIGUSR2)
            wait_until(lambda: drv.link_error is not None, 5.0, "link loss at the driver")
            assert drv.stimulation_stopped
            assert drv.device_reset is None  # a vanished device is not a reset
    finally:
        if emu.poll() is None:
            emu.send_signal(signal.SIGTERM)
            emu.wait(10)


def test_latest_step_mode_returns_at_once_and_senses_the_tissue() -> None:
    """A real-time controller paces the loop itself: a step must not block for its duration."""
    tissue = Tissue(ToyNetwork(), window_ms=10.0)
    with running_emulator(tissue=tissue) as emu, served(emu, "latest") as (client, _):
        client.hello()
        client.configure(WIRE_ENV, control_period_ms=100.0)
        client.reset()
        t0 = time.monotonic()
        obs = client.step(None, 100.0)
        assert time.monotonic() - t0 < 0.09  # a window-mode step takes at least 100 ms
        sync_off = obs.fields["units_synchrony"]
        beta_off = obs.fields["lfp_beta_uv2"]
        amp = 0.0
        for _ in range(60):  # the controller's own pacing: one step per 100 ms, 2 mA/s ramp
            time.sleep(0.1)
            amp = min(1.0, amp + 0.2)
            obs = client.step({**STIM, "amplitude_ma": amp}, 100.0)
            if obs.fields["delivered_amplitude_ma"] == 1.0:
                break
        assert obs.fields["delivered_amplitude_ma"] == 1.0
        for _ in range(3):  # keep stepping within the 250 ms lease: sensing catches up
            time.sleep(0.1)
            obs = client.step(STIM, 100.0)
        assert obs.fields["units_synchrony"] < sync_off  # the tissue responded
        assert obs.fields["lfp_beta_uv2"] < beta_off
        assert obs.t_model_ms > 500.0  # wall-clock time since reset
        client.stop()
        client.bye()
    with pytest.raises(ValueError, match="Expected step_mode in"):
        SerialBackend(object(), step_mode="sometimes")  # type: ignore[arg-type]
