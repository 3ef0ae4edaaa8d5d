"""Device-protocol versions over a real pty: a version-1 peer is refused, naming both versions.

Version 2 changed the STATUS sensed block (``docs/device-protocol.md`` §14). The host says which
version it speaks in HELLO; firmware of another version answers NACK ``BAD_VERSION`` and the
host reports it clearly. A version-1 STATUS that reaches the host anyway is dropped and logged,
never misread.
"""

from __future__ import annotations

import struct
import time

import pytest
from structlog.testing import capture_logs

from core.errors import DeviceError
from drivers.emulator import DeviceEmulator
from drivers.envelope import DeviceEnvelope
from drivers.faults import FaultInjector
from drivers.firmware import DeviceFirmware
from drivers.framing import Frame, FrameFlags, encode_frame
from drivers.messages import NackCode
from drivers.ports import PtyPort
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import ToyNetwork, running_emulator, wait_until
from drivers.tissue import Tissue

ACK_S = 0.1


class VersionOneFirmware(DeviceFirmware):
    """Firmware that speaks device-protocol version 1 (its HELLO check is all that differs)."""

    PROTO_VERSION = 1


def test_a_host_meeting_version_1_firmware_gets_an_error_naming_both_versions() -> None:
    emulator = DeviceEmulator(
        PtyPort(), VersionOneFirmware(now_s=time.monotonic()), None, FaultInjector(seed=0)
    )
    emulator.start()
    try:
        with (
            capture_logs() as logs,
            SerialStimulator(emulator.port.url, ack_timeout_s=ACK_S) as drv,
        ):
            with pytest.raises(DeviceError) as info:
                drv.handshake()
            assert drv.caps is None  # no session, nothing armed
            assert drv.status() is None  # the device sent no STATUS to misread
    finally:
        emulator.close()
    message = str(info.value)
    assert "Expected a device that speaks device-protocol version 2, actual one that refused " \
           "HELLO proto_version 2" in message  # fmt: skip
    assert "NACK BAD_VERSION" in message
    assert info.value.error_code == NackCode.BAD_VERSION
    nack = next(e for e in logs if e["event"] == "device_nack")
    assert nack["reason"] == (
        "Expected proto_version 1 and crc_kind 0, actual proto_version 2 and crc_kind 0"
    )
    assert not emulator.firmware.session_open


def test_a_version_1_status_on_the_line_is_dropped_as_bad_version_and_logged() -> None:
    v1_status = struct.pack(
        "<BIHHHHHHHHIBIHHiIiIiIII", 2, 0, 0, 0, 0, 0, 0, 1000, 0, 0, 1, 1, 20,
        5000, 4000, -65000, 2000, -60000, 1500, 260000, 40000, 60000, 0,
    )  # fmt: skip
    with (
        running_emulator(tissue=Tissue(ToyNetwork(), window_ms=10.0)) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv,
    ):
        drv.handshake()
        drv.arm(DeviceEnvelope())
        wait_until(lambda: bool(drv.status() and drv.status().sense_valid), 2.0, "a sensed STATUS")  # type: ignore[union-attr]
        with capture_logs() as logs:
            emu.inject_raw(
                encode_frame(Frame(0x50, 60_000, payload=v1_status, flags=FrameFlags.FROM_DEVICE))
            )
            wait_until(lambda: drv.counters["bad_frames"] == 1, 2.0, "the v1 STATUS dropped")
        bad = next(e for e in logs if e["event"] == "driver_bad_message")
        assert bad["code"] == "bad_version"
        assert (
            "Expected a STATUS of device-protocol version 2 (56 bytes), actual 66 bytes"
            in (bad["detail"])
        )
        status = drv.status()
        assert status is not None
        assert status.boot_id == emu.snapshot().boot_id  # the v1 bytes were never read as one
        assert "weight_mv" not in status.features()
