"""The §3.5 fault-injection matrix: one test per row, real ptys, real threads and processes."""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import serial
from structlog.testing import capture_logs

from core.errors import DeviceError, DeviceIOError, DeviceTimeoutError
from drivers.cobs import cobs_encode
from drivers.emulator import DeviceEmulator
from drivers.envelope import DeviceEnvelope
from drivers.faults import FaultConfig
from drivers.firmware import DeviceFirmware
from drivers.framing import Frame, FrameDecoder, crc16_ccitt, decode_block, encode_frame
from drivers.messages import (
    Ack,
    Arm,
    Caps,
    DeviceState,
    FaultBits,
    Heartbeat,
    Hello,
    Nack,
    NackCode,
    SetStim,
    WireMessage,
    decode_message,
)
from drivers.ports import PtyPort
from drivers.serial_stimulator import SerialStimulator
from drivers.testing import running_emulator, wait_until

#: Generous reply timeout where a test is about behaviour, not timing (loaded shared machine).
ACK_S = 0.1

ENV = DeviceEnvelope(
    ramp_up_ua_per_s=2000,
    ramp_down_ua_per_s=5000,
    soft_start_ms=100,
    lease_max_ms=500,
    watchdog_ms=300,
    safe_stop_ms=200,
)


class RawHost:
    """Bypasses the driver entirely: writes hand-made frames to the device's port."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, timeout=0.01, write_timeout=1.0)
        self.decoder = FrameDecoder()
        self.seq = 0

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def send(self, msg: WireMessage, seq: int | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.write(encode_frame(Frame(msg.TYPE, seq, payload=msg.pack())))
        return seq

    def reply(self, seq: int, timeout_s: float = 1.0) -> WireMessage:
        """The next ACK/NACK/CAPS/ARMED answering ``seq`` (STATUS frames are skipped)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frames, _ = self.decoder.feed(self.port.read(4096))
            for frame in frames:
                msg = decode_message(frame)
                if isinstance(msg, (Ack, Nack)) and msg.acked_seq == seq:
                    return msg
                if (
                    not isinstance(msg, (Ack, Nack))
                    and frame.ack == seq
                    and frame.msg_type
                    in (
                        Caps.TYPE,
                        0x11,
                    )
                ):
                    return msg
        raise DeviceTimeoutError(f"Expected a reply to seq {seq} within {timeout_s} s, actual none")

    def arm(self, env: DeviceEnvelope = ENV) -> None:
        assert isinstance(self.reply(self.send(Hello())), Caps)
        assert not isinstance(self.reply(self.send(Arm(env, env.hash()))), Nack)

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def emu() -> Iterator[DeviceEmulator]:
    with running_emulator() as emulator:
        yield emulator


def _stimulating(drv: SerialStimulator, emu: DeviceEmulator, amp_ua: int = 2000) -> None:
    drv.handshake()
    drv.arm(ENV)
    drv.set_stimulation(amplitude_ua=amp_ua, pulse_width_us=90, frequency_hz=130, lease_ms=300)

    def up() -> bool:
        drv.heartbeat(300)
        return emu.snapshot().amp_ua == amp_ua

    wait_until(up, 3.0, f"output at {amp_ua} µA")


def _setpoints(logs: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (e["amp_ua"], e["pw_us"], e["freq_dhz"]) for e in logs if e["event"] == "device_setpoint"
    ]


# ------------------------------------------------------------------------ unplug / vanish
def test_unplug_mid_stimulation_is_link_loss_and_never_restarts(emu: DeviceEmulator) -> None:
    drv = SerialStimulator(emu.port.url, ack_timeout_s=ACK_S)
    try:
        _stimulating(drv, emu)
        emu.request_unplug()
        wait_until(lambda: drv.link_error is not None, 2.0, "the driver to see the link go")
        assert "Serial link lost" in (drv.link_error or "")
        assert drv.stimulation_stopped
        assert emu.snapshot().amp_ua == 0  # no power on the output after the unplug
        assert emu.snapshot().fault_bits & FaultBits.LINK_DOWN
        with pytest.raises(DeviceIOError, match="is down"):
            drv.set_stimulation(
                amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=300
            )
        with pytest.raises(DeviceIOError):
            drv.handshake()  # the port itself is gone: no silent reconnect
    finally:
        drv.close()


