"""`VirtualStimulator`: the driver API on an in-process device, for tests that need no port.

Every command still goes through the real wire codec and the real firmware state machine
(:class:`~drivers.firmware.DeviceFirmware`), so refusals, ramps, leases and faults behave exactly
as on the emulator. The clock is injectable: with a fake clock, :meth:`VirtualStimulator.poll`
advances the device in 1 ms ticks, which makes lease and watchdog behaviour exact and instant
to test. Every command that reached the device is kept in :attr:`VirtualStimulator.sent`.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from core.clock import TimeSource
from core.errors import DeviceError
from drivers.base import StimulatorABC, nack_error
from drivers.envelope import DeviceEnvelope
from drivers.firmware import DeviceFirmware
from drivers.framing import Frame, FrameDecoder, FrameFlags, encode_frame
from drivers.messages import (
    Ack,
    Arm,
    Armed,
    Caps,
    EStop,
    Fault,
    Heartbeat,
    Hello,
    Nack,
    SetStim,
    Status,
    Stop,
    StopReason,
    WireMessage,
    decode_message,
)

log = structlog.get_logger()

#: Longest firmware tick when catching up with the clock (s).
TICK_S = 0.001


class VirtualStimulator(StimulatorABC):
    """A stimulator whose device runs in this process.

    Args:
        firmware: The device; a default one booted at ``clock()`` if omitted.
        clock: Monotonic clock in seconds (``time.monotonic``, or a
            :class:`core.clock.FakeClock` in tests; see :mod:`core.clock`).
    """

    def __init__(
        self,
        firmware: DeviceFirmware | None = None,
        clock: TimeSource = time.monotonic,
    ) -> None:
        super().__init__()
        self._clock = clock
        self.firmware = firmware or DeviceFirmware(now_s=clock())
        self._now_s = clock()
        self._seq = 0
        self._decoder = FrameDecoder()
        self._status: Status | None = None
        self.sent: list[WireMessage] = []
        self.faults: list[Fault] = []

    def poll(self) -> None:
        """Advance the device to ``clock()`` and collect what it sent."""
        now = self._clock()
        while self._now_s < now:
            step = min(TICK_S, now - self._now_s)
            self._now_s += step
            self._receive(self.firmware.tick(self._now_s, step))

    def _receive(self, frames: list[Frame]) -> list[WireMessage]:
        # Through the real codec, as the bytes would travel.
        decoded, bad = self._decoder.feed(b"".join(encode_frame(f) for f in frames))
        if bad:
            raise DeviceError(f"Expected clean frames from the in-process device, actual {bad}")
        out: list[WireMessage] = []
        for frame in decoded:
            msg = decode_message(frame)
            if isinstance(msg, Status):
                self._status = msg
            elif isinstance(msg, Fault):
                self.faults.append(msg)
            else:
                out.append(msg)
        return out

    def _exchange(self, msg: WireMessage) -> WireMessage:
        self._require_open()
        self.poll()
        self._seq = (self._seq + 1) & 0xFFFF
        if self._seq == 0 and isinstance(msg, Hello):
            self._seq = 1  # seq 0 is what a freshly booted device puts in its ack field
        frame = Frame(msg.TYPE, self._seq, payload=msg.pack(), flags=FrameFlags.ACK_REQ)
        (decoded,), _ = self._decoder.feed(encode_frame(frame))
        self.sent.append(msg)
        replies = self._receive(self.firmware.handle(decoded, self._now_s))
        reply = replies[0]
        if isinstance(reply, Nack):
            raise nack_error(msg.TYPE, self._seq, reply)
        return reply

    # ------------------------------------------------------------------------------ hooks
    def status(self) -> Status | None:
        """The latest STATUS (after advancing the device to now)."""
        if not self._closed:
            self.poll()
        return self._status

    def health(self) -> dict[str, Any]:
        """Device state for logs."""
        fw = self.firmware
        return {
            "state": fw.state.name,
            "fault_bits": int(fw.fault_bits),
            "amp_ua": fw.amp_ua,
            "boot_id": fw.boot_id,
            "commands": len(self.sent),
        }

    def _handshake_internal(self) -> Caps:
        reply = self._exchange(Hello())
        if not isinstance(reply, Caps):
            raise DeviceError(f"Expected CAPS in reply to HELLO, actual {type(reply).__name__}")
        return reply

    def _arm_internal(self, envelope: DeviceEnvelope) -> Armed:
        reply = self._exchange(Arm(envelope, envelope.hash()))
        if not isinstance(reply, Armed):
            raise DeviceError(f"Expected ARMED in reply to ARM, actual {type(reply).__name__}")
        return reply

    def _expect_ack(self, msg: WireMessage) -> None:
        reply = self._exchange(msg)
        if not isinstance(reply, Ack):
            raise DeviceError(f"Expected ACK to {msg.TYPE.name}, actual {type(reply).__name__}")

    def _set_stimulation_internal(self, cmd: SetStim) -> None:
        self._expect_ack(cmd)

    def _heartbeat_internal(self, lease_ms: int) -> None:
        self._expect_ack(Heartbeat(lease_ms))

    def _stop_internal(self, reason: StopReason) -> None:
        self._expect_ack(Stop(int(reason)))

    def _estop_internal(self) -> None:
        self._expect_ack(EStop())

    def _close_internal(self) -> None:
        log.info("virtual_stimulator_closed", commands=len(self.sent))
