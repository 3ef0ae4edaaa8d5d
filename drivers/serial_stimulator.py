"""`SerialStimulator`: the device protocol over any pyserial URL.

The port is opened with ``serial.serial_for_url`` so the same code drives a USB-CDC device
(``/dev/ttyACM0``), a pty from the emulator (``/dev/pts/N``), a TCP emulator
(``socket://127.0.0.1:PORT``), a loopback (``loop://``) or a hex-dumping wrapper
(``spy:///dev/ttyACM0``). A reader thread decodes every incoming frame (every read has a
timeout), keeps the latest STATUS, records FAULTs, hands replies to the waiting command, and
declares link loss on ``SerialException``, EOF or EIO. Commands are stop-and-wait: each is
retransmitted at most ``max_retries`` times with the same seq after ``ack_timeout_s``, then the
link is declared faulty. A new ``boot_id`` means the device reset: the driver drops its armed
state and never re-sends a setpoint by itself.

The driver judges the device from fresh state only: a STATUS the device sent before the latest
reply (older device ``seq``) is dropped, and :meth:`SerialStimulator.handshake` and
:meth:`SerialStimulator.arm` return once a STATUS sent after their reply has arrived, so a fault
that ARM cleared is never read back from an older STATUS.
"""

from __future__ import annotations

import contextlib
import math
import termios
import threading
import time
from dataclasses import replace
from typing import Any

import serial
import structlog