# -------------------------------------------------------------------- bit flips / noise
def test_bit_flips_and_garbage_bursts_never_apply_a_wrong_setpoint() -> None:
    faults = FaultConfig(rx_bit_error_rate=1e-4, tx_bit_error_rate=1e-4, garbage_prob=0.05)
    with (
        running_emulator(faults=faults, seed=11) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv,
    ):
        drv.handshake()
        drv.arm(ENV)
        sent: set[tuple[object, ...]] = set()
        counts = emu.faults.counts
        n_sent = 0
        with capture_logs() as logs:
            # at least 150 commands, and more until both faults have happened: about 2.4 inbound
            # flips are expected in 150 commands, so none at all would happen in one run in ten
            # (how the port chunks the bytes decides the draws)
            while n_sent < 150 or (
                n_sent < 600 and not (counts["rx_bits_flipped"] and counts["garbage_bursts"])
            ):
                amp = 500 + 10 * (n_sent % 50)
                cmd = drv.set_stimulation(
                    amplitude_ua=amp, pulse_width_us=90, frequency_hz=130, lease_ms=300
                )
                sent.add((cmd.amp_ua, cmd.pw_us, cmd.freq_dhz))
                n_sent += 1
        applied = _setpoints(logs)
        assert len(applied) == n_sent  # every command applied exactly once
        assert set(applied) <= sent  # and never a value the host did not send
        assert emu.faults.counts["rx_bits_flipped"] > 0
        assert emu.faults.counts["garbage_bursts"] > 0
        assert emu.snapshot().bad_frames > 0  # the device dropped damaged frames (CRC/COBS)
        assert drv.counters["bad_frames"] > 0  # and so did the host
        assert drv.counters["retransmits"] > 0
        assert drv.link_ok


def test_device_resyncs_after_garbage_and_stray_zeros(emu: DeviceEmulator) -> None:
    host = RawHost(emu.port.url)
    try:
        host.write(bytes([0x00, 0x13, 0x00, 0x00, 0xFF, 0x42, 0x99, 0x00]) * 8)
        assert isinstance(host.reply(host.send(Hello())), Caps)
        assert emu.snapshot().bad_frames > 0
    finally:
        host.close()


