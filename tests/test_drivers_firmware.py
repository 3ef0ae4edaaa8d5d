"""Device firmware state machine on a fake clock: every timing rule is exact here."""

from __future__ import annotations

from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from drivers.device_caps import FirmwareConfig
from drivers.envelope import DeviceEnvelope
from drivers.firmware import DeviceFirmware
from drivers.framing import Frame, encode_frame
from drivers.messages import (
    Ack,
    Arm,
    Armed,
    Caps,
    DeviceState,
    EStop,
    Fault,
    FaultBits,
    Heartbeat,
    Hello,
    MsgType,
    Nack,
    NackCode,
    SetStim,
    Status,
    Stop,
    WireMessage,
    decode_message,
)

FAST = DeviceEnvelope(
    ramp_up_ua_per_s=2000,
    ramp_down_ua_per_s=4000,
    soft_start_ms=500,
    lease_max_ms=500,
    watchdog_ms=300,
    safe_stop_ms=200,
)
DT = 0.001


class Host:
    """Drives a firmware instance frame by frame on a fake clock."""

    def __init__(self, fw: DeviceFirmware) -> None:
        self.fw = fw
        self.seq = 0
        self.now = 0.0
        self.out: list[tuple[Frame, WireMessage]] = []

    def send(self, msg: WireMessage, seq: int | None = None) -> WireMessage:
        if seq is None:
            self.seq = (self.seq + 1) & 0xFFFF
            seq = self.seq
        frames = self.fw.handle(Frame(msg.TYPE, seq, payload=msg.pack()), self.now)
        decoded = [(f, decode_message(f)) for f in frames]
        self.out += decoded
        return decoded[0][1]

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / DT)):
            self.now += DT
            self.out += [(f, decode_message(f)) for f in self.fw.tick(self.now, DT)]

    def armed(self, env: DeviceEnvelope = FAST) -> Host:
        assert isinstance(self.send(Hello()), Caps)
        assert isinstance(self.send(Arm(env, env.hash())), Armed)
        return self

    def faults(self) -> list[Fault]:
        return [m for _, m in self.out if isinstance(m, Fault)]


@pytest.fixture
def host() -> Host:
    return Host(DeviceFirmware(FirmwareConfig(), seed=1, now_s=0.0))


def test_boots_disarmed_with_output_off_and_refuses_before_hello(host: Host) -> None:
    assert host.fw.state == DeviceState.DISARMED
    assert not host.fw.output_on
    reply = host.send(SetStim(0, 1000, 90, 1300, 0, 200))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.NO_SESSION
    host.run(0.1)
    assert host.out[-1][1] == reply  # no STATUS before a session is open


def test_set_stim_needs_arm(host: Host) -> None:
    host.send(Hello())
    assert host.fw.state == DeviceState.CONFIGURED
    reply = host.send(SetStim(0, 1000, 90, 1300, 0, 200))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.NOT_ARMED
    assert not host.fw.output_on


def test_arm_checks_hash_and_envelope(host: Host) -> None:
    host.send(Hello())
    bad_hash = host.send(Arm(FAST, FAST.hash() ^ 1))
    assert isinstance(bad_hash, Nack)
    assert bad_hash.code == NackCode.ENVELOPE_MISMATCH
    too_wide = DeviceEnvelope(amp_max_ua=11_000)
    with capture_logs() as logs:
        reply = host.send(Arm(too_wide, too_wide.hash()))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.OUT_OF_RANGE
    assert any(
        "Expected amp_max_ua in [0, 10000], actual 11000" in e.get("reason", "") for e in logs
    )
    armed = host.send(Arm(FAST, FAST.hash()))
    assert isinstance(armed, Armed)
    assert armed.envelope_hash == FAST.hash()
    assert host.fw.state == DeviceState.ARMED_IDLE


def test_arm_refused_when_impedance_out_of_range() -> None:
    host = Host(DeviceFirmware(FirmwareConfig(impedance_ohm=9000), now_s=0.0))
    host.send(Hello())
    reply = host.send(Arm(FAST, FAST.hash()))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.OUT_OF_RANGE
    assert host.fw.fault_bits & FaultBits.IMPEDANCE


