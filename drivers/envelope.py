"""The stimulation envelope in device integer units, its hash, and the checks both sides run.

The same functions run on the host (before a command is sent) and in the device emulator (on
every command received), so a host whose checks are bypassed still meets the device's refusal
(``docs/device-protocol.md`` §5). Units: µA, µs, 0.1 Hz (dHz), nC, mm²·100, ms.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import astuple, dataclass, fields
from typing import ClassVar

from core.errors import ProtocolError, SafetyLimitError
from protocol.envelope.config import DENSITY_CEILING_UC_CM2, PHYSICAL_CAPS
from protocol.envelope.config import SHANNON_K as ENVELOPE_SHANNON_K
from protocol.envelope.floors import PHYSICAL_TIMING, rule_for

#: Absolute caps and rule floors in device units, derived from the one envelope definition
#: (``protocol.envelope``: ``PHYSICAL_CAPS`` and the physical-domain floors).
ABS_AMP_MAX_UA = round(PHYSICAL_CAPS.amplitude_max * 1000.0)
ABS_PW_RANGE_US = (round(PHYSICAL_CAPS.pulse_width_min_us), round(PHYSICAL_CAPS.pulse_width_max_us))
ABS_FREQ_RANGE_DHZ = (
    round(PHYSICAL_CAPS.frequency_min_hz * 10.0),
    round(PHYSICAL_CAPS.frequency_max_hz * 10.0),
)
#: Shannon k used for the charge-per-phase ceiling.
SHANNON_K = ENVELOPE_SHANNON_K
#: Charge-density ceiling: 30 µC/cm² = 300 nC/mm².
ABS_D_MAX_NC_PER_MM2 = round(DENSITY_CEILING_UC_CM2 * 10.0)
ABS_SAFE_STOP_MAX_MS = 250


def _rule_range(field: str, scale: float) -> tuple[int, int]:
    rule = rule_for("physical", field)
    return math.ceil(rule.lo * scale - 1e-9), math.floor(rule.hi * scale + 1e-9)


ABS_RAMP_UP_RANGE_UA_PER_S = _rule_range("amplitude_up_per_s", 1000.0)
ABS_RAMP_DOWN_RANGE_UA_PER_S = _rule_range("amplitude_down_per_s", 1000.0)
ABS_FREQ_STEP_RANGE_DHZ = _rule_range("frequency_step_hz", 10.0)
ABS_PW_STEP_RANGE_US = _rule_range("pulse_width_step_us", 1.0)
ABS_GAP_RANGE_US = _rule_range("interphase_gap_us", 1.0)
ABS_MARGIN_RANGE_US = _rule_range("recharge_margin_us", 1.0)
#: Lease and watchdog in absolute time (the output stops within watchdog + safe stop).
ABS_LEASE_RANGE_MS = (round(PHYSICAL_TIMING.lease_ms[0]), round(PHYSICAL_TIMING.lease_ms[1]))
ABS_WATCHDOG_RANGE_MS = (
    round(PHYSICAL_TIMING.watchdog_ms[0]),
    round(PHYSICAL_TIMING.watchdog_ms[1]),
)


def shannon_q_max_nc(area_mm2_x100: int, k: float = SHANNON_K) -> int:
    """Charge-per-phase ceiling from the Shannon criterion, ``Q = sqrt(10^k · A)``.

    Args:
        area_mm2_x100: Electrode area in mm² × 100 (a 0.06 cm² contact is 600).
        k: Shannon k.

    Returns:
        The ceiling in nC, rounded down.
    """
    area_cm2 = area_mm2_x100 / 100.0 / 100.0
    return math.floor(math.sqrt(10.0**k * area_cm2) * 1000.0)


@dataclass(frozen=True)
class DeviceEnvelope:
    """Session limits sent with ARM. All fields are u16.

    Args:
        amp_min_ua: Lowest non-zero amplitude in µA (0 is always allowed and means off).
        amp_max_ua: Highest amplitude in µA.
        pw_min_us: Narrowest phase in µs.
        pw_max_us: Widest phase in µs.
        freq_min_dhz: Lowest pulse rate in 0.1 Hz.
        freq_max_dhz: Highest pulse rate in 0.1 Hz.
        q_max_nc: Charge-per-phase ceiling in nC.
        area_mm2_x100: Electrode contact area in mm² × 100.
        d_max_nc_per_mm2: Charge-density ceiling per phase in nC/mm² (300 = 30 µC/cm²).
        ramp_up_ua_per_s: Fastest amplitude increase in µA/s.
        ramp_down_ua_per_s: Fastest amplitude decrease in µA/s (normal stops).
        freq_step_dhz: Largest frequency change per command in 0.1 Hz while stimulating.
        pw_step_us: Largest pulse-width change per command in µs while stimulating.
        lease_max_ms: Longest lease a command may request in ms.
        watchdog_ms: Silence after which the device safe-stops, in ms.
        soft_start_ms: Shortest time to ramp from 0 to a target after ARM or a stop, in ms.
        safe_stop_ms: Time of the linear ramp to 0 on a safe stop, in ms (≤ 250).
        gap_us: Interphase gap in µs, counted in the duty check.
        margin_us: Recharge margin in µs after each pulse, counted in the duty check
            (``period ≥ 2·pw + gap + margin``).
    """

    FMT: ClassVar[struct.Struct] = struct.Struct("<19H")

    amp_min_ua: int = 0
    amp_max_ua: int = 3500
    pw_min_us: int = 60
    pw_max_us: int = 120
    freq_min_dhz: int = 600
    freq_max_dhz: int = 1850
    q_max_nc: int = 1800
    area_mm2_x100: int = 600
    d_max_nc_per_mm2: int = 300
    ramp_up_ua_per_s: int = 500
    ramp_down_ua_per_s: int = 1000
    freq_step_dhz: int = 200
    pw_step_us: int = 10
    lease_max_ms: int = 250
    watchdog_ms: int = 300
    soft_start_ms: int = 2000
    safe_stop_ms: int = 250
    gap_us: int = 0
    margin_us: int = 100

    def pack(self) -> bytes:
        """Serialise to the 38-byte ARM prefix.

        Raises:
            ProtocolError: ``code="bad_field"`` if a field is not a u16.
        """
        try:
            return self.FMT.pack(*astuple(self))
        except struct.error as err:
            raise ProtocolError(
                f"Expected every envelope field in [0, 65535], actual {astuple(self)}",
                code="bad_field",
            ) from err

    def hash(self) -> int:
        """CRC-32 of the packed envelope, echoed by the device in ARMED."""
        return zlib.crc32(self.pack()) & 0xFFFFFFFF

    def as_dict(self) -> dict[str, int]:
        """Field name → value, for logs and recordings."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self) if f.name != "FMT"}


