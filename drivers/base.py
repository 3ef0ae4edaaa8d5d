"""Driver base class: public methods validate and enforce limits, then call a protected hook.

:class:`StimulatorABC` is the host side's last gate before the wire. Its public methods reject
(never clamp) anything outside the armed envelope, treat NaN/Inf as a fault, log every refusal
with a reason, and only then call the backend's ``_*_internal`` hook. Clamping is the
controller's governor's job; the device re-checks everything again on its side.
``close()`` is idempotent, the class is a context manager, and an instance garbage-collected
while open warns.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any

import structlog

from core.errors import DeviceError, SafetyFaultError, SafetyLimitError
from drivers.device_caps import caps_problems, zero_limit_problems
from drivers.envelope import DeviceEnvelope, check_envelope, setpoint_problem
from drivers.messages import (
    DEVICE_PROTOCOL_VERSION,
    Armed,
    Caps,
    DeviceState,
    MsgType,
    Nack,
    NackCode,
    SetStim,
    Status,
    StopReason,
)

log = structlog.get_logger()

#: Firmware major versions this driver speaks.
SUPPORTED_FW_MAJOR = (1,)


def nack_error(msg_type: MsgType, seq: int, nack: Nack) -> DeviceError:
    """The exception a refused command raises (``error_code`` is the device's NACK code)."""
    code = NackCode(nack.code).name if nack.code in NackCode._value2member_map_ else nack.code
    state = (
        DeviceState(nack.state).name if nack.state in DeviceState._value2member_map_ else nack.state
    )
    if msg_type == MsgType.HELLO and nack.code == NackCode.BAD_VERSION:
        return DeviceError(
            f"Expected a device that speaks device-protocol version {DEVICE_PROTOCOL_VERSION}, "
            f"actual one that refused HELLO proto_version {DEVICE_PROTOCOL_VERSION} (seq {seq}) "
            f"with NACK BAD_VERSION; state {state}. Its firmware speaks another version "
            "(version 1 sends unobservable features in STATUS); update the device firmware",
            error_code=nack.code,
        )
    return DeviceError(
        f"Device refused {msg_type.name} (seq {seq}): NACK {code}; state {state}",
        error_code=nack.code,
    )


class StimulatorABC(ABC):
    """A stimulator reached through the device protocol.

    Subclasses implement the ``_*_internal`` hooks; they receive only validated, integer-unit
    commands.
    """

    def __init__(self) -> None:
        self._closed = False
        self._caps: Caps | None = None
        self._envelope: DeviceEnvelope | None = None
        self._commanded: SetStim | None = None

    # -------------------------------------------------------------------------- properties
    @property
    def caps(self) -> Caps | None:
        """Capabilities from the last handshake."""
        return self._caps

    @property
    def envelope(self) -> DeviceEnvelope | None:
        """The armed envelope, or ``None`` when not armed."""
        return self._envelope

    @property
    def commanded(self) -> SetStim | None:
        """The last setpoint the device acknowledged."""
        return self._commanded

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def _require_open(self) -> None:
        if self._closed:
            raise DeviceError("Expected an open stimulator, actual closed")

    def _require_armed(self) -> DeviceEnvelope:
        self._require_open()
        if self._envelope is None:
            raise DeviceError(
                "Expected an armed device (call handshake() and arm()), actual disarmed"
            )
        return self._envelope

    # ------------------------------------------------------------------------- public API
    def handshake(self) -> Caps:
        """Open a session (HELLO → CAPS) and check the firmware version.

        Returns:
            The device's capabilities.

        Raises:
            DeviceError: On an unsupported firmware version or a refusal.
            DeviceTimeoutError: If the device does not answer.
        """
        self._require_open()
        caps = self._handshake_internal()
        if caps.fw_major not in SUPPORTED_FW_MAJOR:
            raise DeviceError(
                f"Expected firmware major version in {SUPPORTED_FW_MAJOR}, actual {caps.fw_major}"
            )
        self._caps = caps
        self._envelope = None
        self._commanded = None
        log.info("driver_handshake", boot_id=caps.boot_id, fw=f"{caps.fw_major}.{caps.fw_minor}")
        return caps

    def arm(self, envelope: DeviceEnvelope) -> Armed:
        """Arm the device with ``envelope``; the device must echo its hash.

        Raises:
            SafetyLimitError: If the envelope breaks the absolute caps or the device's caps, or
                has a 0 in a limit that must be at least 1.
            DeviceError: If the device refuses or echoes another hash.
        """
        self._require_open()
        if self._caps is None:
            raise DeviceError("Expected a handshake before arm(), actual none")
        check_envelope(envelope)
        problems = zero_limit_problems(envelope) + caps_problems(envelope, self._caps)
        if problems:
            reason = "; ".join(problems)
            log.error("driver_arm_rejected", reason=reason)
            raise SafetyLimitError(reason)
        armed = self._arm_internal(envelope)
        if armed.envelope_hash != envelope.hash():
            raise DeviceError(
                f"Expected the device to echo envelope hash 0x{envelope.hash():08x}, actual "
                f"0x{armed.envelope_hash:08x}"
            )
        self._envelope = envelope
        self._commanded = None
        log.info("driver_armed", envelope_hash=f"0x{envelope.hash():08x}")
        return armed

    def set_stimulation(
        self,
        *,
        amplitude_ua: float,
        pulse_width_us: float,
        frequency_hz: float,
        lease_ms: int,
        ramp_ua_per_s: int = 0,
    ) -> SetStim:
        """Command a setpoint held for ``lease_ms`` unless renewed.

        Values are rounded to the wire's integer units (µA, µs, 0.1 Hz) and checked against
        the armed envelope; nothing is clamped. Every argument is keyword-only: the device
        orders the triplet (amplitude, pulse width, frequency), a ``Setpoint`` (amplitude,
        frequency, pulse width), so neither is ever passed by position.

        Args:
            amplitude_ua: Amplitude in µA (0 turns the output off with a ramp).
            pulse_width_us: Phase width in µs.
            frequency_hz: Pulse rate in Hz.
            lease_ms: How long the device keeps this setpoint without a renewal (ms).
            ramp_ua_per_s: Requested ramp rate in µA/s (0 = the armed ramp-up rate).

        Returns:
            The command as sent.

        Raises:
            SafetyFaultError: A value is NaN or infinite (a stop is sent first).
            SafetyLimitError: The setpoint or lease is outside the armed envelope.
            DeviceError: Not armed, or the device refused (``error_code`` holds its reason).
        """
        env = self._require_armed()
        values = {
            "amplitude_ua": amplitude_ua,
            "pulse_width_us": pulse_width_us,
            "frequency_hz": frequency_hz,
        }
        for name, value in values.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                reason = f"Expected a finite {name}, actual {value!r}"
                log.error("driver_fault_non_finite", reason=reason)
                try:
                    self.stop(StopReason.HOST_FAULT)
                except DeviceError as err:
                    log.error("driver_fault_stop_failed", error=str(err))
                raise SafetyFaultError(reason)
        cmd_values = (round(amplitude_ua), round(pulse_width_us), round(frequency_hz * 10.0))
        for name, wire_value in zip(("amp_ua", "pw_us", "freq_dhz"), cmd_values, strict=True):
            if not 0 <= wire_value <= 0xFFFF:
                reason = f"Expected {name} in [0, 65535], actual {wire_value}"
                log.error("driver_setpoint_rejected", reason=reason)
                raise SafetyLimitError(reason)
        lease_lo = self._caps.lease_min_ms if self._caps else 1
        if not lease_lo <= lease_ms <= env.lease_max_ms:
            reason = f"Expected lease_ms in [{lease_lo}, {env.lease_max_ms}], actual {lease_ms}"
            log.error("driver_setpoint_rejected", reason=reason)
            raise SafetyLimitError(reason)
        if not 0 <= ramp_ua_per_s <= env.ramp_up_ua_per_s:
            reason = (
                f"Expected ramp_ua_per_s in [0, {env.ramp_up_ua_per_s}], actual {ramp_ua_per_s}"
            )
            log.error("driver_setpoint_rejected", reason=reason)
            raise SafetyLimitError(reason)
        prev = self._commanded
        on = prev is not None and prev.amp_ua > 0
        status = self.status()
        actual = status.amp_ua if status is not None else 0
        problem = setpoint_problem(
            env,
            *cmd_values,
            actual_amp_ua=actual,
            current_pw_us=prev.pw_us if on and prev else None,
            current_freq_dhz=prev.freq_dhz if on and prev else None,
        )
        if problem is not None:
            log.error("driver_setpoint_rejected", kind=problem[0], reason=problem[1])
            raise SafetyLimitError(problem[1])
        cmd = SetStim(0, *cmd_values, ramp_ua_per_s, lease_ms)
        self._set_stimulation_internal(cmd)
        self._commanded = cmd
        return cmd

    def heartbeat(self, lease_ms: int) -> None:
        """Renew the lease without changing the setpoint.

        Raises:
            SafetyLimitError: ``lease_ms`` outside the armed envelope.
        """
        env = self._require_armed()
        if not 1 <= lease_ms <= env.lease_max_ms:
            raise SafetyLimitError(
                f"Expected lease_ms in [1, {env.lease_max_ms}], actual {lease_ms}"
            )
        self._heartbeat_internal(lease_ms)

    def stop(self, reason: StopReason = StopReason.HOST_REQUEST) -> None:
        """Ramp the output to zero (the device stays armed)."""
        self._require_open()
        log.info("driver_stop", reason=reason.name)
        self._stop_internal(reason)
        self._commanded = None

    def estop(self) -> None:
        """Emergency stop: output off at once, no ramp; the device must be re-armed."""
        self._require_open()
        log.warning("driver_estop")
        self._envelope = None
        self._commanded = None
        self._estop_internal()

    def close(self) -> None:
        """Stop any stimulation (ramped) and release the link; safe to call twice."""
        if self._closed:
            return
        try:
            if self._envelope is not None and self._commanded is not None:
                self._stop_internal(StopReason.HOST_SHUTDOWN)
        except DeviceError as err:
            log.warning("driver_close_stop_failed", error=str(err))
        finally:
            self._closed = True
            self._envelope = None
            self._commanded = None
            self._close_internal()

    def __enter__(self) -> StimulatorABC:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(
                f"{type(self).__name__} was not closed; call close() or use it as a context "
                "manager",
                ResourceWarning,
                stacklevel=2,
            )

    # -------------------------------------------------------------------------------- hooks
    @abstractmethod
    def status(self) -> Status | None:
        """The latest STATUS the device sent (``None`` before the first one)."""

    @abstractmethod
    def health(self) -> dict[str, Any]:
        """Link and device health counters for logs and the bridge."""

    @abstractmethod
    def _handshake_internal(self) -> Caps: ...

    @abstractmethod
    def _arm_internal(self, envelope: DeviceEnvelope) -> Armed: ...

    @abstractmethod
    def _set_stimulation_internal(self, cmd: SetStim) -> None: ...

    @abstractmethod
    def _heartbeat_internal(self, lease_ms: int) -> None: ...

    @abstractmethod
    def _stop_internal(self, reason: StopReason) -> None: ...

    @abstractmethod
    def _estop_internal(self) -> None: ...

    @abstractmethod
    def _close_internal(self) -> None: ...