# ------------------------------------------------------------- partial / oversized frames
def test_partial_frame_then_silence_ends_in_lease_safe_stop(emu: DeviceEmulator) -> None:
    host = RawHost(emu.port.url)
    try:
        host.arm()
        host.reply(host.send(SetStim(0, 1000, 90, 1300, 0, 200)))
        wait_until(lambda: emu.snapshot().amp_ua > 0, 2.0, "output on")
        heartbeat = encode_frame(Frame(Heartbeat.TYPE, host.seq + 1, payload=Heartbeat(200).pack()))
        host.write(heartbeat[: len(heartbeat) // 2])  # half a frame, then nothing
        wait_until(lambda: emu.snapshot().state == DeviceState.DISARMED, 3.0, "safe stop done")
        snap = emu.snapshot()
        assert snap.amp_ua == 0
        assert snap.fault_bits & (FaultBits.LEASE | FaultBits.WATCHDOG)
    finally:
        host.close()


def test_oversized_frame_is_dropped_and_the_device_keeps_working(emu: DeviceEmulator) -> None:
    host = RawHost(emu.port.url)
    try:
        with capture_logs() as logs:
            host.write(b"\x55" * 1000 + b"\x00")
            assert isinstance(host.reply(host.send(Hello())), Caps)
        bad = [e for e in logs if e["event"] == "device_bad_frame"]
        assert bad[0]["code"] == "oversized"
        # A frame whose len field lies (CRC-valid, so only the length check can catch it).
        host.seq += 1
        body = struct.pack("<BBBHHIB", 1, SetStim.TYPE, 0, host.seq, 0, 0, 40) + bytes(11)
        with capture_logs() as logs:
            host.write(cobs_encode(body + struct.pack("<H", crc16_ccitt(body))) + b"\x00")
            host.seq -= 1  # that seq was never accepted: the frame was dropped
            assert isinstance(host.reply(host.send(Hello())), Caps)
        assert [e["code"] for e in logs if e["event"] == "device_bad_frame"] == ["bad_len"]
    finally:
        host.close()


def test_host_decoder_survives_partial_and_oversized_frames_from_the_device(
    emu: DeviceEmulator,
) -> None:
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)
        status = encode_frame(Frame(0x50, 1, payload=bytes(10)))
        emu.inject_raw(status[:7] + b"\x00" + b"\x33" * 700 + b"\x00")
        wait_until(lambda: drv.counters["bad_frames"] >= 2, 2.0, "both bad frames reported")
        for _ in range(5):
            drv.heartbeat(200)
        assert drv.link_ok


# ----------------------------------------------------------------- duplicates / reorder
def test_duplicated_and_reordered_replies_are_harmless() -> None:
    faults = FaultConfig(duplicate_prob=0.4, reorder_prob=0.3)
    with (
        running_emulator(faults=faults, seed=5) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv,
    ):
        drv.handshake()
        drv.arm(ENV)
        with capture_logs() as logs:
            for i in range(60):
                drv.set_stimulation(
                    amplitude_ua=1000 + i, pulse_width_us=90, frequency_hz=130, lease_ms=300
                )
        assert len(_setpoints(logs)) == 60  # one application per command
        assert emu.faults.counts["duplicated"] > 0
        assert emu.faults.counts["reordered"] > 0
        assert drv.counters["late_replies"] > 0
        assert emu.snapshot().target_amp_ua == 1059


def test_duplicate_is_reacked_and_reordered_command_is_stale(emu: DeviceEmulator) -> None:
    host = RawHost(emu.port.url)
    try:
        host.arm()
        seq = host.send(SetStim(0, 800, 90, 1300, 0, 300))
        assert isinstance(host.reply(seq), Ack)
        with capture_logs() as logs:
            host.send(SetStim(0, 800, 90, 1300, 0, 300), seq=seq)  # replayed frame
            assert isinstance(host.reply(seq), Ack)
        assert _setpoints(logs) == []  # re-ACKed, not re-applied
        # Reorder: seq+2 arrives before seq+1.
        late = host.send(SetStim(0, 900, 90, 1300, 0, 300), seq=seq + 2)
        reply = host.reply(late)
        assert isinstance(reply, Nack)
        assert reply.code == NackCode.STALE
        assert emu.snapshot().target_amp_ua == 800
    finally:
        host.close()


def _raw_reply(host: RawHost, seq: int, timeout_s: float = 2.0) -> bytes:
    """The wire bytes (delimiter included) of the next ACK/NACK answering ``seq``."""
    deadline = time.monotonic() + timeout_s
    pending = b""
    while time.monotonic() < deadline:
        pending += host.port.read(4096)
        *blocks, pending = pending.split(b"\x00")
        for block in blocks:
            if not block:
                continue
            msg = decode_message(decode_block(block))
            if isinstance(msg, (Ack, Nack)) and msg.acked_seq == seq:
                return block + b"\x00"
    raise DeviceTimeoutError(f"Expected a reply to seq {seq} within {timeout_s} s, actual none")


def test_duplicate_reply_is_the_same_bytes_on_the_wire(emu: DeviceEmulator) -> None:
    host = RawHost(emu.port.url)
    try:
        host.arm()
        for cmd in (SetStim(0, 800, 90, 1300, 0, 300), SetStim(0, 9000, 90, 1300, 0, 300)):
            seq = host.send(cmd)
            first = _raw_reply(host, seq)
            time.sleep(0.05)  # STATUS frames go out in between
            host.send(cmd, seq=seq)
            assert _raw_reply(host, seq) == first, cmd
        assert emu.snapshot().target_amp_ua == 800
    finally:
        host.close()


def test_status_stays_fresh_however_far_the_device_seq_runs_ahead(emu: DeviceEmulator) -> None:
    """Hours of STATUS frames without a host command: the u16 seq order must not wrap."""
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)  # armed, output off: the device stays armed through host silence

        def jump(now: float) -> None:
            emu.firmware._tx_seq = (emu.firmware._tx_seq + 20_000) & 0xFFFF

        def jumped_and_seen() -> None:
            seen = drv.status()
            emu.request(jump)
            wait_until(lambda: drv.status() is not seen, 2.0, "a STATUS after the jump")

        for _ in range(4):  # 4 × 20 000 frames ≈ 27 minutes of STATUS at 50 Hz
            jumped_and_seen()
        emu.request_hardware_estop()  # no host command in between

        def reported() -> bool:
            status = drv.status()
            return status is not None and bool(status.fault_bits & FaultBits.ESTOP)

        wait_until(reported, 2.0, "the ESTOP latch in a STATUS")
        assert drv.counters["stale_status"] == 0


