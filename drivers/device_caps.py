"""What a device is: its fixed properties, its CAPS message, and the envelope checks they imply.

Shared by the device (``drivers.firmware`` refuses an ARM outside its capabilities) and the host
(``drivers.base`` refuses to send such an ARM in the first place), so both sides apply the same
rules with the same messages. The device also refuses a zero in any limit but ``amp_min_ua``
(``docs/device-protocol.md`` §5): a 0 is never "the default" and never "no limit".
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.envelope import DeviceEnvelope
from drivers.messages import Caps

#: Impedance window checked before ARM (Ω), bench default of ``hil-safety-protocol.md`` §2.3 G.
IMPEDANCE_RANGE_OHM = (250, 5000)

#: DeviceEnvelope fields that must be at least 1: all but ``amp_min_ua`` (0 = no minimum, since
#: amplitude 0 is off). Named one by one, so a field added later is decided, not swept in.
NONZERO_FIELDS = (
    "amp_max_ua",
    "pw_min_us",
    "pw_max_us",
    "freq_min_dhz",
    "freq_max_dhz",
    "q_max_nc",
    "area_mm2_x100",
    "d_max_nc_per_mm2",
    "ramp_up_ua_per_s",
    "ramp_down_ua_per_s",
    "freq_step_dhz",
    "pw_step_us",
    "lease_max_ms",
    "watchdog_ms",
    "soft_start_ms",
    "safe_stop_ms",
)


def zero_limit_problems(env: DeviceEnvelope) -> list[str]:
    """Every limit of ``env`` that is 0 although it must be at least 1 (empty if none).

    A 0 never stands for a default or for "no limit": an envelope with one is a configuration
    error, refused by the host before sending and by the device with NACK ``OUT_OF_RANGE``.
    """
    return [
        f"Expected {name} ≥ 1 (a 0 is neither a default nor 'no limit'), actual 0"
        for name in NONZERO_FIELDS
        if getattr(env, name) == 0
    ]


@dataclass(frozen=True)
class FirmwareConfig:
    """Fixed properties of the (emulated) device.

    Args:
        fw_major: Firmware major version.
        fw_minor: Firmware minor version.
        amp_max_ua: Device's absolute amplitude cap in µA.
        pw_range_us: Device's pulse-width range in µs.
        freq_range_dhz: Device's pulse-rate range in 0.1 Hz.
        area_mm2_x100: Contact area of the connected electrode in mm² × 100.
        watchdog_range_ms: Watchdog values the device accepts in ARM.
        lease_range_ms: Lease values the device accepts.
        status_period_ms: STATUS period while a session is open.
        impedance_ohm: Impedance the device measures (the emulator's electrode).
    """

    fw_major: int = 1
    fw_minor: int = 0
    amp_max_ua: int = 10_000
    pw_range_us: tuple[int, int] = (20, 450)
    freq_range_dhz: tuple[int, int] = (20, 2500)
    area_mm2_x100: int = 600
    watchdog_range_ms: tuple[int, int] = (50, 500)
    lease_range_ms: tuple[int, int] = (50, 500)
    status_period_ms: int = 20
    impedance_ohm: int = 1000


def caps_of(config: FirmwareConfig, boot_id: int) -> Caps:
    """The CAPS message of a device with ``config`` in boot ``boot_id``."""
    return Caps(
        config.fw_major,
        config.fw_minor,
        boot_id,
        1,
        0,
        config.amp_max_ua,
        config.pw_range_us[0],
        config.pw_range_us[1],
        config.freq_range_dhz[0],
        config.freq_range_dhz[1],
        config.area_mm2_x100,
        config.watchdog_range_ms[0],
        config.watchdog_range_ms[1],
        config.lease_range_ms[0],
        config.lease_range_ms[1],
    )


def caps_problems(env: DeviceEnvelope, caps: Caps) -> list[str]:
    """Every way ``env`` exceeds what the device ``caps`` advertise (empty if none)."""
    problems: list[str] = []
    for name, value, lo, hi in (
        ("amp_max_ua", env.amp_max_ua, 0, caps.amp_max_ua),
        ("pw_min_us", env.pw_min_us, caps.pw_min_us, caps.pw_max_us),
        ("pw_max_us", env.pw_max_us, caps.pw_min_us, caps.pw_max_us),
        ("freq_min_dhz", env.freq_min_dhz, caps.freq_min_dhz, caps.freq_max_dhz),
        ("freq_max_dhz", env.freq_max_dhz, caps.freq_min_dhz, caps.freq_max_dhz),
        ("watchdog_ms", env.watchdog_ms, caps.watchdog_min_ms, caps.watchdog_max_ms),
        ("lease_max_ms", env.lease_max_ms, caps.lease_min_ms, caps.lease_max_ms),
        ("area_mm2_x100", env.area_mm2_x100, caps.area_mm2_x100, caps.area_mm2_x100),
    ):
        if not lo <= value <= hi:
            problems.append(f"Expected {name} in [{lo}, {hi}] (device caps), actual {value}")
    return problems
