"""SerialStimulator against the emulator over real ptys and loopback TCP (no hardware)."""

from __future__ import annotations

import gc
import math
import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core.errors import (
    ConfigError,
    DeviceError,
    DeviceIOError,
    DeviceTimeoutError,
    SafetyFaultError,
    SafetyLimitError,
)
from drivers.device_caps import FirmwareConfig
from drivers.envelope import DeviceEnvelope
from drivers.messages import DeviceState, FaultBits, StopReason
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import ToyNetwork, running_emulator, wait_until
from drivers.tissue import Tissue, TissueTransfer, make_network
from protocol.observables import SENSED_FIELDS

#: Generous reply timeout: these tests are about behaviour, not timing, on a loaded machine.
ACK_S = 0.1

ENV = DeviceEnvelope(
    ramp_up_ua_per_s=2000,
    ramp_down_ua_per_s=5000,
    soft_start_ms=100,
    lease_max_ms=500,
    watchdog_ms=300,
    safe_stop_ms=200,
)


def test_handshake_arm_stimulate_over_pty_with_real_network() -> None:
    tissue = Tissue(make_network(160, 40), TissueTransfer(), window_ms=20.0, seed=3)
    with (
        running_emulator(tissue=tissue) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv,
    ):
        caps = drv.handshake()
        assert caps.boot_id == emu.snapshot().boot_id
        armed = drv.arm(ENV)
        assert armed.envelope_hash == ENV.hash()
        wait_until(lambda: drv.status() is not None and drv.status().sense_valid == 1, 2.0,
                   "a STATUS with sensed features")  # fmt: skip
        before = drv.status()
        assert before is not None
        assert before.features()["charge_mv_ms"] == 0.0
        drv.set_stimulation(
            amplitude_ua=2500.0, pulse_width_us=100.0, frequency_hz=83.3, lease_ms=300
        )

        def delivering() -> bool:
            drv.heartbeat(300)
            st = drv.status()
            return st is not None and st.amp_ua == 2500 and st.features()["charge_mv_ms"] > 0

        wait_until(delivering, 5.0, "full amplitude and charge sensed in the tissue")
        st = drv.status()
        assert st is not None
        assert st.state == DeviceState.STIMULATING
        assert st.freq_dhz == 833
        assert st.pw_us == 100
        assert st.charge_nc == 250
        feats = st.features()
        assert set(feats) == set(SENSED_FIELDS)  # STATUS v2: what an implant measures, only
        assert 0.0 <= feats["units_synchrony"] <= 1.0
        assert feats["lfp_band_uv2"] > 0.0
        assert feats["lfp_peak_hz"] > 0.0
        assert st.t_tissue_ms > before.t_tissue_ms
        drv.stop()

        def off() -> bool:
            drv.heartbeat(300)
            st = drv.status()
            return st is not None and st.amp_ua == 0 and st.features()["charge_mv_ms"] == 0.0

        wait_until(off, 5.0, "output and sensed charge back to zero")
        assert drv.stimulation_stopped
        health = drv.health()
        assert health["link_ok"]
        assert health["timeouts"] == 0
        assert health["bad_frames"] == 0


def _features(drv: SerialStimulator) -> dict[str, float]:
    st = drv.status()
    return st.features() if st is not None else {}


def test_socket_url_and_toy_tissue_respond_to_stimulation() -> None:
    tissue = Tissue(ToyNetwork(), window_ms=10.0)
    with running_emulator(tcp=True, tissue=tissue) as emu:
        assert emu.port.url.startswith("socket://127.0.0.1:")
        with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
            drv.handshake()
            drv.arm(ENV)
            wait_until(lambda: bool(_features(drv)), 2.0, "sensed features")
            assert _features(drv)["units_synchrony"] > 0.6
            drv.set_stimulation(
                amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=200
            )

            def desynchronised() -> bool:
                drv.heartbeat(200)
                return _features(drv).get("units_synchrony", 1.0) < 0.3

            wait_until(desynchronised, 5.0, "synchrony to fall under stimulation")
        # close() ramped the output down before releasing the link.
        wait_until(lambda: emu.snapshot().amp_ua == 0, 2.0, "output off after close")