def test_driver_resyncs_after_a_stale_nack(emu: DeviceEmulator) -> None:
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(ENV)
        drv._tx_seq += 5  # as if frames had been lost and reordered on the way
        with capture_logs() as logs:
            drv.set_stimulation(
                amplitude_ua=1200, pulse_width_us=90, frequency_hz=130, lease_ms=300
            )
        assert "driver_resync" in [e["event"] for e in logs]
        assert emu.snapshot().target_amp_ua == 1200


# -------------------------------------------------------------------------------- delays
def test_delay_past_the_lease_safe_stops_the_device(emu: DeviceEmulator) -> None:
    drv = SerialStimulator(emu.port.url, ack_timeout_s=ACK_S)
    try:
        _stimulating(drv, emu)
        emu.faults.configure(rx_delay_ms=600.0)  # every host frame now arrives too late
        with pytest.raises(DeviceTimeoutError, match="Expected a reply to HEARTBEAT"):
            drv.heartbeat(300)
        assert not drv.link_ok
        assert drv.stimulation_stopped
        wait_until(lambda: emu.snapshot().state == DeviceState.DISARMED, 3.0, "safe stop done")
        snap = emu.snapshot()
        assert snap.amp_ua == 0
        assert snap.fault_bits & (FaultBits.LEASE | FaultBits.WATCHDOG)
    finally:
        drv.close()


def test_jitter_both_ways_never_double_applies() -> None:
    faults = FaultConfig(delay_ms=15.0, rx_delay_ms=10.0)  # 25 ms round trip > 20 ms timeout
    with (
        running_emulator(faults=faults) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=0.02) as drv,
    ):
        drv.handshake()
        drv.arm(ENV)
        with capture_logs() as logs:
            for i in range(20):
                drv.set_stimulation(
                    amplitude_ua=1000 + 10 * i, pulse_width_us=90, frequency_hz=130, lease_ms=300
                )
        assert len(_setpoints(logs)) == 20  # retransmissions were re-ACKed, not re-applied
        assert drv.counters["retransmits"] > 0
        assert drv.link_ok
        assert emu.snapshot().target_amp_ua == 1190


# --------------------------------------------------------------------------- slow acks
def test_slow_acks_cause_one_retransmit_and_no_double_apply() -> None:
    faults = FaultConfig(ack_delay_ms=30.0)
    with (
        running_emulator(faults=faults) as emu,
        SerialStimulator(emu.port.url, ack_timeout_s=0.02) as drv,
    ):
        drv.handshake()
        drv.arm(ENV)
        before = drv.counters["retransmits"]
        with capture_logs() as logs:
            for i in range(10):
                drv.set_stimulation(
                    amplitude_ua=1000 + 100 * i, pulse_width_us=90, frequency_hz=130, lease_ms=300
                )
        retransmits = drv.counters["retransmits"] - before
        assert retransmits >= 10  # every command was retransmitted at least once
        assert len(_setpoints(logs)) == 10  # but applied exactly once
        # Every retransmission reached the device as a recognised duplicate.
        assert sum(e["event"] == "device_duplicate" for e in logs) == retransmits
        assert emu.snapshot().target_amp_ua == 1900