from core.errors import (
    ConfigError,
    DeviceError,
    DeviceIOError,
    DeviceTimeoutError,
    ProtocolError,
)
from drivers.base import StimulatorABC, nack_error
from drivers.envelope import DeviceEnvelope
from drivers.framing import Frame, FrameDecoder, FrameFlags, encode_frame
from drivers.messages import (
    Ack,
    Arm,
    Armed,
    Caps,
    DeviceState,
    EStop,
    Fault,
    Heartbeat,
    Hello,
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

log = structlog.get_logger()


def _newer(seq: int, than: int) -> bool:
    """Whether device ``seq`` was sent after ``than`` (serial-number arithmetic, u16)."""
    return 0 < (seq - than) & 0xFFFF < 0x8000


def _positive(name: str, value: float, hi: float) -> None:
    if not (math.isfinite(value) and 0.0 < value <= hi):
        raise ConfigError(f"Expected {name} in (0, {hi}], actual {value!r}")


class SerialStimulator(StimulatorABC):
    """Host driver for a stimulator that speaks ``docs/device-protocol.md``.

    Args:
        url: Anything ``serial.serial_for_url`` opens (device path, ``socket://``, ``loop://``,
            ``spy://``).
        baudrate: UART rate (ignored by USB-CDC, ptys and sockets).
        ack_timeout_s: Wait for a reply before retransmitting (20 ms in the spec).
        max_retries: Retransmissions of one command before the link is declared faulty.
        read_timeout_s: Timeout of each read in the reader thread.
        write_timeout_s: Timeout of each write.
        link_timeout_s: Silence (no frame at all) after which an open session counts as a lost
            link; STATUS arrives every 20 ms on a healthy link.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 1_000_000,
        ack_timeout_s: float = 0.02,
        max_retries: int = 2,
        read_timeout_s: float = 0.01,
        write_timeout_s: float = 0.2,
        link_timeout_s: float = 0.5,
    ) -> None:
        super().__init__()
        self._closed = True  # until the port is open: nothing to close, nothing to warn about
        _positive("ack_timeout_s", ack_timeout_s, 10.0)
        _positive("read_timeout_s", read_timeout_s, 1.0)
        _positive("write_timeout_s", write_timeout_s, 10.0)
        _positive("link_timeout_s", link_timeout_s, 60.0)
        if not 0 <= max_retries <= 10:
            raise ConfigError(f"Expected max_retries in [0, 10], actual {max_retries}")
        self.url = url
        self._ack_timeout_s = ack_timeout_s
        self._max_retries = max_retries
        self._link_timeout_s = link_timeout_s
        try:
            self._serial = serial.serial_for_url(
                url, baudrate=baudrate, timeout=read_timeout_s, write_timeout=write_timeout_s
            )
        except (serial.SerialException, ValueError, OSError) as err:
            raise DeviceIOError(f"Cannot open serial URL {url!r}: {err}") from err
        self._closed = False
        with contextlib.suppress(serial.SerialException, OSError, NotImplementedError):
            self._serial.reset_input_buffer()
        self._decoder = FrameDecoder()
        self._cond = threading.Condition()
        self._tx_lock = threading.Lock()
        self._waiting_seq: int | None = None
        self._waiting_hello = False
        self._reply: tuple[Frame, WireMessage] | None = None
        self._tx_seq = 1
        self._rx_dev_seq = 0
        self._status: Status | None = None
        self._status_seq = 0
        # Device seq of the freshest frame that told us the device's state (a reply to one of
        # our commands or a STATUS): a STATUS sent before it is stale. Moving it with every
        # STATUS keeps it within a few frames of the device's counter, so the u16 comparison
        # never wraps, however long the host stays silent.
        self._state_dev_seq: int | None = None
        self._boot_id: int | None = None
        self._link_error: str | None = None
        self._port_dead = False
        self._device_reset: str | None = None
        self.faults: list[Fault] = []
        self.counters: dict[str, int] = {
            "frames_tx": 0,
            "frames_rx": 0,
            "bad_frames": 0,
            "retransmits": 0,
            "timeouts": 0,
            "nacks": 0,
            "late_replies": 0,
            "stale_status": 0,
        }
        self._last_rx_s = time.monotonic()
        self._stop_reader = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="serial-reader", daemon=True)
        self._reader.start()
        log.info("driver_opened", url=url)

    # ------------------------------------------------------------------------- link state
    @property
    def link_ok(self) -> bool:
        """Whether the link is usable (no loss, no unanswered command, no silence)."""
        if self._link_error is not None:
            return False
        if self._boot_id is not None and time.monotonic() - self._last_rx_s > self._link_timeout_s:
            self._lose_link(
                f"Expected a frame within {self._link_timeout_s} s, actual silence for "
                f"{time.monotonic() - self._last_rx_s:.3f} s",
                port_dead=False,
            )
            return False
        return True

    @property
    def link_error(self) -> str | None:
        """Why the link was declared lost, if it was."""
        return self._link_error

    @property
    def device_reset(self) -> str | None:
        """Why a device reset was detected, if it was (cleared only by a new handshake)."""
        return self._device_reset

    @property
    def stimulation_stopped(self) -> bool:
        """Whether the host must assume no stimulation is being delivered under its control.

        True after link loss (the device stops itself on its lease), after a device reset,
        when not armed, or when the latest STATUS shows the output off or a latched fault.
        """
        if not self.link_ok or self._device_reset is not None or self._envelope is None:
            return True
        st = self._status
        return st is None or st.amp_ua == 0 or st.fault_bits != 0

    def status(self) -> Status | None:
        """The latest STATUS from the current boot."""
        return self._status

    def health(self) -> dict[str, Any]:
        """Counters and link state."""
        st = self._status
        return {
            "url": self.url,
            "link_ok": self.link_ok,
            "link_error": self._link_error,
            "device_reset": self._device_reset,
            "boot_id": self._boot_id,
            "state": DeviceState(st.state).name if st else None,
            "fault_bits": fault_names(st.fault_bits) if st else None,
            "armed": self._envelope is not None,
            "last_rx_age_s": round(time.monotonic() - self._last_rx_s, 4),
            **self.counters,
        }

    def _lose_link(self, reason: str, port_dead: bool) -> None:
        with self._cond:
            first = self._link_error is None
            self._link_error = reason
            self._port_dead = self._port_dead or port_dead
            self._cond.notify_all()
        if first:
            log.error("driver_link_lost", reason=reason, stimulation="assumed stopped by lease")

    # ---------------------------------------------------------------------------- reader
    def _read_loop(self) -> None:
        while not self._stop_reader.is_set():
            try:
                waiting = self._serial.in_waiting
                data = self._serial.read(max(1, min(waiting, 4096)))
            except (
                serial.SerialException,
                OSError,
                termios.error,
                TypeError,
                AttributeError,
            ) as err:
                if not self._stop_reader.is_set():
                    self._lose_link(f"Serial link lost ({type(err).__name__}: {err})", True)
                return
            if not data:
                continue
            frames, bad = self._decoder.feed(data)
            for b in bad:
                self.counters["bad_frames"] += 1
                log.warning("driver_bad_frame", code=b.code, detail=b.detail)
            for frame in frames:
                self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        self.counters["frames_rx"] += 1
        self._last_rx_s = time.monotonic()
        self._rx_dev_seq = frame.seq
        try:
            msg = decode_message(frame)
        except ProtocolError as err:
            self.counters["bad_frames"] += 1
            log.warning("driver_bad_message", code=err.code, detail=str(err))
            return
        if isinstance(msg, Status):
            if self._boot_id is not None and msg.boot_id != self._boot_id:
                self._on_reset(f"STATUS boot_id 0x{msg.boot_id:08x}")
                return
            with self._cond:
                floor = self._state_dev_seq
                if floor is not None and not _newer(frame.seq, floor):
                    # Sent before a reply or STATUS we already hold (reordered on the line):
                    # what it says may since have changed (ARM clears faults, STOP ends a ramp).
                    self.counters["stale_status"] += 1
                    return
                self._status = msg
                self._status_seq = frame.seq
                self._state_dev_seq = frame.seq
                self._cond.notify_all()
            return
        if isinstance(msg, Fault):
            self.faults.append(msg)
            log.error(
                "driver_device_fault",
                new=fault_names(msg.new_bits),
                fault_bits=fault_names(msg.fault_bits),
                state=DeviceState(msg.state).name,
            )
            return
        if isinstance(msg, Caps) and not (self._waiting_hello and frame.ack == self._waiting_seq):
            if self._boot_id is not None and msg.boot_id != self._boot_id:
                self._on_reset(f"unsolicited CAPS boot_id 0x{msg.boot_id:08x}")
            return
        key = msg.acked_seq if isinstance(msg, (Ack, Nack)) else frame.ack
        with self._cond:
            if key == self._waiting_seq and self._reply is None:
                self._reply = (frame, msg)
                if self._state_dev_seq is None or _newer(frame.seq, self._state_dev_seq):
                    self._state_dev_seq = frame.seq
                self._cond.notify_all()
            else:
                self.counters["late_replies"] += 1

    def _on_reset(self, evidence: str) -> None:
        reason = (
            f"Expected boot_id 0x{self._boot_id or 0:08x}, actual {evidence}: the device reset "
            "and is DISARMED; re-run handshake() and arm() to continue"
        )
        with self._cond:
            self._device_reset = reason
            self._envelope = None
            self._commanded = None
            self._status = None
            self._state_dev_seq = None  # the new boot counts its seq from 0
            self._cond.notify_all()
        log.error("driver_device_reset", reason=reason, resume="never automatic")

    # --------------------------------------------------------------------------- commands
    def _write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialTimeoutException as err:
            self._lose_link(f"Write timed out: {err}", port_dead=False)
            raise DeviceTimeoutError(f"Write to {self.url} timed out") from err
        except (serial.SerialException, OSError, termios.error) as err:
            # termios.error (e.g. EIO from tcdrain on a pty whose other side is gone) is not an
            # OSError, but it is the same loss of link.
            self._lose_link(f"Write failed ({type(err).__name__}: {err})", port_dead=True)
            raise DeviceIOError(f"Write to {self.url} failed: {err}") from err
        self.counters["frames_tx"] += 1

    def _check_usable(self) -> None:
        self._require_open()
        if self._port_dead or (self._link_error is not None and self._boot_id is not None):
            raise DeviceIOError(f"Link to {self.url} is down: {self._link_error}")

    def _transact(self, msg: WireMessage, *, hello: bool = False) -> WireMessage:
        """Send one command and wait for its reply, retransmitting on silence."""
        return self._transact_frame(msg, hello=hello)[1]

    def _transact_frame(
        self, msg: WireMessage, *, hello: bool = False
    ) -> tuple[Frame, WireMessage]:
        """Like :meth:`_transact`, also returning the reply's frame (its device seq)."""
        with self._tx_lock:
            self._check_usable()
            if not hello and self._device_reset is not None:
                raise DeviceError(self._device_reset)
            resynced = False
            while True:
                seq = self._tx_seq
                if hello and seq == 0:
                    seq = 1  # seq 0 is what a freshly booted device puts in its ack field
                self._tx_seq = (seq + 1) & 0xFFFF
                reply_frame, reply = self._send_and_wait(msg, seq)
                if isinstance(reply, Nack):
                    self.counters["nacks"] += 1
                    code = (
                        NackCode(reply.code) if reply.code in NackCode._value2member_map_ else None
                    )
                    if code == NackCode.STALE and not resynced:
                        # Our seq and the device's disagree (lost or reordered frames): the
                        # NACK's ack field is the device's last accepted seq; send anew after it.
                        resynced = True
                        self._tx_seq = (reply_frame.ack + 1) & 0xFFFF
                        log.warning("driver_resync", device_last_seq=reply_frame.ack, seq=seq)
                        continue
                    error = nack_error(msg.TYPE, seq, reply)
                    log.error("driver_nack", type=msg.TYPE.name, seq=seq, reason=str(error))
                    if code == NackCode.NO_SESSION and self._boot_id is not None:
                        self._on_reset("NACK NO_SESSION")
                    raise error
                return reply_frame, reply

    def _send_and_wait(self, msg: WireMessage, seq: int) -> tuple[Frame, WireMessage]:
        frame = Frame(
            msg.TYPE,
            seq,
            self._rx_dev_seq,
            int(time.monotonic() * 1e6) & 0xFFFFFFFF,
            msg.pack(),
            FrameFlags.ACK_REQ,
        )
        with self._cond:
            self._waiting_seq = seq
            self._waiting_hello = msg.TYPE == Hello.TYPE
            self._reply = None
        try:
            for attempt in range(self._max_retries + 1):
                if attempt:
                    self.counters["retransmits"] += 1
                    frame = replace(frame, flags=FrameFlags.ACK_REQ | FrameFlags.RETX)
                    log.warning("driver_retransmit", type=msg.TYPE.name, seq=seq, attempt=attempt)
                self._write(encode_frame(frame))
                with self._cond:
                    self._cond.wait_for(
                        lambda: (
                            self._reply is not None
                            or self._port_dead
                            or self._device_reset is not None
                        ),
                        timeout=self._ack_timeout_s,
                    )
                    reply = self._reply
                if reply is not None:
                    return reply
                if self._port_dead:
                    raise DeviceIOError(f"Link to {self.url} lost: {self._link_error}")
                if self._device_reset is not None and msg.TYPE != Hello.TYPE:
                    raise DeviceError(self._device_reset)
        finally:
            with self._cond:
                self._waiting_seq = None
        self.counters["timeouts"] += 1
        reason = (
            f"Expected a reply to {msg.TYPE.name} (seq {seq}) within "
            f"{self._max_retries + 1} × {self._ack_timeout_s * 1000:.0f} ms, actual none"
        )
        self._lose_link(reason, port_dead=False)
        raise DeviceTimeoutError(reason)

    def _await_status_after(self, reply_frame: Frame, what: str) -> None:
        """Wait for a STATUS the device sent after ``reply_frame`` (it sends one at once).

        Raises:
            DeviceTimeoutError: None within ``link_timeout_s`` (the link counts as lost).
            DeviceIOError: The port died meanwhile.
            DeviceError: The device reset meanwhile.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    (self._status is not None and _newer(self._status_seq, reply_frame.seq))
                    or self._port_dead
                    or self._device_reset is not None
                ),
                timeout=self._link_timeout_s,
            )
            fresh = self._status is not None and _newer(self._status_seq, reply_frame.seq)
        if fresh:
            return
        if self._port_dead:
            raise DeviceIOError(f"Link to {self.url} lost: {self._link_error}")
        if self._device_reset is not None:
            raise DeviceError(self._device_reset)
        reason = (
            f"Expected a STATUS sent after {what} within {self._link_timeout_s} s, actual none"
        )
        self._lose_link(reason, port_dead=False)
        raise DeviceTimeoutError(reason)

    # ------------------------------------------------------------------------------ hooks
    def _handshake_internal(self) -> Caps:
        with self._cond:
            self._boot_id = None
            self._device_reset = None
            self._status = None
            self._state_dev_seq = None  # the device may have rebooted: its seq restarted
            if not self._port_dead:
                self._link_error = None
        reply_frame, reply = self._transact_frame(Hello(), hello=True)
        if not isinstance(reply, Caps):
            raise DeviceError(f"Expected CAPS in reply to HELLO, actual {type(reply).__name__}")
        self._boot_id = reply.boot_id
        self._last_rx_s = time.monotonic()
        self._await_status_after(reply_frame, "CAPS")
        return reply

    def _arm_internal(self, envelope: DeviceEnvelope) -> Armed:
        reply_frame, reply = self._transact_frame(Arm(envelope, envelope.hash()))
        if not isinstance(reply, Armed):
            raise DeviceError(f"Expected ARMED in reply to ARM, actual {type(reply).__name__}")
        self._await_status_after(reply_frame, "ARMED")
        return reply

    def _set_stimulation_internal(self, cmd: SetStim) -> None:
        self._expect_ack(self._transact(cmd), cmd)

    def _heartbeat_internal(self, lease_ms: int) -> None:
        msg = Heartbeat(lease_ms)
        self._expect_ack(self._transact(msg), msg)

    def _stop_internal(self, reason: StopReason) -> None:
        msg = Stop(int(reason))
        self._expect_ack(self._transact(msg), msg)

    def _estop_internal(self) -> None:
        try:
            self._transact(EStop())
        except DeviceTimeoutError:
            log.error("driver_estop_unacknowledged", note="the device watchdog still applies")
            raise

    @staticmethod
    def _expect_ack(reply: WireMessage, msg: WireMessage) -> None:
        if not isinstance(reply, Ack):
            raise DeviceError(f"Expected ACK to {msg.TYPE.name}, actual {type(reply).__name__}")

    def _close_internal(self) -> None:
        self._stop_reader.set()
        cancel = getattr(self._serial, "cancel_read", None)
        if callable(cancel):
            with contextlib.suppress(serial.SerialException, OSError, AttributeError):
                cancel()
        self._reader.join(timeout=2.0)
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()
        log.info("driver_closed", url=self.url, **self.counters)