def test_host_side_rejects_outside_envelope_before_sending() -> None:
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        with pytest.raises(DeviceError, match="Expected an armed device"):
            drv.set_stimulation(
                amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=200
            )
        drv.arm(ENV)
        sent = drv.counters["frames_tx"]
        with capture_logs() as logs:
            with pytest.raises(
                SafetyLimitError, match=re.escape("Expected amp_ua in [1, 3500], actual 4000")
            ):
                drv.set_stimulation(
                    amplitude_ua=4000, pulse_width_us=90, frequency_hz=130, lease_ms=200
                )
            with pytest.raises(
                SafetyLimitError, match=re.escape("Expected lease_ms in [50, 500], actual 900")
            ):
                drv.set_stimulation(
                    amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=900
                )
            with pytest.raises(
                SafetyLimitError, match=re.escape("Expected pw_us in [0, 65535], actual -5")
            ):
                drv.set_stimulation(
                    amplitude_ua=0, pulse_width_us=-5, frequency_hz=130, lease_ms=200
                )
            with pytest.raises(
                SafetyLimitError, match=re.escape("Expected amp_ua in [0, 65535], actual -3")
            ):
                drv.set_stimulation(
                    amplitude_ua=-3, pulse_width_us=90, frequency_hz=130, lease_ms=200
                )
        assert drv.counters["frames_tx"] == sent  # nothing reached the wire
        assert [e["event"] for e in logs] == ["driver_setpoint_rejected"] * 4
        drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=200)
        with pytest.raises(SafetyLimitError, match="pulse-width step in \\[0, 10\\] µs, actual 30"):
            drv.set_stimulation(
                amplitude_ua=1000, pulse_width_us=120, frequency_hz=130, lease_ms=200
            )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_setpoint_is_a_fault_and_stops(bad: float) -> None:
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)
        drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=300)
        wait_until(lambda: emu.snapshot().amp_ua > 0, 2.0, "output on")
        with capture_logs() as logs, pytest.raises(SafetyFaultError, match="Expected a finite"):
            drv.set_stimulation(amplitude_ua=bad, pulse_width_us=90, frequency_hz=130, lease_ms=300)
        assert logs[0]["event"] == "driver_fault_non_finite"
        assert emu.snapshot().target_amp_ua == 0  # the STOP went out; output ramps down
        assert drv.commanded is None


def test_loop_url_without_device_times_out_after_bounded_retries() -> None:
    with SerialStimulator("loop://", ack_timeout_s=0.01) as drv:
        with pytest.raises(DeviceTimeoutError, match=re.escape("within 3 × 10 ms, actual none")):
            drv.handshake()
        assert drv.counters["retransmits"] == 2
        assert not drv.link_ok


def test_spy_url_hexdumps_the_traffic(tmp_path: Path) -> None:
    dump = tmp_path / "spy.txt"
    with running_emulator() as emu:
        with SerialStimulator(f"spy://{emu.port.url}?file={dump}", ack_timeout_s=ACK_S) as drv:
            drv.handshake()
        text = dump.read_text()
    assert "TX" in text
    assert "RX" in text


def test_bad_urls_and_settings_are_clear_errors() -> None:
    with pytest.raises(DeviceIOError, match="Cannot open serial URL '/dev/does-not-exist'"):
        SerialStimulator("/dev/does-not-exist")
    with pytest.raises(
        ConfigError, match=re.escape("Expected ack_timeout_s in (0, 10.0], actual -1")
    ):
        SerialStimulator("loop://", ack_timeout_s=-1)