def test_soft_start_then_ramp_rate_limits(host: Host) -> None:
    host.armed()
    assert isinstance(host.send(SetStim(0, 2000, 90, 1300, 0, 500)), Ack)
    # Soft start: 0 → 2000 µA over ≥ 500 ms although ramp-up allows 2000 µA/s (1 s) → 1 s.
    for _ in range(9):
        host.run(0.1)
        host.send(Heartbeat(500))
    assert 1700 <= host.fw.amp_ua < 2000
    host.run(0.1)
    host.send(Heartbeat(500))
    assert host.fw.amp_ua == 2000
    assert host.fw.state == DeviceState.STIMULATING


def test_soft_start_is_at_least_soft_start_ms() -> None:
    slow = DeviceEnvelope(
        ramp_up_ua_per_s=2000, soft_start_ms=2000, lease_max_ms=500, watchdog_ms=500
    )
    host = Host(DeviceFirmware(now_s=0.0)).armed(slow)
    host.send(SetStim(0, 1000, 90, 1300, 0, 500))
    for _ in range(19):
        host.run(0.1)
        host.send(Heartbeat(500))
    assert host.fw.amp_ua < 1000  # 1.9 s into a ≥ 2 s soft start
    host.run(0.15)
    assert host.fw.amp_ua == 1000


def test_out_of_range_commands_are_nacked_and_setpoint_kept(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 1000, 90, 1300, 0, 500))
    for cmd, code in [
        (SetStim(0, 3600, 90, 1300, 0, 500), NackCode.OUT_OF_RANGE),
        (SetStim(0, 1000, 90, 1300, 0, 501), NackCode.OUT_OF_RANGE),  # lease > lease_max
        (SetStim(1, 1000, 90, 1300, 0, 500), NackCode.OUT_OF_RANGE),  # no channel 1
        (SetStim(0, 1000, 120, 1300, 0, 500), NackCode.SLEW_LIMIT),
        (SetStim(0, 1000, 90, 1600, 0, 500), NackCode.SLEW_LIMIT),
    ]:
        reply = host.send(cmd)
        assert isinstance(reply, Nack), cmd
        assert reply.code == code, cmd
    assert host.fw.target_amp_ua == 1000
    assert host.fw.pw_us == 90
    assert host.fw.freq_dhz == 1300


def test_duplicate_is_reacked_not_reapplied_and_stale_is_nacked(host: Host) -> None:
    host.armed()
    first = host.send(SetStim(0, 1000, 90, 1300, 0, 500))
    seq = host.seq
    host.run(0.05)
    applied_at_lease = host.fw.lease_until_s
    dup = host.send(SetStim(0, 1000, 90, 1300, 0, 500), seq=seq)
    assert dup == first  # the cached reply, byte for byte
    assert host.fw.lease_until_s == applied_at_lease  # not re-applied
    old = host.send(SetStim(0, 500, 90, 1300, 0, 500), seq=seq - 1)
    assert isinstance(old, Nack)
    assert old.code == NackCode.STALE
    ahead = host.send(SetStim(0, 500, 90, 1300, 0, 500), seq=seq + 2)
    assert isinstance(ahead, Nack)
    assert ahead.code == NackCode.STALE
    assert host.fw.target_amp_ua == 1000


def test_lease_expiry_safe_stops_within_ramp_and_latches(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 200))
    host.fw.amp_ua_f = 2000.0  # skip the soft start
    host.run(0.19)
    assert host.fw.output_on
    host.run(0.015)
    assert host.fw.state == DeviceState.SAFE_STOP
    assert host.fw.fault_bits == FaultBits.LEASE
    assert [f.new_bits for f in host.faults()] == [FaultBits.LEASE]
    host.run(0.2)  # safe_stop_ms = 200: linear ramp to zero
    assert not host.fw.output_on
    assert host.fw.state == DeviceState.DISARMED
    # Latched: nothing restarts it except a new ARM.
    reply = host.send(SetStim(0, 500, 90, 1300, 0, 200))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.NOT_ARMED
    assert isinstance(host.send(Arm(FAST, FAST.hash())), Armed)
    assert host.fw.fault_bits == FaultBits.NONE


