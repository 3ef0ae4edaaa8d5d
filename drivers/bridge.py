"""The device behind the NeuroLoop ZeroMQ protocol: a :class:`~protocol.backend.Backend`.

:class:`SerialBackend` translates protocol sessions into device-protocol commands:

* ``configure`` → (HELLO if needed) → ARM with the device envelope converted field by field
  from the validated envelope of the ``configure`` (:func:`device_envelope`: integer device
  units, rounded towards the safe side, nothing defaulted);
* ``reset`` → checks the device is armed and healthy (after a device reset, fault or link loss
  only a new ``configure`` re-arms: nothing restarts by itself);
* ``step`` → SET_STIM with a lease of ``lease_periods`` control periods, held for
  ``duration_ms`` of wall-clock time with HEARTBEATs, then the sensed features of the latest
  STATUS become the observation; a device fault, reset or link loss during the step is a
  ``backend_fault`` that stops stimulation;
* every stop path → STOP (ramped); close → STOP and release the port.

The device re-checks every command against its armed envelope and stops on its own when the
lease or watchdog runs out, so a bridge or controller that dies mid-step cannot leave current
flowing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import structlog

from core.clock import TimeSource
from core.errors import ConfigError, DeviceError
from drivers.base import StimulatorABC
from drivers.envelope import DeviceEnvelope, envelope_problems
from drivers.messages import DeviceState, StopReason, fault_names
from protocol.backend import Backend, StepResult
from protocol.envelope.config import SafetyEnvelope
from protocol.observables import DEVICE_READBACK_FIELDS, SENSED_FIELDS
from protocol.schema import Capabilities, ConfigValue, ParamSpec

log = structlog.get_logger()

#: Sensed features (the simulator's observation names for what an implant measures, in STATUS
#: order) followed by the device's read-backs; all measurable (``protocol.observables``).
FEATURE_FIELDS: tuple[str, ...] = SENSED_FIELDS
OBSERVATION_FIELDS: tuple[str, ...] = (*FEATURE_FIELDS, *DEVICE_READBACK_FIELDS)

_EPS = 1e-9


def _floor(x: float) -> int:
    return math.floor(x + _EPS)


def _ceil(x: float) -> int:
    return math.ceil(x - _EPS)


def device_envelope(
    env: SafetyEnvelope, control_period_ms: float, safe_stop_ms: int = 250
) -> DeviceEnvelope:
    """Convert the controller's envelope into the device's integer envelope, field by field.

    Every rule value of the one envelope definition (``protocol.envelope``) has its device
    field: limits become µA, µs and 0.1 Hz; maxima and rates are rounded down, minima and the
    soft start up, so the device is never looser than the controller; lease and watchdog are
    ``lease_periods`` and ``watchdog_periods`` control periods in ms. Nothing is defaulted.

    Args:
        env: The validated envelope of the ``configure`` (physical domain, amplitude in mA).
        control_period_ms: The session's control period.
        safe_stop_ms: The safe-stop ramp (≤ 250 ms), a device setting outside the envelope.

    Raises:
        ConfigError: The envelope is not in the physical domain, or a value cannot be
            represented in the device's units (the device would refuse it).
    """
    if env.domain != "physical":
        raise ConfigError(
            f"Expected a physical-domain envelope (amplitude in mA) for a device, actual "
            f"domain {env.domain!r}"
        )
    device = DeviceEnvelope(
        amp_min_ua=_ceil(env.amplitude_min * 1000.0),
        amp_max_ua=_floor(env.amplitude_max * 1000.0),
        pw_min_us=_ceil(env.pulse_width_min_us),
        pw_max_us=_floor(env.pulse_width_max_us),
        freq_min_dhz=_ceil(env.frequency_min_hz * 10.0),
        freq_max_dhz=_floor(env.frequency_max_hz * 10.0),
        q_max_nc=_floor(env.charge_per_phase_max * 1000.0),
        area_mm2_x100=_floor(env.electrode_area_cm2 * 10_000.0),
        d_max_nc_per_mm2=_floor(env.charge_density_max_uc_cm2 * 10.0),
        ramp_up_ua_per_s=_floor(env.amplitude_up_per_s * 1000.0),
        ramp_down_ua_per_s=_floor(env.amplitude_down_per_s * 1000.0),
        freq_step_dhz=_floor(env.frequency_step_hz * 10.0),
        pw_step_us=_floor(env.pulse_width_step_us),
        lease_max_ms=_floor(env.lease_periods * control_period_ms),
        watchdog_ms=_floor(env.watchdog_periods * control_period_ms),
        soft_start_ms=_ceil(env.soft_start_s * 1000.0),
        safe_stop_ms=safe_stop_ms,
        gap_us=_ceil(env.interphase_gap_us),
        margin_us=_ceil(env.recharge_margin_us),
    )
    problems = envelope_problems(device)
    if problems:
        raise ConfigError(
            "Expected the envelope to be representable in device units, actual: "
            + "; ".join(problems)
        )
    return device


#: How a ``step`` relates to wall-clock time (see :class:`SerialBackend`).
STEP_MODES = ("window", "latest")


class SerialBackend(Backend):
    """Serve a stimulator (any :class:`~drivers.base.StimulatorABC`) over the protocol.

    Args:
        driver: The open driver (a :class:`~drivers.serial_stimulator.SerialStimulator`).
        session_timeout_s: Protocol session timeout (stimulation stops when it runs out).
        safe_stop_ms: Safe-stop ramp written into the device envelope (≤ 250 ms).
        settle_timeout_s: Longest wait for the output to ramp to zero before re-arming.
        clock: Monotonic clock in s (:mod:`core.clock`; a FakeClock in tests).
        sleep: Sleep function (injectable for tests).
        step_mode: ``window`` — a step applies the setpoint, keeps the lease alive for the
            step's duration in wall-clock time and returns the STATUS sensed at its end
            (lockstep clients such as a gymnasium environment); ``latest`` — a step applies the
            setpoint and returns the latest STATUS at once, because the device senses on its own
            clock (a real-time controller, which paces the loop itself and would otherwise see
            every observation arrive one full period late).
    """

    kind = "serial"

    def __init__(
        self,
        driver: StimulatorABC,
        *,
        session_timeout_s: float = 2.0,
        safe_stop_ms: int = 250,
        settle_timeout_s: float = 10.0,
        clock: TimeSource = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        step_mode: str = "window",
    ) -> None:
        super().__init__(session_timeout_s=session_timeout_s, clock=clock)
        if step_mode not in STEP_MODES:
            raise ValueError(f"Expected step_mode in {STEP_MODES}, actual {step_mode!r}")
        self._step_mode = step_mode
        self.driver = driver
        self._safe_stop_ms = safe_stop_ms
        self._settle_timeout_s = settle_timeout_s
        self._sleep = sleep
        self._device_envelope: DeviceEnvelope | None = None
        self._control_period_ms = 100.0
        self._t_ms = 0.0
        self._t_reset_s = clock()
        self._caps_cache: Capabilities | None = None

    # ------------------------------------------------------------------------ capabilities
    def capabilities(self) -> Capabilities:
        """Device ranges (from CAPS once the device answered, else the absolute caps)."""
        if self._caps_cache is not None:
            return self._caps_cache
        caps = self.driver.caps
        amp_max_ma = (caps.amp_max_ua if caps else 10_000) / 1000.0
        pw = (caps.pw_min_us, caps.pw_max_us) if caps else (20, 450)
        freq = (caps.freq_min_dhz / 10.0, caps.freq_max_dhz / 10.0) if caps else (2.0, 250.0)
        result = Capabilities(
            stim_params=(
                ParamSpec("amplitude_ma", "mA", "amplitude", 0.0, amp_max_ma),
                ParamSpec("frequency_hz", "Hz", "frequency", freq[0], freq[1]),
                ParamSpec("pulse_width_us", "us", "pulse_width", float(pw[0]), float(pw[1])),
            ),
            observation_fields=OBSERVATION_FIELDS,
            control_period_ms=100.0,
            min_duration_ms=10.0,
            max_duration_ms=2000.0,
            supports_spikes=False,
        )
        if caps is not None:
            self._caps_cache = result
        return result

    # ------------------------------------------------------------------------------ hooks
    def _healthy_session(self) -> bool:
        drv = self.driver
        link_ok = getattr(drv, "link_ok", True)
        reset = getattr(drv, "device_reset", None)
        return drv.caps is not None and link_ok and reset is None

    def _on_configure(self, options: Mapping[str, ConfigValue], control_period_ms: float) -> None:
        if self.envelope is None:
            raise ConfigError("Expected an envelope with configure, actual none")
        env = device_envelope(self.envelope, control_period_ms, self._safe_stop_ms)
        if not self._healthy_session():
            self.driver.handshake()
            self._caps_cache = None
        self._wait_output_off()
        self.driver.arm(env)  # SafetyLimitError (a ValueError) → bad_config with its reason
        self._device_envelope = env
        self._control_period_ms = control_period_ms
        log.info("bridge_armed", envelope_hash=f"0x{env.hash():08x}", **env.as_dict())

    def _wait_output_off(self) -> None:
        """Keep the link alive while a previous ramp-down finishes (ARM needs output off)."""
        deadline = self._clock() + self._settle_timeout_s
        while True:
            status = self.driver.status()
            if status is None or status.amp_ua == 0:
                return
            if self._clock() > deadline:
                raise DeviceError(
                    f"Expected the output to ramp to 0 within {self._settle_timeout_s} s before "
                    f"re-arming, actual {status.amp_ua} µA still delivered"
                )
            # A heartbeat keeps a normal ramp-down alive; a device in SAFE_STOP (or with a fault
            # latched) ramps off on its own and refuses it (NOT_ARMED): just wait then.
            armed = status.state in (DeviceState.ARMED_IDLE, DeviceState.STIMULATING,
                                     DeviceState.STOPPING)  # fmt: skip
            if self.driver.envelope is not None and armed and not status.fault_bits:
                self.driver.heartbeat(self.driver.envelope.lease_max_ms)
            self._sleep(0.02)

    def _require_armed(self) -> DeviceEnvelope:
        env = self.driver.envelope
        reset = getattr(self.driver, "device_reset", None)
        if reset is not None:
            raise DeviceError(f"{reset}; send configure to re-arm")
        if not getattr(self.driver, "link_ok", True):
            raise DeviceError(
                f"Expected a live device link, actual lost "
                f"({getattr(self.driver, 'link_error', '?')}); restart the service"
            )
        if env is None:
            raise DeviceError("Expected an armed device, actual disarmed; send configure")
        status = self.driver.status()
        if status is not None and status.fault_bits:
            raise DeviceError(
                f"Expected no latched device fault, actual {fault_names(status.fault_bits)} "
                f"(state {DeviceState(status.state).name}); send configure to re-arm"
            )
        return env

    def _on_reset(self, seed: int | None) -> float:
        self._require_armed()
        if seed is not None:
            log.info("bridge_seed_ignored", seed=seed, reason="a device has no seed")
        self._t_ms = 0.0
        self._t_reset_s = self._clock()
        return self._t_ms

    def _lease_ms(self, env: DeviceEnvelope, duration_ms: float) -> int:
        lease = max(duration_ms, self._control_period_ms) * 2.5
        caps = self.driver.caps
        lo = caps.lease_min_ms if caps else 50
        return int(min(env.lease_max_ms, max(lo, lease)))

    def _on_step(
        self, stimulus: Mapping[str, float] | None, duration_ms: float, want_spikes: bool
    ) -> StepResult:
        env = self._require_armed()
        lease_ms = self._lease_ms(env, duration_ms)
        start = self._clock()
        amp_ma = 0.0 if stimulus is None else stimulus["amplitude_ma"]
        if amp_ma > 0.0 and stimulus is not None:
            self.driver.set_stimulation(
                amplitude_ua=amp_ma * 1000.0,
                pulse_width_us=stimulus["pulse_width_us"],
                frequency_hz=stimulus["frequency_hz"],
                lease_ms=lease_ms,
            )
        elif self.driver.commanded is not None and self.driver.commanded.amp_ua > 0:
            prev = self.driver.commanded
            self.driver.set_stimulation(
                amplitude_ua=0.0,
                pulse_width_us=prev.pw_us,
                frequency_hz=prev.freq_dhz / 10.0,
                lease_ms=lease_ms,
            )
        else:
            self.driver.heartbeat(lease_ms)
        deadline = start + (duration_ms / 1000.0 if self._step_mode == "window" else 0.0)
        renew_s = lease_ms / 3000.0
        while True:
            left = deadline - self._clock()
            if left <= 0.0:
                break
            self._sleep(min(left, renew_s))
            if self._clock() < deadline:
                self.driver.heartbeat(lease_ms)
        self._require_armed()
        status = self.driver.status()
        if status is None:
            raise DeviceError("Expected a STATUS from the device during the step, actual none")
        features = status.features()
        if not features:
            raise DeviceError(
                "Expected valid sensed features in STATUS, actual sense_valid=0 (sensor fault)"
            )
        fields = {name: features[name] for name in FEATURE_FIELDS}
        fields["delivered_amplitude_ma"] = status.amp_ua / 1000.0
        fields["delivered_charge_uc"] = status.charge_nc / 1000.0
        fields["lease_remaining_ms"] = float(status.lease_remaining_ms)
        if self._step_mode == "window":
            self._t_ms += (self._clock() - start) * 1000.0
        else:
            self._t_ms = (self._clock() - self._t_reset_s) * 1000.0
        return StepResult(fields, self._t_ms)

    def _stimulation_lost(self) -> str | None:
        """The device's output stopped between steps (lease lapsed, fault, reset, lost link).

        Only ``step`` renews the device's lease, so a controller that sends heartbeats alone
        lets it lapse; ``status`` then reports the stop instead of a stale ``stimulating``.
        """
        try:
            self._require_armed()
        except Exception as err:  # unreadable counts as stopped: never report stale output
            return f"device stopped stimulating: {err}"
        return None

    def _on_stop(self, reason: str) -> None:
        drv = self.driver
        if drv.closed or drv.envelope is None or not self._healthy_session():
            return
        drv.stop(StopReason.HOST_REQUEST)

    def _on_close(self) -> None:
        self.driver.close()