def test_close_is_idempotent_and_unclosed_driver_warns() -> None:
    with running_emulator() as emu:
        drv = SerialStimulator(emu.port.url, ack_timeout_s=ACK_S)
        drv.handshake()
        drv.close()
        drv.close()
        with pytest.raises(DeviceError, match="Expected an open stimulator, actual closed"):
            drv.handshake()
        leaked = SerialStimulator(emu.port.url, ack_timeout_s=ACK_S)
        with pytest.warns(ResourceWarning, match="was not closed"):
            leaked.__del__()
        leaked.close()
        del leaked
        gc.collect()


def test_estop_is_immediate_and_needs_rearm() -> None:
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)
        drv.set_stimulation(amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=300)
        wait_until(lambda: emu.snapshot().amp_ua > 100, 2.0, "output ramping up")
        drv.estop()
        snap = emu.snapshot()
        assert snap.amp_ua == 0
        assert snap.state == DeviceState.DISARMED
        assert snap.fault_bits & FaultBits.ESTOP
        with pytest.raises(DeviceError, match="Expected an armed device"):
            drv.set_stimulation(
                amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=300
            )
        drv.arm(ENV)  # explicit re-ARM clears the latch
        assert emu.snapshot().fault_bits == FaultBits.NONE


def test_hardware_estop_is_reported_to_the_host() -> None:
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)
        drv.set_stimulation(amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=300)
        wait_until(lambda: emu.snapshot().amp_ua > 100, 2.0, "output on")
        emu.request_hardware_estop()
        wait_until(lambda: bool(drv.faults), 2.0, "a FAULT frame")
        assert drv.faults[0].new_bits == FaultBits.ESTOP
        wait_until(lambda: drv.stimulation_stopped, 2.0, "stimulation reported stopped")
        drv.stop(StopReason.HOST_FAULT)  # still answered: the link is fine


def test_tcp_disconnect_is_a_link_down_safe_stop() -> None:
    with running_emulator(tcp=True) as emu:
        drv = SerialStimulator(emu.port.url, ack_timeout_s=ACK_S)
        drv.handshake()
        drv.arm(ENV)
        drv.set_stimulation(amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=500)
        wait_until(lambda: emu.snapshot().amp_ua > 100, 2.0, "output on")
        drv._close_internal()  # the cable goes, no STOP is sent
        drv._closed = True
        wait_until(lambda: bool(emu.snapshot().fault_bits & FaultBits.LINK_DOWN), 2.0, "LINK_DOWN")
        wait_until(lambda: emu.snapshot().amp_ua == 0, 2.0, "output ramped to zero")
        assert emu.snapshot().state == DeviceState.DISARMED


def test_heartbeat_round_trip_count_is_exact() -> None:
    with running_emulator() as emu, SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)
        for _ in range(100):
            drv.heartbeat(200)
        # HELLO + ARM + 100 heartbeats, one frame each plus any retransmission.
        assert drv.counters["frames_tx"] == 102 + drv.counters["retransmits"]
        assert drv.counters["timeouts"] == 0


def test_arm_refused_for_impedance_reaches_the_host_as_nack_then_fault() -> None:
    with (
        running_emulator(firmware=FirmwareConfig(impedance_ohm=9000)) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv,
    ):
        drv.handshake()
        with pytest.raises(DeviceError, match="NACK OUT_OF_RANGE; state DISARMED"):
            drv.arm(ENV)
        wait_until(lambda: bool(drv.faults), 2.0, "a FAULT frame after the NACK")
        fault = drv.faults[0]
        assert (fault.new_bits, fault.fault_bits) == (FaultBits.IMPEDANCE, FaultBits.IMPEDANCE)
        assert fault.state == DeviceState.DISARMED  # the state after the fault
        assert drv.envelope is None
        wait_until(
            lambda: drv.status() is not None and drv.status().fault_bits == FaultBits.IMPEDANCE,
            2.0,
            "the IMPEDANCE latch in STATUS",
        )
