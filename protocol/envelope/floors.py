"""The floors no envelope file can cross: every safety rule stays switched on.

An envelope inside the absolute caps (``config.Caps``) could still switch a rule off: a ramp of
10⁶ mV/s, no soft start, step limits as wide as the range, a hundred invalid inputs before a
stop, or a lease so long that a device keeps stimulating seconds after its host went silent.
Each rule therefore has a closed interval per domain that a file must stay inside, and the
lease and watchdog are bounded in absolute time (``lease_periods·T`` and
``watchdog_periods·T``), so the output stops within a bounded time after loss of contact
whatever the control period. ``docs/controller.md`` ("Floors") lists every number with its
source; :func:`validate <protocol.envelope.config.validate>` and
:func:`check_timing` enforce them on the controller, on every backend and (converted to
integer units) in the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import ConfigError


@dataclass(frozen=True)
class RuleBounds:
    """Allowed interval of one rule parameter in one domain.

    Args:
        field: Envelope field name.
        lo: Smallest allowed value (the rule at its most lenient can be no looser than ``hi``,
            and ``lo`` keeps a limit from being zero where zero would freeze the output).
        hi: Largest allowed value.
        unit: Unit for messages.
        source: Where the number comes from (shown in errors and docs).
    """

    field: str
    lo: float
    hi: float
    unit: str
    source: str


_HIL = "hil-safety-protocol §2.3"

#: Model domain (the simulator: mV of drive, typical control period 20 ms).
MODEL_RULES: tuple[RuleBounds, ...] = (
    RuleBounds("amplitude_up_per_s", 1e-3, 4000.0, "mV/s", "0 → 400 mV cap in ≥ 0.1 s"),
    RuleBounds("amplitude_down_per_s", 1e-3, 20000.0, "mV/s", "400 mV cap → 0 in ≥ 20 ms"),
    RuleBounds("frequency_step_hz", 0.1, 100.0, "Hz", "under half the 1–250 Hz cap range"),
    RuleBounds("pulse_width_step_us", 1.0, 1000.0, "µs", "a fifth of the 10–5000 µs cap range"),
    RuleBounds("soft_start_s", 0.1, 60.0, "s", "0 → cap over ≥ 5 periods of 20 ms"),
    RuleBounds("invalid_streak_to_fault", 1.0, 5.0, "", f"{_HIL} F (default 3)"),
    RuleBounds("interphase_gap_us", 0.0, 100.0, "µs", f"{_HIL} A (gap 0–100 µs)"),
    RuleBounds("recharge_margin_us", 0.0, 10_000.0, "µs", "model drive needs no recharge"),
)

#: Physical domain (a current-mode stimulator: mA).
PHYSICAL_RULES: tuple[RuleBounds, ...] = (
    RuleBounds("amplitude_up_per_s", 0.01, 2.0, "mA/s", f"{_HIL} C [0.01–2.0]"),
    RuleBounds("amplitude_down_per_s", 0.01, 5.0, "mA/s", f"{_HIL} C [0.01–5.0]"),
    RuleBounds("frequency_step_hz", 0.1, 50.0, "Hz", f"{_HIL} C (default 20 Hz)"),
    RuleBounds("pulse_width_step_us", 1.0, 60.0, "µs", f"{_HIL} C (default 10 µs)"),
    RuleBounds("soft_start_s", 1.0, 60.0, "s", "Vercise 'Stim Ramp On' 1–10 s; §2.3 C ≥ 2 s"),
    RuleBounds("invalid_streak_to_fault", 1.0, 5.0, "", f"{_HIL} F (default 3)"),
    RuleBounds("interphase_gap_us", 0.0, 100.0, "µs", f"{_HIL} A (gap 0–100 µs)"),
    RuleBounds("recharge_margin_us", 100.0, 10_000.0, "µs", f"{_HIL} A (≥ 100 µs recharge)"),
)


@dataclass(frozen=True)
class TimingBounds:
    """Absolute-time bounds of the lease and the watchdog in one domain.

    Args:
        lease_ms: ``(lo, hi)`` of ``lease_periods·T`` in ms.
        watchdog_ms: ``(lo, hi)`` of ``watchdog_periods·T`` in ms.
        source: Where the numbers come from.
    """

    lease_ms: tuple[float, float]
    watchdog_ms: tuple[float, float]
    source: str


#: A device stops its output within ``watchdog + safe stop (≤ 250 ms)`` = 750 ms of silence.
PHYSICAL_TIMING = TimingBounds(
    (50.0, 500.0), (50.0, 500.0), f"{_HIL} E [50 ms–2 s], tightened to 500 ms"
)
#: A lockstep simulator's tissue waits for its controller; the spec's outer bound applies.
MODEL_TIMING = TimingBounds((1.0, 2000.0), (1.0, 2000.0), f"{_HIL} E (never more than 2 s)")


def rules_for(domain: str) -> tuple[RuleBounds, ...]:
    """The rule bounds of ``domain`` (``model`` or ``physical``)."""
    return PHYSICAL_RULES if domain == "physical" else MODEL_RULES


def timing_for(domain: str) -> TimingBounds:
    """The lease and watchdog bounds of ``domain``."""
    return PHYSICAL_TIMING if domain == "physical" else MODEL_TIMING


def rule_for(domain: str, field: str) -> RuleBounds:
    """The bounds of ``field`` in ``domain``.

    Raises:
        KeyError: ``field`` has no floor.
    """
    for rule in rules_for(domain):
        if rule.field == field:
            return rule
    raise KeyError(f"Expected a rule field of the {domain} domain, actual {field!r}")


def check_rule(domain: str, field: str, value: float, source: str) -> None:
    """Refuse ``value`` of ``field`` outside its floor in ``domain``.

    Raises:
        ConfigError: Naming the field, the allowed interval, its source and the value.
    """
    rule = rule_for(domain, field)
    if not (math.isfinite(value) and rule.lo <= value <= rule.hi):
        unit = f" {rule.unit}" if rule.unit else ""
        raise ConfigError(
            f"{source}: expected {field} in [{rule.lo:g}, {rule.hi:g}]{unit} "
            f"({domain} domain floor: {rule.source}), actual {value:g}"
        )


def check_timing(
    domain: str,
    lease_periods: float,
    watchdog_periods: float,
    period_ms: float,
    source: str = "<envelope>",
) -> None:
    """Refuse a lease or watchdog that is too short or too long in absolute time.

    Args:
        domain: ``model`` or ``physical``.
        lease_periods: Lease as a multiple of the control period.
        watchdog_periods: Watchdog as a multiple of the control period.
        period_ms: Control period ``T`` in ms.
        source: Where the values came from, for messages.

    Raises:
        ConfigError: Naming the product, its bounds and their source.
    """
    bounds = timing_for(domain)
    for name, periods, (lo, hi) in (
        ("lease", lease_periods, bounds.lease_ms),
        ("watchdog", watchdog_periods, bounds.watchdog_ms),
    ):
        total_ms = periods * period_ms
        if not (math.isfinite(total_ms) and lo <= total_ms <= hi):
            raise ConfigError(
                f"{source}: expected {name}_periods × control period in [{lo:g}, {hi:g}] ms "
                f"({domain} domain: {bounds.source}), actual {periods:g} × {period_ms:g} ms = "
                f"{total_ms:g} ms; lower {name}_periods or the control period"
            )
