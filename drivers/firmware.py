"""Device firmware as a pure state machine: the reference the emulator runs and firmware copies.

:class:`DeviceFirmware` implements ``docs/device-protocol.md`` §5–§9 without any I/O or clock of
its own: the caller passes every received frame and the current monotonic time, and sends the
frames it returns. That makes every timing rule (lease, watchdog, ramps, safe stop) testable with
a fake clock, and lets the emulator add real time, a pty or a socket, and fault injection around
it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import structlog

from core.errors import ProtocolError
from drivers.device_caps import (
    IMPEDANCE_RANGE_OHM,
    FirmwareConfig,
    caps_of,
    caps_problems,
    zero_limit_problems,
)
from drivers.envelope import DeviceEnvelope, charge_nc, envelope_problems, setpoint_problem
from drivers.framing import Frame, FrameFlags
from drivers.messages import (
    DEVICE_PROTOCOL_VERSION,
    Ack,
    Arm,
    Armed,
    Caps,
    DeviceState,
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
    StopReason,
    WireMessage,
    decode_message,
    fault_names,
)
from drivers.sensing import SENSE_FIELDS, encode_sense

log = structlog.get_logger()

_ARMED_STATES = (DeviceState.ARMED_IDLE, DeviceState.STIMULATING, DeviceState.STOPPING)
_NACK_OF_KIND = {
    "out_of_range": NackCode.OUT_OF_RANGE,
    "charge_limit": NackCode.CHARGE_LIMIT,
    "slew_limit": NackCode.SLEW_LIMIT,
}


class DeviceFirmware:
    """The device state machine (boots DISARMED, output off).

    Args:
        config: Device properties.
        seed: Seed of the generator that draws each ``boot_id``.
        now_s: Monotonic time of the first boot in seconds.
    """

    #: The device-protocol version this firmware speaks; a HELLO with another gets NACK
    #: ``BAD_VERSION`` (``docs/device-protocol.md`` §5 HELLO).
    PROTO_VERSION = DEVICE_PROTOCOL_VERSION

    def __init__(self, config: FirmwareConfig | None = None, seed: int = 0, now_s: float = 0.0):
        self.config = config or FirmwareConfig()
        self._rng = np.random.default_rng(seed)
        self.boot_count = 0
        self.bad_frames = 0
        self.sense: Mapping[str, float] | None = None
        self.t_tissue_ms = 0
        self._boot(now_s)

    # ----------------------------------------------------------------------------- boot / state
    def _boot(self, now_s: float) -> None:
        self.boot_id = int(self._rng.integers(1, 2**32 - 1))
        self.boot_count += 1
        self.state = DeviceState.DISARMED
        self.fault_bits = FaultBits.NONE
        self.envelope: DeviceEnvelope | None = None
        self.session_open = False
        self.last_host_seq = 0
        self.last_applied_seq = 0
        self._tx_seq = 0
        # The reply to the last accepted host seq, as framed the first time, and the type of
        # the command it answered: a duplicate gets exactly these bytes again (§6 rule 4).
        self._cached_reply: Frame | None = None
        self._cached_request_type: int | None = None
        self.amp_ua_f = 0.0
        self.target_amp_ua = 0
        self.pw_us = 0
        self.freq_dhz = 0
        self._ramp_up_ua_per_s = 0.0
        self._ramp_down_ua_per_s = 0.0
        self.lease_until_s: float | None = None
        self.last_valid_rx_s = now_s
        self._next_status_s = now_s
        log.info("device_boot", boot_id=self.boot_id, boot_count=self.boot_count)

    def announce(self, now_s: float) -> list[Frame]:
        """The unsolicited CAPS a device sends once it has booted (seq 0, ack 0)."""
        return [self._frame(self._caps(), now_s)]

    def reboot(self, now_s: float) -> list[Frame]:
        """Simulate a reset: output off at once, new ``boot_id``, DISARMED, seq 0.

        Returns:
            The unsolicited CAPS frame a booting device announces itself with.
        """
        log.warning("device_reset", old_boot_id=self.boot_id, amp_ua=self.amp_ua)
        self._boot(now_s)
        return self.announce(now_s)

    @property
    def amp_ua(self) -> int:
        """Amplitude being delivered now in µA."""
        return round(self.amp_ua_f)

    @property
    def output_on(self) -> bool:
        """Whether any current is being delivered."""
        return self.amp_ua_f > 0.0

    def _set_state(self, state: DeviceState, reason: str) -> None:
        if state != self.state:
            log.info("device_state", old=self.state.name, new=state.name, reason=reason)
            self.state = state

    # ------------------------------------------------------------------------------- frames out
    def _frame(self, msg: WireMessage, now_s: float) -> Frame:
        frame = Frame(
            msg.TYPE,
            self._tx_seq,
            self.last_host_seq,
            int(now_s * 1e6) & 0xFFFFFFFF,
            msg.pack(),
            FrameFlags.FROM_DEVICE,
        )
        self._tx_seq = (self._tx_seq + 1) & 0xFFFF
        return frame

    def _caps(self) -> Caps:
        return caps_of(self.config, self.boot_id)

    def status(self, now_s: float) -> Status:
        """The STATUS payload for this instant."""
        lease_ms = 0
        if self.lease_until_s is not None:
            lease_ms = max(0, min(0xFFFF, int((self.lease_until_s - now_s) * 1000)))
        sense = encode_sense(self.sense)
        return Status(
            int(self.state),
            int(self.fault_bits),
            self.amp_ua,
            self.pw_us if self.output_on else 0,
            self.freq_dhz if self.output_on else 0,
            self.target_amp_ua,
            min(0xFFFF, charge_nc(self.amp_ua, self.pw_us)) if self.output_on else 0,
            self.config.impedance_ohm,
            lease_ms,
            self.last_applied_seq,
            self.boot_id,
            1 if sense is not None else 0,
            self.t_tissue_ms & 0xFFFFFFFF,
            *(sense if sense is not None else (0,) * len(SENSE_FIELDS)),
        )

    # -------------------------------------------------------------------------------- frames in
    def bad_frame(self, code: str, detail: str) -> None:
        """Count a frame the decoder dropped (no reply: its seq cannot be trusted)."""
        self.bad_frames += 1
        log.warning("device_bad_frame", code=code, detail=detail, bad_frames=self.bad_frames)

    def handle(self, frame: Frame, now_s: float) -> list[Frame]:
        """Process one CRC-valid frame from the host.

        Returns:
            Frames to send back, in order: the reply first, then any FAULT or STATUS it caused.
        """
        if frame.msg_type == MsgType.ESTOP:
            # Highest priority: acted on whatever its seq, session or state.
            new = self._estop()
            accepted = self.session_open and frame.seq == (self.last_host_seq + 1) & 0xFFFF
            if accepted:
                self.last_host_seq = frame.seq
            reply = self._frame(Ack(frame.seq, int(self.state)), now_s)
            if accepted:
                self._cache(frame, reply)
            return [reply, *self._frames(self._faults_of(new), now_s), self._status_now(now_s)]
        duplicate = self.session_open and frame.seq == self.last_host_seq
        if frame.msg_type == MsgType.HELLO and duplicate:
            # Only a repeat of the HELLO that opened this session is a duplicate; a HELLO that
            # reuses the seq of another command comes from a new host and opens a new session.
            duplicate = self._cached_request_type == MsgType.HELLO
        if frame.msg_type == MsgType.HELLO and not duplicate:
            return self._hello(frame, now_s)
        if not self.session_open:
            log.warning("device_nack", code="NO_SESSION", seq=frame.seq, type=frame.msg_type)
            return [self._frame(Nack(frame.seq, NackCode.NO_SESSION, int(self.state)), now_s)]
        cached = self._cached_reply  # set whenever a seq is accepted in an open session
        if duplicate and cached is not None:
            # The watchdog is fed, nothing is applied again, and the reply goes out exactly as
            # it did the first time (same header, payload and CRC).
            self.last_valid_rx_s = now_s
            log.info("device_duplicate", seq=frame.seq, type=frame.msg_type)
            return [cached]
        if frame.seq != (self.last_host_seq + 1) & 0xFFFF:
            log.warning(
                "device_nack",
                code="STALE",
                reason=f"Expected seq {(self.last_host_seq + 1) & 0xFFFF} or a duplicate of "
                f"{self.last_host_seq}, actual {frame.seq}",
            )
            return [self._frame(Nack(frame.seq, NackCode.STALE, int(self.state)), now_s)]
        self.last_host_seq = frame.seq
        self.last_valid_rx_s = now_s
        after: list[WireMessage] = []
        answer = self._dispatch(frame, now_s, after)
        reply = self._frame(answer, now_s)
        self._cache(frame, reply)
        out = [reply, *self._frames(after, now_s)]
        if isinstance(answer, Armed):
            out.append(self._status_now(now_s))
        return out

    def _cache(self, request: Frame, reply: Frame) -> None:
        self._cached_reply = reply
        self._cached_request_type = request.msg_type

    def _frames(self, messages: list[WireMessage], now_s: float) -> list[Frame]:
        return [self._frame(msg, now_s) for msg in messages]

    def _status_now(self, now_s: float) -> Frame:
        """A STATUS sent at once (after ESTOP, ARMED and a session-opening CAPS).

        The periodic schedule restarts from here, so the host's view of the state is never
        older than the reply that changed it.
        """
        self._next_status_s = now_s + self.config.status_period_ms / 1000.0
        return self._frame(self.status(now_s), now_s)

    def _nack(self, seq: int, code: NackCode, reason: str) -> Nack:
        log.warning("device_nack", code=code.name, seq=seq, reason=reason)
        return Nack(seq, int(code), int(self.state))

    def _dispatch(self, frame: Frame, now_s: float, after: list[WireMessage]) -> WireMessage:
        try:
            msg = decode_message(frame)
        except ProtocolError as err:
            code = NackCode.UNKNOWN_TYPE if err.code == "unknown_type" else NackCode.BAD_LEN
            return self._nack(frame.seq, code, str(err))
        if isinstance(msg, Arm):
            return self._arm(frame.seq, msg, after)
        if isinstance(msg, SetStim):
            return self._set_stim(frame.seq, msg, now_s)
        if isinstance(msg, Heartbeat):
            if self.state not in _ARMED_STATES or self.fault_bits:
                return self._nack(frame.seq, NackCode.NOT_ARMED, f"state {self.state.name}")
            problem = self._lease_problem(msg.lease_ms)
            if problem:
                return self._nack(frame.seq, NackCode.OUT_OF_RANGE, problem)
            self.lease_until_s = now_s + msg.lease_ms / 1000.0
            return Ack(frame.seq, int(self.state))
        if isinstance(msg, Stop):
            self._stop(msg.reason)
            return Ack(frame.seq, int(self.state))
        # HELLO never gets here (handled before the sequence rules), so what is left are the
        # device → host types.
        return self._nack(
            frame.seq, NackCode.UNKNOWN_TYPE, f"type {MsgType(frame.msg_type).name} is device→host"
        )

    def _hello(self, frame: Frame, now_s: float) -> list[Frame]:
        try:
            hello = Hello.unpack(frame.payload)
        except ProtocolError as err:
            return [self._frame(self._nack(frame.seq, NackCode.BAD_LEN, str(err)), now_s)]
        if hello.proto_version != self.PROTO_VERSION or hello.crc_kind != 0:
            reason = (
                f"Expected proto_version {self.PROTO_VERSION} and crc_kind 0, actual "
                f"proto_version {hello.proto_version} and crc_kind {hello.crc_kind}"
            )
            return [self._frame(self._nack(frame.seq, NackCode.BAD_VERSION, reason), now_s)]
        if self.state in _ARMED_STATES and self.envelope is not None:
            # A new host session while armed: the old host's setpoint and envelope are void.
            # The output ramps to 0 within the armed safe_stop_ms (no fault: nothing failed),
            # so a new host that then goes silent cannot inherit a slow ramp-down.
            if self.output_on:
                self._ramp_down(self.amp_ua_f * 1000.0 / self.envelope.safe_stop_ms)
                log.info("device_hello_stops_output", amp_ua=self.amp_ua, reason="new session")
            self.target_amp_ua = 0
            self.envelope = None
            self.lease_until_s = None
        self.session_open = True
        self.last_host_seq = frame.seq
        self.last_valid_rx_s = now_s
        if self.state in (DeviceState.DISARMED, *_ARMED_STATES):
            self._set_state(
                DeviceState.STOPPING if self.output_on else DeviceState.CONFIGURED, "hello"
            )
        log.info("device_hello", seq=frame.seq, boot_id=self.boot_id)
        reply = self._frame(self._caps(), now_s)
        self._cache(frame, reply)
        return [reply, self._status_now(now_s)]

    def _arm(self, seq: int, arm: Arm, after: list[WireMessage]) -> WireMessage:
        if self.output_on:
            return self._nack(seq, NackCode.BAD_STATE, "Expected output off before ARM")
        if self.state == DeviceState.SAFE_STOP:
            return self._nack(seq, NackCode.BAD_STATE, "Expected SAFE_STOP to finish before ARM")
        if arm.envelope.hash() != arm.envelope_hash:
            reason = f"Expected envelope hash 0x{arm.envelope.hash():08x}, actual "
            reason += f"0x{arm.envelope_hash:08x}"
            return self._nack(seq, NackCode.ENVELOPE_MISMATCH, reason)
        env = arm.envelope
        c = self.config
        problems = (
            zero_limit_problems(env) + envelope_problems(env) + caps_problems(env, self._caps())
        )
        if problems:
            return self._nack(seq, NackCode.OUT_OF_RANGE, "; ".join(problems))
        lo_z, hi_z = IMPEDANCE_RANGE_OHM
        if not lo_z <= c.impedance_ohm <= hi_z:
            # A bad contact is a fault of the device, not of the envelope: it latches, the
            # device disarms (any earlier envelope is forgotten, the output is already off) and
            # the host hears a FAULT after the NACK.
            new = self._latch(FaultBits.IMPEDANCE)
            self.envelope = None
            self.lease_until_s = None
            self.target_amp_ua = 0
            self._set_state(DeviceState.DISARMED, "impedance out of range")
            after += self._faults_of(new)
            reason = f"Expected impedance in [{lo_z}, {hi_z}] Ω, actual {c.impedance_ohm}"
            return self._nack(seq, NackCode.OUT_OF_RANGE, reason)
        if self.fault_bits:
            log.info("device_faults_cleared", fault_bits=int(self.fault_bits))
        self.fault_bits = FaultBits.NONE
        self.envelope = env
        self.lease_until_s = None
        self.target_amp_ua = 0
        self._set_state(DeviceState.ARMED_IDLE, "arm")
        log.info("device_armed", envelope_hash=f"0x{arm.envelope_hash:08x}", **env.as_dict())
        return Armed(arm.envelope_hash, c.impedance_ohm)

    def _lease_problem(self, lease_ms: int) -> str | None:
        lo = self.config.lease_range_ms[0]
        hi = self.envelope.lease_max_ms if self.envelope else 0
        if not lo <= lease_ms <= hi:
            return f"Expected lease_ms in [{lo}, {hi}], actual {lease_ms}"
        return None

    def _set_stim(self, seq: int, cmd: SetStim, now_s: float) -> WireMessage:
        env = self.envelope
        if self.state not in _ARMED_STATES or env is None or self.fault_bits:
            return self._nack(seq, NackCode.NOT_ARMED, f"state {self.state.name}")
        if cmd.channel != 0:
            return self._nack(
                seq, NackCode.OUT_OF_RANGE, f"Expected channel 0, actual {cmd.channel}"
            )
        problem = self._lease_problem(cmd.lease_ms)
        if problem:
            return self._nack(seq, NackCode.OUT_OF_RANGE, problem)
        on = self.output_on or self.target_amp_ua > 0
        found = setpoint_problem(
            env,
            cmd.amp_ua,
            cmd.pw_us,
            cmd.freq_dhz,
            actual_amp_ua=self.amp_ua,
            current_pw_us=self.pw_us if on else None,
            current_freq_dhz=self.freq_dhz if on else None,
        )
        if found is not None:
            return self._nack(seq, _NACK_OF_KIND[found[0]], found[1])
        rate = float(env.ramp_up_ua_per_s)
        if cmd.ramp_ua_per_s:
            rate = min(rate, float(cmd.ramp_ua_per_s))
        if not self.output_on and cmd.amp_ua > 0 and env.soft_start_ms > 0:
            rate = min(rate, cmd.amp_ua * 1000.0 / env.soft_start_ms)
        self._ramp_up_ua_per_s = rate
        self._ramp_down_ua_per_s = float(env.ramp_down_ua_per_s)
        self.target_amp_ua = cmd.amp_ua
        if cmd.amp_ua > 0:
            self.pw_us = cmd.pw_us
            self.freq_dhz = cmd.freq_dhz
        self.lease_until_s = now_s + cmd.lease_ms / 1000.0
        self.last_applied_seq = seq
        if cmd.amp_ua > 0:
            self._set_state(DeviceState.STIMULATING, "set_stim")
        else:
            self._set_state(
                DeviceState.STOPPING if self.output_on else DeviceState.ARMED_IDLE, "set_stim 0"
            )
        log.debug(  # one per control tick: state changes are logged at info (device_state)
            "device_setpoint",
            seq=seq,
            amp_ua=cmd.amp_ua,
            pw_us=cmd.pw_us,
            freq_dhz=cmd.freq_dhz,
            lease_ms=cmd.lease_ms,
            ramp_ua_per_s=round(rate, 1),
        )
        return Ack(seq, int(self.state))

    # ---------------------------------------------------------------------------- stop / fault
    def _ramp_down(self, rate_ua_per_s: float) -> None:
        self.target_amp_ua = 0
        self._ramp_down_ua_per_s = rate_ua_per_s

    def _stop(self, reason: int) -> None:
        names = {r.value: r.name.lower() for r in StopReason}
        log.info("device_stop", reason=names.get(reason, f"unknown ({reason})"), amp_ua=self.amp_ua)
        if self.state in _ARMED_STATES and self.envelope is not None:
            self._ramp_down(float(self.envelope.ramp_down_ua_per_s))
            self.lease_until_s = None
            self._set_state(
                DeviceState.STOPPING if self.output_on else DeviceState.ARMED_IDLE, "stop"
            )

    def _estop(self) -> FaultBits:
        log.warning("device_estop", amp_ua=self.amp_ua)
        self.amp_ua_f = 0.0
        self.target_amp_ua = 0
        self.lease_until_s = None
        new = self._latch(FaultBits.ESTOP)
        self._set_state(DeviceState.DISARMED, "estop")
        return new

    def _latch(self, bits: FaultBits) -> FaultBits:
        """Latch ``bits``; returns those that were not latched yet."""
        new = bits & ~self.fault_bits
        self.fault_bits |= bits
        if new:
            log.error("device_fault", new=fault_names(new), fault_bits=int(self.fault_bits))
        return new

    def _faults_of(self, new: FaultBits) -> list[WireMessage]:
        """The FAULT message for newly latched ``new`` bits (none if nothing new latched).

        Called once the device has acted on the fault, so its ``state`` is the state after
        the fault (SAFE_STOP while the output ramps off, DISARMED once it is off).
        """
        if not new:
            return []
        return [Fault(int(new), int(self.fault_bits), int(self.state))]

    def safe_stop(self, bits: FaultBits, now_s: float) -> list[Frame]:
        """Latch ``bits`` and ramp the output to zero within the envelope's ``safe_stop_ms``.

        Used for lease expiry, watchdog, link loss (DTR drop / disconnect) and hardware faults.

        Returns:
            The FAULT frame if a bit latched that was not latched yet.
        """
        new = self._latch(bits)
        self.lease_until_s = None
        self.target_amp_ua = 0
        if self.output_on:
            stop_ms = self.envelope.safe_stop_ms if self.envelope else 250
            self._ramp_down_ua_per_s = max(self.amp_ua_f * 1000.0 / stop_ms, 1.0)
            self._set_state(DeviceState.SAFE_STOP, fault_names(bits))
        else:
            self._set_state(DeviceState.DISARMED, fault_names(bits))
        self.envelope = None if not self.output_on else self.envelope
        return self._frames(self._faults_of(new), now_s)

    def link_down(self, now_s: float) -> list[Frame]:
        """The host side went away (DTR drop, UART break, TCP close).

        An armed or delivering device safe-stops and latches ``LINK_DOWN``; in any case the
        session ends, so the next host must start with HELLO.
        """
        out: list[Frame] = []
        if self.output_on or self.state in _ARMED_STATES:
            out = self.safe_stop(FaultBits.LINK_DOWN, now_s)
        if self.session_open:
            log.warning("device_link_down", state=self.state.name)
        self.session_open = False
        return out

    # ------------------------------------------------------------------------------------ time
    def tick(self, now_s: float, dt_s: float) -> list[Frame]:
        """Advance ramps and timers by ``dt_s`` ending at ``now_s``.

        Returns:
            FAULT and STATUS frames that fell due.
        """
        out: list[Frame] = []
        env = self.envelope
        silent = env is not None and now_s - self.last_valid_rx_s > env.watchdog_ms / 1000.0
        if self.state in _ARMED_STATES and env is not None and self.target_amp_ua > 0:
            # Watchdog and lease guard commanded current only: an armed device with its output
            # off has nothing to stop and stays armed through host silence.
            if silent:
                out += self.safe_stop(FaultBits.WATCHDOG, now_s)
            elif self.lease_until_s is not None and now_s > self.lease_until_s:
                out += self.safe_stop(FaultBits.LEASE, now_s)
        elif silent and self.output_on and self.state == DeviceState.STOPPING and env:
            # A host-requested ramp-down is under way and the host went quiet: finish it at the
            # safe-stop rate (the W + safe_stop_ms guarantee) without latching a fault.
            fast = self.amp_ua_f * 1000.0 / env.safe_stop_ms
            if fast > self._ramp_down_ua_per_s:
                log.info("device_stop_hastened", amp_ua=self.amp_ua, reason="host silent")
                self._ramp_down_ua_per_s = fast
        if (
            self.target_amp_ua == 0
            and self.lease_until_s is not None
            and self.lease_until_s < now_s
        ):
            self.lease_until_s = None
        target = float(self.target_amp_ua)
        if self.amp_ua_f < target:
            self.amp_ua_f = min(target, self.amp_ua_f + self._ramp_up_ua_per_s * dt_s)
        elif self.amp_ua_f > target:
            self.amp_ua_f = max(target, self.amp_ua_f - self._ramp_down_ua_per_s * dt_s)
            if target == 0.0 and self.amp_ua_f < 0.5:
                self.amp_ua_f = 0.0  # below the 1 µA resolution: off, as STATUS reports it
        if env is not None and self.output_on and charge_nc(self.amp_ua, self.pw_us) > env.q_max_nc:
            # Cannot happen when the checks above hold; the guard is the last line of defence.
            self.amp_ua_f = 0.0
            out += self.safe_stop(FaultBits.CHARGE, now_s)
        if not self.output_on:
            if self.state == DeviceState.SAFE_STOP:
                self.envelope = None
                self._set_state(DeviceState.DISARMED, "safe stop complete")
            elif self.state == DeviceState.STOPPING:
                self._set_state(
                    DeviceState.ARMED_IDLE if self.envelope else DeviceState.CONFIGURED,
                    "ramp down complete",
                )
        if self.session_open and now_s >= self._next_status_s:
            self._next_status_s = now_s + self.config.status_period_ms / 1000.0
            out.append(self._frame(self.status(now_s), now_s))
        return out