# ------------------------------------------------------------------------- device reset
def test_device_reset_is_detected_and_never_resumed(emu: DeviceEmulator) -> None:
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        _stimulating(drv, emu)
        old_boot = emu.snapshot().boot_id
        with capture_logs() as logs:
            emu.request_reset()
            wait_until(lambda: drv.device_reset is not None, 2.0, "reset detected")
            assert drv.stimulation_stopped
            with pytest.raises(DeviceError, match="Expected an armed device"):
                drv.set_stimulation(
                    amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=300
                )
            time.sleep(0.2)
        snap = emu.snapshot()
        assert snap.boot_id != old_boot
        assert snap.state == DeviceState.DISARMED
        assert snap.amp_ua == 0
        assert _setpoints(logs) == []  # nothing was re-sent behind the operator's back
        assert "driver_device_reset" in [e["event"] for e in logs]
        # Only an explicit handshake + arm brings it back.
        assert drv.handshake().boot_id == snap.boot_id
        drv.arm(ENV)
        drv.set_stimulation(amplitude_ua=500, pulse_width_us=90, frequency_hz=130, lease_ms=300)


# ----------------------------------------------------------------- out-of-range commands
@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        (SetStim(0, 5000, 90, 1300, 0, 300), NackCode.OUT_OF_RANGE),  # amp > armed max
        (SetStim(0, 1000, 90, 1300, 0, 5000), NackCode.OUT_OF_RANGE),  # lease > lease_max
        (SetStim(0, 3000, 100, 1300, 0, 300), NackCode.CHARGE_LIMIT),  # 300 nC > q_max 250
        (SetStim(0, 1000, 120, 1300, 0, 300), NackCode.SLEW_LIMIT),  # +30 µs in one step
    ],
)
def test_device_refuses_out_of_range_with_host_checks_bypassed(
    emu: DeviceEmulator, cmd: SetStim, code: NackCode
) -> None:
    env = DeviceEnvelope(q_max_nc=250, lease_max_ms=500, watchdog_ms=500)
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        drv.arm(env)
        drv.set_stimulation(amplitude_ua=1000, pulse_width_us=90, frequency_hz=130, lease_ms=300)
        with pytest.raises(DeviceError, match=f"NACK {code.name}") as info:
            drv._set_stimulation_internal(cmd)  # the protected hook: no host-side checks
        assert info.value.error_code == code
        assert emu.snapshot().target_amp_ua == 1000  # previous setpoint kept


def test_device_refuses_an_envelope_beyond_absolute_caps(emu: DeviceEmulator) -> None:
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        drv.handshake()
        wide = DeviceEnvelope(amp_max_ua=10_000, pw_max_us=450, q_max_nc=9000)
        with pytest.raises(DeviceError, match="NACK OUT_OF_RANGE") as info:
            drv._arm_internal(wide)
        assert info.value.error_code == NackCode.OUT_OF_RANGE
        assert emu.snapshot().state == DeviceState.CONFIGURED


# -------------------------------------------------------------------- host crash (kill -9)
_DRIVER_SCRIPT = """
import sys, time
from drivers.envelope import DeviceEnvelope
from drivers.serial_stimulator import SerialStimulator
from core.logs import configure_logging
configure_logging("json", "warning")  # logs to stderr; stdout carries the handshake line
env = DeviceEnvelope(ramp_up_ua_per_s=2000, ramp_down_ua_per_s=5000, soft_start_ms=100,
               lease_max_ms=500, watchdog_ms=300, safe_stop_ms=200)
drv = SerialStimulator(sys.argv[1], ack_timeout_s=0.1)
drv.handshake()
drv.arm(env)
drv.set_stimulation(amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=250)
announced = False
while True:
    drv.heartbeat(250)
    st = drv.status()
    if not announced and st is not None and st.amp_ua == 2000:
        print("STIMULATING", flush=True)
        announced = True
    time.sleep(0.02)
"""


