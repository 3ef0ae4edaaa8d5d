"""Message types and payload structs of the device wire protocol (integer units only).

Every payload is a fixed little-endian struct of unsigned or signed integers
(``docs/device-protocol.md`` §4–§5): amplitudes in µA, pulse widths in µs, frequencies in 0.1 Hz
(dHz), charge in nC, durations in ms. There are no floats on the wire, so no NaN or Inf can ever
travel. Each message class packs with :meth:`WireMessage.pack` and is recovered from a frame by
:func:`decode_message`, which raises :class:`~core.errors.ProtocolError` on a wrong length or
an unknown type.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass, fields
from enum import IntEnum, IntFlag
from typing import Any, ClassVar, TypeVar

from core.errors import ProtocolError
from drivers.envelope import DeviceEnvelope
from drivers.framing import Frame
from drivers.sensing import decode_sense

#: The device-protocol version this package speaks (HELLO ``proto_version``,
#: ``docs/device-protocol.md`` §5 HELLO). Version 2 changed the STATUS sensed block (§10).
DEVICE_PROTOCOL_VERSION = 2
#: Payload length of a version-1 STATUS (a peer on old firmware).
STATUS_V1_PAYLOAD_LEN = 66


class MsgType(IntEnum):
    """Message type byte (header offset 1)."""

    HELLO = 0x01
    CAPS = 0x02
    ARM = 0x10
    ARMED = 0x11
    SET_STIM = 0x20
    HEARTBEAT = 0x21
    STOP = 0x30
    ESTOP = 0x3F
    ACK = 0x40
    NACK = 0x41
    STATUS = 0x50
    FAULT = 0x60


class DeviceState(IntEnum):
    """Device state machine (``docs/device-protocol.md`` §8)."""

    DISARMED = 0
    CONFIGURED = 1
    ARMED_IDLE = 2
    STIMULATING = 3
    STOPPING = 4
    SAFE_STOP = 5


class NackCode(IntEnum):
    """Why the device refused a command."""

    BAD_LEN = 1
    UNKNOWN_TYPE = 2
    NOT_ARMED = 3
    OUT_OF_RANGE = 4
    CHARGE_LIMIT = 5
    SLEW_LIMIT = 6
    STALE = 7
    ENVELOPE_MISMATCH = 8
    BAD_STATE = 9
    NO_SESSION = 10
    BAD_VERSION = 11


class FaultBits(IntFlag):
    """Latched fault bits; only ARM clears them."""

    NONE = 0
    WATCHDOG = 0x01
    LEASE = 0x02
    ESTOP = 0x04
    LINK_DOWN = 0x08
    CHARGE = 0x10
    SENSOR = 0x20
    IMPEDANCE = 0x40
    OVERCURRENT = 0x80


def fault_names(bits: int) -> str:
    """Readable fault bits, e.g. ``"LEASE|WATCHDOG"`` (``"NONE"`` when clear)."""
    names = [flag.name or "" for flag in FaultBits if flag and bits & flag]
    unknown = bits & ~sum(int(flag) for flag in FaultBits)
    if unknown:
        names.append(f"0x{unknown:x}")
    return "|".join(names) or "NONE"


class StopReason(IntEnum):
    """Reason byte of a STOP command."""

    HOST_REQUEST = 0
    HOST_SHUTDOWN = 1
    HOST_DEADLINE = 2
    HOST_FAULT = 3


M = TypeVar("M", bound="WireMessage")


@dataclass(frozen=True)
class WireMessage:
    """Base of every payload struct: one fixed ``struct`` layout over the dataclass fields."""

    TYPE: ClassVar[MsgType]
    FMT: ClassVar[struct.Struct]

    def pack(self) -> bytes:
        """Serialise the payload.

        Raises:
            ProtocolError: ``code="bad_field"`` if a field does not fit its integer width.
        """
        try:
            return self.FMT.pack(*astuple(self))
        except struct.error as err:
            raise ProtocolError(
                f"Expected every {type(self).__name__} field to fit its integer width "
                f"({self.FMT.format}), actual {astuple(self)}: {err}",
                code="bad_field",
            ) from err

    @classmethod
    def unpack(cls: type[M], payload: bytes) -> M:
        """Parse a payload of exactly ``FMT.size`` bytes.

        Raises:
            ProtocolError: ``code="bad_len"`` if the size is wrong.
        """
        if len(payload) != cls.FMT.size:
            raise ProtocolError(
                f"Expected a {cls.TYPE.name} payload of {cls.FMT.size} bytes, "
                f"actual {len(payload)}",
                code="bad_len",
            )
        return cls(*cls.FMT.unpack(payload))


@dataclass(frozen=True)
class Hello(WireMessage):
    """Host opens a session (any seq accepted; it becomes the device's reference seq)."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    FMT: ClassVar[struct.Struct] = struct.Struct("<BB")
    proto_version: int = DEVICE_PROTOCOL_VERSION
    crc_kind: int = 0  # 0 = CRC-16/CCITT-FALSE, the only kind defined


@dataclass(frozen=True)
class Caps(WireMessage):
    """Device capabilities and absolute caps; also sent unsolicited after every boot."""

    TYPE: ClassVar[MsgType] = MsgType.CAPS
    FMT: ClassVar[struct.Struct] = struct.Struct("<BBIBBHHHHHHHHHH")
    fw_major: int
    fw_minor: int
    boot_id: int
    channels: int
    mode: int  # 0 = current-controlled
    amp_max_ua: int
    pw_min_us: int
    pw_max_us: int
    freq_min_dhz: int
    freq_max_dhz: int
    area_mm2_x100: int
    watchdog_min_ms: int
    watchdog_max_ms: int
    lease_min_ms: int
    lease_max_ms: int


@dataclass(frozen=True)
class Arm(WireMessage):
    """Arm with an envelope and the CRC-32 of its packed bytes."""

    TYPE: ClassVar[MsgType] = MsgType.ARM
    FMT: ClassVar[struct.Struct] = struct.Struct("<" + DeviceEnvelope.FMT.format.lstrip("<") + "I")
    envelope: DeviceEnvelope
    envelope_hash: int

    def pack(self) -> bytes:
        """Serialise the envelope followed by its hash."""
        return self.envelope.pack() + struct.pack("<I", self.envelope_hash)

    @classmethod
    def unpack(cls, payload: bytes) -> Arm:
        """Parse the envelope and hash (the envelope is range-checked by the device, not here)."""
        if len(payload) != cls.FMT.size:
            raise ProtocolError(
                f"Expected an ARM payload of {cls.FMT.size} bytes, actual {len(payload)}",
                code="bad_len",
            )
        values = cls.FMT.unpack(payload)
        return cls(DeviceEnvelope(*values[:-1]), values[-1])


@dataclass(frozen=True)
class Armed(WireMessage):
    """Device armed: echoes the envelope hash and reports the measured impedance."""

    TYPE: ClassVar[MsgType] = MsgType.ARMED
    FMT: ClassVar[struct.Struct] = struct.Struct("<IH")
    envelope_hash: int
    impedance_ohm: int


@dataclass(frozen=True)
class SetStim(WireMessage):
    """New setpoint with a lease; the device ramps to it at the armed (or slower) rate."""

    TYPE: ClassVar[MsgType] = MsgType.SET_STIM
    FMT: ClassVar[struct.Struct] = struct.Struct("<BHHHHH")
    channel: int
    amp_ua: int
    pw_us: int
    freq_dhz: int
    ramp_ua_per_s: int  # 0 = the armed ramp-up rate
    lease_ms: int


@dataclass(frozen=True)
class Heartbeat(WireMessage):
    """Renew the lease without changing the setpoint."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    FMT: ClassVar[struct.Struct] = struct.Struct("<H")
    lease_ms: int


@dataclass(frozen=True)
class Stop(WireMessage):
    """Ramp the output to zero and return to ARMED_IDLE (no fault latched)."""

    TYPE: ClassVar[MsgType] = MsgType.STOP
    FMT: ClassVar[struct.Struct] = struct.Struct("<B")
    reason: int = int(StopReason.HOST_REQUEST)


@dataclass(frozen=True)
class EStop(WireMessage):
    """Immediate output off, no ramp, fault latched; only ARM clears it."""

    TYPE: ClassVar[MsgType] = MsgType.ESTOP
    FMT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True)
class Ack(WireMessage):
    """Command accepted (or a duplicate re-acknowledged)."""

    TYPE: ClassVar[MsgType] = MsgType.ACK
    FMT: ClassVar[struct.Struct] = struct.Struct("<HB")
    acked_seq: int
    state: int


@dataclass(frozen=True)
class Nack(WireMessage):
    """Command refused with a reason code; the previous setpoint stays."""

    TYPE: ClassVar[MsgType] = MsgType.NACK
    FMT: ClassVar[struct.Struct] = struct.Struct("<HBB")
    acked_seq: int
    code: int
    state: int


@dataclass(frozen=True)
class Status(WireMessage):
    """Periodic device status with the features sensed from the tissue (STATUS version 2).

    The sensed block carries only what an implant measures, as fixed-point integers
    (``drivers.sensing.SENSE_FIELDS``: powers in 10⁻⁴ µV², frequencies and rates in mHz, the
    units' order parameter in 10⁻⁴, the model charge in µV·ms). ``sense_valid`` is 0 when the
    sensor had nothing finite and representable to report.
    """

    TYPE: ClassVar[MsgType] = MsgType.STATUS
    FMT: ClassVar[struct.Struct] = struct.Struct("<BIHHHHHHHHIBIIIIIHII")
    state: int
    fault_bits: int
    amp_ua: int
    pw_us: int
    freq_dhz: int
    target_amp_ua: int
    charge_nc: int
    impedance_ohm: int
    lease_remaining_ms: int
    last_applied_seq: int
    boot_id: int
    sense_valid: int
    t_tissue_ms: int
    lfp_beta_uv2_e4: int
    lfp_band_uv2_e4: int
    lfp_peak_mhz: int
    lfp_peak_uv2_e4: int
    units_synchrony_e4: int
    units_rate_mhz: int
    charge_uv_ms: int

    @classmethod
    def unpack(cls, payload: bytes) -> Status:
        """Parse a version-2 STATUS; a version-1 one (66 bytes) is named as such.

        Raises:
            ProtocolError: ``bad_version`` for a version-1 STATUS, ``bad_len`` for any other
                wrong size.
        """
        if len(payload) == STATUS_V1_PAYLOAD_LEN:
            raise ProtocolError(
                f"Expected a STATUS of device-protocol version {DEVICE_PROTOCOL_VERSION} "
                f"({cls.FMT.size} bytes), actual {len(payload)} bytes: a version-1 STATUS "
                "(its sensed block carries unobservable features); the device runs old firmware",
                code="bad_version",
            )
        return super().unpack(payload)

    def features(self) -> dict[str, float]:
        """Sensed features in the simulator's float units (empty when ``sense_valid`` is 0)."""
        if not self.sense_valid:
            return {}
        return decode_sense(vars(self))


@dataclass(frozen=True)
class Fault(WireMessage):
    """Sent once when a fault latches."""

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    FMT: ClassVar[struct.Struct] = struct.Struct("<IIB")
    new_bits: int
    fault_bits: int
    state: int


MESSAGE_CLASSES: dict[int, type[WireMessage]] = {
    cls.TYPE: cls
    for cls in (Hello, Caps, Arm, Armed, SetStim, Heartbeat, Stop, EStop, Ack, Nack, Status, Fault)
}


def decode_message(frame: Frame) -> WireMessage:
    """Parse the payload of a frame into its message struct.

    Raises:
        ProtocolError: ``unknown_type`` or ``bad_len``.
    """
    cls = MESSAGE_CLASSES.get(frame.msg_type)
    if cls is None:
        known = ", ".join(f"0x{t:02x}" for t in sorted(MESSAGE_CLASSES))
        raise ProtocolError(
            f"Expected a message type in {{{known}}}, actual 0x{frame.msg_type:02x}",
            code="unknown_type",
        )
    return cls.unpack(frame.payload)


def field_names(cls: type[Any]) -> list[str]:
    """Names of a payload struct's fields in wire order."""
    return [f.name for f in fields(cls)]