def test_watchdog_fires_on_silence_even_with_a_long_lease() -> None:
    env = DeviceEnvelope(
        lease_max_ms=500, watchdog_ms=300, safe_stop_ms=250, soft_start_ms=1, ramp_up_ua_per_s=2000
    )
    host = Host(DeviceFirmware(now_s=0.0)).armed(env)
    host.send(SetStim(0, 1000, 90, 1300, 0, 500))
    host.run(0.29)
    assert host.fw.state == DeviceState.STIMULATING
    host.run(0.015)
    assert host.fw.fault_bits == FaultBits.WATCHDOG
    host.run(0.25)
    assert not host.fw.output_on
    assert host.fw.state == DeviceState.DISARMED


def test_estop_is_immediate_and_acts_even_out_of_sequence(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 2000.0
    reply = host.send(EStop(), seq=999)  # ignores sequence rules
    assert isinstance(reply, Ack)
    assert host.fw.amp_ua == 0  # no ramp
    assert host.fw.state == DeviceState.DISARMED
    assert host.fw.fault_bits & FaultBits.ESTOP
    assert any(isinstance(m, Status) for _, m in host.out[-2:])


def test_stop_ramps_down_and_stays_armed(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 2000.0
    host.send(Stop())
    assert host.fw.state == DeviceState.STOPPING
    for _ in range(4):
        host.run(0.1)
        host.send(Heartbeat(500))  # keeps the watchdog fed; no lease is running after STOP
    host.run(0.08)
    assert host.fw.output_on  # ramp-down 4000 µA/s: 0.5 s
    host.run(0.03)
    assert host.fw.state == DeviceState.ARMED_IDLE
    assert host.fw.fault_bits == FaultBits.NONE


def test_reboot_is_disarmed_with_new_boot_id(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 1500.0
    old = host.fw.boot_id
    frames = host.fw.reboot(host.now)
    caps = decode_message(frames[0])
    assert isinstance(caps, Caps)
    assert caps.boot_id != old
    assert host.fw.amp_ua == 0
    assert host.fw.state == DeviceState.DISARMED
    reply = host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.NO_SESSION


SENSED = {
    "lfp_beta_uv2": 12.5, "lfp_band_uv2": 30.0, "lfp_peak_hz": 34.0, "lfp_peak_uv2": 8.25,
    "units_synchrony": 0.5, "units_rate_hz": 12.0, "charge_mv_ms": 0.0,
}  # fmt: skip


def test_status_carries_the_measurable_features_only(host: Host) -> None:
    host.armed()
    # The tissue's observation also holds the simulator's unobservable fields: none travels.
    host.fw.sense = {**SENSED, "synchrony": 0.9, "weight_mv": 250.0, "mean_v_e_mv": -60.0}
    status = host.fw.status(host.now)
    assert status.sense_valid == 1
    assert status.features() == SENSED
    assert not {"synchrony", "weight_mv", "mean_v_e_mv"} & set(status.features())


@pytest.mark.parametrize(
    ("feature", "value", "reason"),
    [
        ("units_synchrony", float("nan"), "units_synchrony in [0, 1], actual nan"),
        ("lfp_beta_uv2", float("inf"), "lfp_beta_uv2 in [0, 429496.7295], actual inf"),
        ("lfp_band_uv2", -0.5, "lfp_band_uv2 in [0, 429496.7295], actual -0.5"),
        ("lfp_peak_uv2", 5e5, "lfp_peak_uv2 in [0, 429496.7295], actual 500000.0"),
        ("units_synchrony", 1.2, "Expected a finite units_synchrony in [0, 1], actual 1.2"),
        ("lfp_peak_hz", None, "Expected a finite lfp_peak_hz in [0, 4294967.295], actual None"),
    ],
)  # fmt: skip
def test_unrepresentable_sensed_values_invalidate_the_block_and_are_logged(
    host: Host, feature: str, value: float | None, reason: str
) -> None:
    host.armed()
    sense: dict[str, float] = dict(SENSED)
    if value is None:
        del sense[feature]
    else:
        sense[feature] = value
    host.fw.sense = sense
    with capture_logs() as logs:
        status = host.fw.status(host.now)
    assert status.sense_valid == 0  # the whole block, nothing clamped
    assert status.features() == {}
    assert logs[0]["event"] == "device_sense_invalid"
    assert logs[0]["feature"] == feature
    assert reason in logs[0]["reason"]


def test_hello_of_another_protocol_version_is_refused_naming_both(host: Host) -> None:
    host.seq += 1
    frame = Frame(MsgType.HELLO, host.seq, payload=Hello(proto_version=1).pack())
    with capture_logs() as logs:
        reply = decode_message(host.fw.handle(frame, host.now)[0])
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.BAD_VERSION
    assert not host.fw.session_open
    nack = next(e for e in logs if e["event"] == "device_nack")
    assert "Expected proto_version 2 and crc_kind 0, actual proto_version 1" in nack["reason"]


def test_unknown_type_and_bad_length_are_nacked(host: Host) -> None:
    host.send(Hello())
    host.seq += 1
    frames = host.fw.handle(Frame(0x77, host.seq), host.now)
    reply = decode_message(frames[0])
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.UNKNOWN_TYPE
    host.seq += 1
    frames = host.fw.handle(Frame(MsgType.SET_STIM, host.seq, payload=b"\x00\x01"), host.now)
    reply = decode_message(frames[0])
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.BAD_LEN


def test_link_down_safe_stops_an_armed_device_and_ends_the_session(host: Host) -> None:
    host.send(Hello())
    assert host.fw.link_down(host.now) == []  # nothing armed: no fault, just no session
    assert host.fw.fault_bits == FaultBits.NONE
    assert not host.fw.session_open
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 2000.0
    frames = host.fw.link_down(host.now)
    assert decode_message(frames[0]) == Fault(
        FaultBits.LINK_DOWN,
        FaultBits.LINK_DOWN,
        DeviceState.SAFE_STOP,  # the state after it
    )
    assert host.fw.state == DeviceState.SAFE_STOP
    host.run(0.21)  # safe_stop_ms = 200
    assert host.fw.state == DeviceState.DISARMED
    assert not host.fw.output_on


def test_silence_during_a_host_stop_hastens_the_ramp_without_a_fault(host: Host) -> None:
    slow_down = DeviceEnvelope(ramp_up_ua_per_s=2000, ramp_down_ua_per_s=500, soft_start_ms=1,
                         lease_max_ms=500, watchdog_ms=300, safe_stop_ms=200)  # fmt: skip
    host.armed(slow_down)
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 2000.0
    host.send(Stop())  # at 500 µA/s this ramp would take 4 s
    host.run(0.29)
    assert host.fw.output_on
    host.run(0.22)  # silent for W = 300 ms, then at most safe_stop_ms = 200 ms more
    assert not host.fw.output_on
    assert host.fw.state == DeviceState.ARMED_IDLE  # a requested stop is not a fault
    assert host.fw.fault_bits == FaultBits.NONE


# ------------------------------------------------------------- issue 18.7: spec decisions
def _reply_bytes(fw: DeviceFirmware, msg: WireMessage, seq: int, now_s: float) -> bytes:
    frames = fw.handle(Frame(msg.TYPE, seq, payload=msg.pack()), now_s)
    return encode_frame(frames[0])


def test_a_duplicate_gets_the_exact_bytes_of_the_earlier_reply() -> None:
    """§6 rule 4: same header (seq, ack, t_us, flags), payload and CRC; nothing re-applied."""
    fw = DeviceFirmware(now_s=0.0)
    commands: list[WireMessage] = [
        Hello(),
        Arm(FAST, FAST.hash()),
        SetStim(0, 1000, 90, 1300, 0, 500),
        SetStim(0, 9000, 90, 1300, 0, 500),  # NACKed: the NACK is what a duplicate gets
        Heartbeat(400),
        Stop(),
    ]
    now = 0.0
    for seq, msg in enumerate(commands, start=1):
        first = _reply_bytes(fw, msg, seq, now)
        lease_until = fw.lease_until_s
        for _ in range(20):  # STATUS frames go out in between: the device's counter moves on
            now += DT
            fw.tick(now, DT)
        with capture_logs() as logs:
            again = _reply_bytes(fw, msg, seq, now + 0.013)
        assert again == first, msg
        assert fw.lease_until_s == lease_until, msg  # not applied a second time
        assert [e["event"] for e in logs if e["event"].startswith("device_")] == [
            "device_duplicate"
        ], msg


def test_a_duplicate_hello_gets_the_same_caps_and_keeps_the_session() -> None:
    fw = DeviceFirmware(now_s=0.0)
    first = _reply_bytes(fw, Hello(), 7, 0.0)
    fw.tick(0.05, 0.05)
    assert _reply_bytes(fw, Hello(), 7, 0.06) == first
    assert _reply_bytes(fw, Arm(FAST, FAST.hash()), 8, 0.07)  # the session goes on at seq 8


def test_hello_reusing_the_seq_of_another_command_opens_a_new_session(host: Host) -> None:
    """Only a repeat of the HELLO that opened the session is a duplicate (§6 rule 2)."""
    host.armed()
    host.send(SetStim(0, 1000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 1000.0
    reply = host.send(Hello(), seq=host.seq)  # a new host that happens to pick the same seq
    assert isinstance(reply, Caps)
    assert host.fw.envelope is None
    assert host.fw.target_amp_ua == 0
    assert host.fw.state == DeviceState.STOPPING


def test_arm_refused_for_impedance_sends_a_fault_and_disarms() -> None:
    host = Host(DeviceFirmware(FirmwareConfig(impedance_ohm=9000), now_s=0.0))
    host.send(Hello())
    reply = host.send(Arm(FAST, FAST.hash()))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.OUT_OF_RANGE
    assert reply.state == DeviceState.DISARMED
    kinds = [type(m) for _, m in host.out[-2:]]
    assert kinds == [Nack, Fault]  # the reply first, then the FAULT frame
    assert host.faults() == [Fault(FaultBits.IMPEDANCE, FaultBits.IMPEDANCE, DeviceState.DISARMED)]
    assert host.fw.state == DeviceState.DISARMED
    assert host.fw.envelope is None
    refused = host.send(SetStim(0, 500, 90, 1300, 0, 200))
    assert isinstance(refused, Nack)
    assert refused.code == NackCode.NOT_ARMED
    host.send(Arm(FAST, FAST.hash()))  # still out of range: latched once, one FAULT
    assert len(host.faults()) == 1


def test_arm_refused_for_impedance_while_armed_disarms() -> None:
    fw = DeviceFirmware(now_s=0.0)
    host = Host(fw).armed()
    fw.config = FirmwareConfig(impedance_ohm=100)  # the electrode came loose
    reply = host.send(Arm(FAST, FAST.hash()))
    assert isinstance(reply, Nack)
    assert host.faults() == [Fault(FaultBits.IMPEDANCE, FaultBits.IMPEDANCE, DeviceState.DISARMED)]
    refused = host.send(SetStim(0, 500, 90, 1300, 0, 200))
    assert isinstance(refused, Nack)
    assert refused.code == NackCode.NOT_ARMED


def test_fault_frames_carry_the_state_after_the_fault(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 200))
    host.fw.amp_ua_f = 2000.0
    host.run(0.21)  # lease expiry: the output ramps off in SAFE_STOP
    assert host.faults() == [Fault(FaultBits.LEASE, FaultBits.LEASE, DeviceState.SAFE_STOP)]
    host.run(0.21)
    assert host.fw.state == DeviceState.DISARMED
    host.send(EStop())
    assert host.faults()[-1] == Fault(
        FaultBits.ESTOP, FaultBits.LEASE | FaultBits.ESTOP, DeviceState.DISARMED
    )
    host.armed()
    frames = host.fw.safe_stop(FaultBits.OVERCURRENT, host.now)  # output off: no ramp needed
    assert decode_message(frames[0]) == Fault(
        FaultBits.OVERCURRENT, FaultBits.OVERCURRENT, DeviceState.DISARMED
    )


def test_hello_while_stimulating_stops_within_safe_stop_ms_without_a_fault() -> None:
    slow_down = DeviceEnvelope(ramp_up_ua_per_s=2000, ramp_down_ua_per_s=100, soft_start_ms=1,
                         lease_max_ms=500, watchdog_ms=300, safe_stop_ms=200)  # fmt: skip
    host = Host(DeviceFirmware(now_s=0.0)).armed(slow_down)
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 2000.0
    assert isinstance(host.send(Hello()), Caps)  # a new host: the old setpoint is void
    assert host.fw.state == DeviceState.STOPPING
    assert isinstance(host.send(Arm(slow_down, slow_down.hash())), Nack)  # output still on
    refused = host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    assert isinstance(refused, Nack)
    assert refused.code == NackCode.NOT_ARMED
    host.run(0.19)
    assert host.fw.output_on
    host.run(0.015)  # safe_stop_ms = 200, not 2000 µA at 100 µA/s = 20 s
    assert not host.fw.output_on
    assert host.fw.state == DeviceState.CONFIGURED
    assert host.fw.fault_bits == FaultBits.NONE
    assert host.faults() == []
    assert isinstance(host.send(Arm(slow_down, slow_down.hash())), Armed)


def test_a_status_follows_armed_and_caps_at_once(host: Host) -> None:
    """Fresh state for the host: no STATUS from before the reply can be mistaken for after."""
    frames = host.fw.handle(Frame(Hello.TYPE, 1, payload=Hello().pack()), 0.0)
    assert [type(decode_message(f)) for f in frames] == [Caps, Status]
    arm = Arm(FAST, FAST.hash())
    host.fw.fault_bits = FaultBits.LEASE  # as after a lease expiry
    frames = host.fw.handle(Frame(arm.TYPE, 2, payload=arm.pack()), 0.001)
    messages = [decode_message(f) for f in frames]
    assert [type(m) for m in messages] == [Armed, Status]
    status = messages[1]
    assert isinstance(status, Status)
    assert (status.state, status.fault_bits) == (DeviceState.ARMED_IDLE, 0)


@pytest.mark.parametrize(
    "field", ["amp_max_ua", "freq_step_dhz", "pw_step_us", "soft_start_ms", "area_mm2_x100"]
)
def test_a_zero_limit_is_refused_never_a_default(host: Host, field: str) -> None:
    env = replace(FAST, **{field: 0})
    host.send(Hello())
    with capture_logs() as logs:
        reply = host.send(Arm(env, env.hash()))
    assert isinstance(reply, Nack)
    assert reply.code == NackCode.OUT_OF_RANGE
    reasons = " ".join(str(e.get("reason", "")) for e in logs)
    assert f"Expected {field} ≥ 1" in reasons
    assert host.fw.envelope is None


def test_amp_min_zero_means_no_minimum(host: Host) -> None:
    host.armed(replace(FAST, amp_min_ua=0))
    assert isinstance(host.send(SetStim(0, 1, 90, 1300, 0, 500)), Ack)


def test_hello_during_safe_stop_leaves_the_ramp_and_the_latch(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 200))
    host.fw.amp_ua_f = 2000.0
    host.run(0.21)  # lease expiry: SAFE_STOP
    assert host.fw.state == DeviceState.SAFE_STOP
    assert isinstance(host.send(Hello()), Caps)
    assert host.fw.state == DeviceState.SAFE_STOP
    assert host.fw.fault_bits == FaultBits.LEASE
    host.run(0.2)  # safe_stop_ms = 200
    assert not host.fw.output_on
    assert host.fw.state == DeviceState.DISARMED
    assert host.fw.fault_bits == FaultBits.LEASE  # only ARM clears it


def test_estop_with_a_payload_is_still_acted_on(host: Host) -> None:
    host.armed()
    host.send(SetStim(0, 2000, 90, 1300, 0, 500))
    host.fw.amp_ua_f = 2000.0
    frames = host.fw.handle(Frame(MsgType.ESTOP, 50, payload=b"\x01"), host.now)
    assert isinstance(decode_message(frames[0]), Ack)
    assert host.fw.amp_ua == 0
    assert host.fw.state == DeviceState.DISARMED