def _range(name: str, value: int, lo: int, hi: int, problems: list[str]) -> None:
    if not lo <= value <= hi:
        problems.append(f"Expected {name} in [{lo}, {hi}], actual {value}")


def envelope_problems(env: DeviceEnvelope) -> list[str]:
    """Every way ``env`` breaks the absolute caps or its own consistency (empty if none)."""
    problems: list[str] = []
    _range("amp_max_ua", env.amp_max_ua, 0, ABS_AMP_MAX_UA, problems)
    _range("amp_min_ua", env.amp_min_ua, 0, env.amp_max_ua, problems)
    _range("pw_min_us", env.pw_min_us, ABS_PW_RANGE_US[0], ABS_PW_RANGE_US[1], problems)
    _range("pw_max_us", env.pw_max_us, env.pw_min_us, ABS_PW_RANGE_US[1], problems)
    _range("freq_min_dhz", env.freq_min_dhz, *ABS_FREQ_RANGE_DHZ, problems)
    _range("freq_max_dhz", env.freq_max_dhz, env.freq_min_dhz, ABS_FREQ_RANGE_DHZ[1], problems)
    _range("area_mm2_x100", env.area_mm2_x100, 1, 65535, problems)
    _range("d_max_nc_per_mm2", env.d_max_nc_per_mm2, 1, ABS_D_MAX_NC_PER_MM2, problems)
    if env.area_mm2_x100 >= 1:
        q_ceiling = min(
            shannon_q_max_nc(env.area_mm2_x100),
            # The density limit is a rule of its own (setpoint_problem); the ceiling of the
            # charge limit is the absolute 30 µC/cm², as in protocol.envelope.config.validate.
            ABS_D_MAX_NC_PER_MM2 * env.area_mm2_x100 // 100,
        )
        _range("q_max_nc", env.q_max_nc, 1, q_ceiling, problems)
    _range("ramp_up_ua_per_s", env.ramp_up_ua_per_s, *ABS_RAMP_UP_RANGE_UA_PER_S, problems)
    _range("ramp_down_ua_per_s", env.ramp_down_ua_per_s, *ABS_RAMP_DOWN_RANGE_UA_PER_S, problems)
    _range("lease_max_ms", env.lease_max_ms, *ABS_LEASE_RANGE_MS, problems)
    _range("watchdog_ms", env.watchdog_ms, *ABS_WATCHDOG_RANGE_MS, problems)
    _range("safe_stop_ms", env.safe_stop_ms, 1, ABS_SAFE_STOP_MAX_MS, problems)
    _range("soft_start_ms", env.soft_start_ms, 0, 60_000, problems)
    _range("freq_step_dhz", env.freq_step_dhz, *ABS_FREQ_STEP_RANGE_DHZ, problems)
    _range("pw_step_us", env.pw_step_us, *ABS_PW_STEP_RANGE_US, problems)
    _range("gap_us", env.gap_us, *ABS_GAP_RANGE_US, problems)
    _range("margin_us", env.margin_us, *ABS_MARGIN_RANGE_US, problems)
    # Duty: the shortest period (highest rate) must hold the shortest pulse with gap and margin.
    period_us = 10_000_000 // max(env.freq_max_dhz, 1)
    needed_us = 2 * env.pw_min_us + env.gap_us + env.margin_us
    if period_us < needed_us:
        problems.append(
            f"Expected the period at freq_max_dhz={env.freq_max_dhz} ({period_us} µs) to hold "
            f"2·pw_min_us + gap_us + margin_us = {needed_us} µs, actual {period_us} µs"
        )
    return problems