def test_sigkill_of_the_driver_process_stops_within_watchdog_plus_ramp(
    emu: DeviceEmulator,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER_SCRIPT, emu.port.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready, "the driver process did not start stimulating within 30 s"
        assert proc.stdout.readline().strip() == b"STIMULATING"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: emu.snapshot().output_off_s is not None, 3.0, "output off")
        wait_until(lambda: emu.snapshot().state == DeviceState.DISARMED, 3.0, "DISARMED")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    snap = emu.snapshot()
    assert snap.fault_bits & (FaultBits.LEASE | FaultBits.WATCHDOG)  # latched
    assert snap.amp_ua == 0
    assert snap.output_off_s is not None
    # On the emulator's own clock: off within W + safe-stop ramp of the host's last frame,
    # allowing for the loop's worst scheduling gap (measured, not assumed).
    budget_s = (ENV.watchdog_ms + ENV.safe_stop_ms) / 1000.0 + 2 * snap.max_tick_gap_s
    assert snap.output_off_s - snap.last_valid_rx_s <= budget_s


# ------------------------------------------------------------------- hardware monitors
@pytest.mark.parametrize("bits", [FaultBits.OVERCURRENT, FaultBits.IMPEDANCE])
def test_hardware_monitor_trip_safe_stops_latches_and_is_reported(
    emu: DeviceEmulator, bits: FaultBits
) -> None:
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S) as drv:
        _stimulating(drv, emu)
        emu.request_fault(bits)
        wait_until(lambda: bool(drv.faults), 2.0, "a FAULT frame at the host")
        assert drv.faults[0].new_bits == bits
        wait_until(lambda: emu.snapshot().state == DeviceState.DISARMED, 2.0, "safe stop done")
        assert emu.snapshot().amp_ua == 0
        wait_until(lambda: drv.stimulation_stopped, 2.0, "host reports stimulation stopped")
        with pytest.raises(DeviceError, match="NACK NOT_ARMED"):
            drv.set_stimulation(
                amplitude_ua=2000, pulse_width_us=90, frequency_hz=130, lease_ms=300
            )


# ----------------------------------------------------------------------- silent device
def test_device_going_silent_is_link_loss(emu: DeviceEmulator) -> None:
    with SerialStimulator(emu.port.url, ack_timeout_s=ACK_S, link_timeout_s=0.3) as drv:
        _stimulating(drv, emu)
        emu.faults.configure(drop_prob=1.0)  # the device's transmitter dies
        wait_until(lambda: not drv.link_ok, 3.0, "silence detected")
        assert "Expected a frame within 0.3 s" in (drv.link_error or "")
        assert drv.stimulation_stopped
        # The device hears nothing more either; its lease ends the stimulation.
        wait_until(lambda: emu.snapshot().amp_ua == 0, 3.0, "device stopped by its lease")


# -------------------------------------------------------------------- broken device port
class _BreakablePty(PtyPort):
    broken = False

    def read(self, fd: int) -> bytes | None:
        if self.broken:
            raise DeviceIOError("pty read failed: injected")
        return super().read(fd)


def test_emulator_survives_a_failing_port_and_stops_the_output() -> None:
    port = _BreakablePty()
    emu = DeviceEmulator(port, DeviceFirmware(now_s=time.monotonic()), tick_ms=1.0).start()
    try:
        with SerialStimulator(port.url, ack_timeout_s=ACK_S) as drv:
            _stimulating(drv, emu)
            port.broken = True
            with pytest.raises((DeviceIOError, DeviceTimeoutError)):
                drv.heartbeat(300)  # the device's read fails: it drops the line
            wait_until(lambda: emu.unplugged, 2.0, "the emulator to release the port")
            wait_until(lambda: emu.snapshot().amp_ua == 0, 2.0, "output off")
            assert emu.snapshot().fault_bits & FaultBits.LINK_DOWN
            wait_until(lambda: drv.link_error is not None, 2.0, "link loss at the host")
    finally:
        emu.close()