def check_envelope(env: DeviceEnvelope) -> None:
    """Raise if ``env`` breaks the absolute caps.

    Raises:
        SafetyLimitError: Naming the first problem (all problems are listed in the message).
    """
    problems = envelope_problems(env)
    if problems:
        raise SafetyLimitError("DeviceEnvelope rejected: " + "; ".join(problems))


def charge_nc(amp_ua: int, pw_us: int) -> int:
    """Charge per phase in nC (µA × µs / 1000), rounded up so a check never under-counts."""
    return -(-amp_ua * pw_us // 1000)


def setpoint_problem(
    env: DeviceEnvelope,
    amp_ua: int,
    pw_us: int,
    freq_dhz: int,
    *,
    actual_amp_ua: int = 0,
    current_pw_us: int | None = None,
    current_freq_dhz: int | None = None,
) -> tuple[str, str] | None:
    """Check one setpoint against the envelope, the way the device does.

    Args:
        env: The armed envelope.
        amp_ua: Target amplitude in µA (0 = off; then nothing else is checked).
        pw_us: Target phase width in µs.
        freq_dhz: Target pulse rate in 0.1 Hz.
        actual_amp_ua: Amplitude being delivered now (the ramp starts there, so the charge of
            the new pulse width is checked against it too).
        current_pw_us: Pulse width now being delivered, or ``None`` when the output is off
            (then no slew limit applies).
        current_freq_dhz: Pulse rate now being delivered, or ``None`` when off.

    Returns:
        ``None`` if allowed, else ``(kind, reason)`` with ``kind`` one of ``out_of_range``,
        ``charge_limit``, ``slew_limit`` and a reason "Expected X in [a, b], actual Y".
    """
    if amp_ua == 0:
        return None
    checks = (
        # amp_min_ua is the host's lowest target while on; ramps pass below it (§5).
        ("amp_ua", amp_ua, 1, env.amp_max_ua),
        ("pw_us", pw_us, env.pw_min_us, env.pw_max_us),
        ("freq_dhz", freq_dhz, env.freq_min_dhz, env.freq_max_dhz),
    )
    for name, value, lo, hi in checks:
        if not lo <= value <= hi:
            return "out_of_range", f"Expected {name} in [{lo}, {hi}], actual {value}"
    period_us = 10_000_000 // freq_dhz
    needed_us = 2 * pw_us + env.gap_us + env.margin_us
    if period_us < needed_us:
        return (
            "out_of_range",
            f"Expected 2·pw_us + gap_us {env.gap_us} + margin_us {env.margin_us} ≤ period "
            f"{period_us} µs, actual {needed_us} µs",
        )
    q_worst = charge_nc(max(amp_ua, actual_amp_ua), pw_us)
    if q_worst > env.q_max_nc:
        return (
            "charge_limit",
            f"Expected charge per phase in [0, {env.q_max_nc}] nC, actual {q_worst}",
        )
    density = q_worst * 100 / env.area_mm2_x100
    if density > env.d_max_nc_per_mm2:
        return (
            "charge_limit",
            f"Expected charge density in [0, {env.d_max_nc_per_mm2}] nC/mm², actual {density:.1f}",
        )
    if current_pw_us is not None and abs(pw_us - current_pw_us) > env.pw_step_us:
        return (
            "slew_limit",
            f"Expected a pulse-width step in [0, {env.pw_step_us}] µs, actual "
            f"{abs(pw_us - current_pw_us)} ({current_pw_us} → {pw_us})",
        )
    if current_freq_dhz is not None and abs(freq_dhz - current_freq_dhz) > env.freq_step_dhz:
        return (
            "slew_limit",
            f"Expected a frequency step in [0, {env.freq_step_dhz}] dHz, actual "
            f"{abs(freq_dhz - current_freq_dhz)} ({current_freq_dhz} → {freq_dhz})",
        )
    return None
