"""The envelope the check configures, derived from the backend's advertised capabilities.

The check needs an envelope that is valid for the backend (inside the advertised ranges, the
domain's caps and the floors of docs/controller.md) and in which each rule can be broken on
its own by a stimulus the advertised ranges allow. It is built from the advertised ranges, in
the domain their amplitude unit names (§3.3):

* ranges: amplitude 0 … half the advertised (and capped) maximum; frequency and pulse width
  from the advertised minimum to 80 % of the advertised span;
* ramps: the shortest soft start the floors allow, a rise of half the soft start's rate (so
  one control period off allows an amplitude that the slew then limits) and a fall of a
  quarter of the rise;
* frequency and width steps: a quarter of the envelope's span (within the floors);
* charge: the charge of 90 % of one period's rise at 75 % of the width range;
* duty: a recharge margin that makes the widest pulse infeasible at the highest frequency
  while the narrowest still fits;
* lease 2.5 periods and watchdog 3 periods, moved inside the domain's absolute-time bounds.

The hash is computed here from §3.3 (not with the reference code), and the test vector of §12
checks it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.envelope.config import MODEL_CAPS, PHYSICAL_CAPS
from protocol.envelope.floors import rule_for, timing_for

#: Amplitude unit → (domain, wire units per envelope unit), as §3.3 defines them.
DOMAINS: dict[str, tuple[str, float]] = {
    "mV": ("model", 1.0),
    "mA": ("physical", 1.0),
    "uA": ("physical", 1000.0),
    "µA": ("physical", 1000.0),
}


def envelope_hash(limits: Sequence[Mapping[str, Any]], extra: Mapping[str, float]) -> str:
    """SHA-256 hex of the §3.3 hash input: limits sorted by name, extra sorted by key."""
    rows = [
        [str(s["name"]), str(s["unit"]), str(s["role"]), float(s["min"]), float(s["max"])]
        for s in sorted(limits, key=lambda s: str(s["name"]))
    ]
    pairs = [[key, float(extra[key])] for key in sorted(extra)]
    packed = msgpack.packb([rows, pairs], use_bin_type=True, use_single_float=False)
    return hashlib.sha256(packed).hexdigest()


class SetupError(Exception):
    """The advertised capabilities leave no room for a valid test envelope."""


@dataclass(frozen=True)
class TestEnvelope:
    """The check's envelope and the stimuli derived from it (amplitudes in wire units).

    Args:
        domain: ``model`` or ``physical``.
        names: Wire name of the amplitude, frequency and pulse-width parameter.
        others: Parameters of role ``other`` and the value they are pinned at.
        limits: The ``configure`` limits (ParamSpec maps, advertised order).
        extra: The ``configure`` extra values.
        period_ms: The control period configured (also every step's duration).
        amp_max: Envelope amplitude maximum (wire units).
        amp_on: The amplitude of a routine on step, reachable in one period after an off one.
        slew_up: The largest rise in one period (wire units).
        f_lo: Envelope frequency minimum (Hz), the frequency of routine on steps.
        f_hi: Envelope frequency maximum (Hz).
        f_step: Largest frequency change per period (Hz).
        pw_lo: Envelope pulse-width minimum (µs), the width of routine on steps.
        pw_hi: Envelope pulse-width maximum (µs).
        pw_step: Largest width change per period (µs).
        charge_max: Charge per phase limit (envelope units: mV·ms or µC).
        per_unit: Wire amplitude units per envelope unit.
        margin_us: Recharge margin of the duty rule (µs).
        advertised: The advertised ParamSpec maps by name.
    """

    domain: str
    names: tuple[str, str, str]
    others: dict[str, float]
    limits: list[dict[str, Any]]
    extra: dict[str, float]
    period_ms: float
    amp_max: float
    amp_on: float
    slew_up: float
    f_lo: float
    f_hi: float
    f_step: float
    pw_lo: float
    pw_hi: float
    pw_step: float
    charge_max: float
    per_unit: float
    margin_us: float
    advertised: dict[str, dict[str, Any]]

    @property
    def hash(self) -> str:
        """The envelope hash of :attr:`limits` and :attr:`extra`."""
        return envelope_hash(self.limits, self.extra)

    def wire(self, **changes: Any) -> dict[str, Any]:
        """The ``configure.envelope`` map; ``changes`` replace keys.

        The hash is recomputed unless ``hash`` is among the changes.
        """
        env: dict[str, Any] = {"limits": self.limits, "extra": self.extra}
        env.update({k: v for k, v in changes.items() if k != "hash"})
        env["hash"] = changes.get("hash", envelope_hash(env["limits"], env["extra"]))
        return env

    def stimulus(self, amplitude: float, frequency_hz: float | None = None,
                 pulse_width_us: float | None = None) -> dict[str, float]:
        """A full stimulus map (every advertised parameter)."""
        amp, freq, width = self.names
        out = {
            amp: float(amplitude),
            freq: float(self.f_lo if frequency_hz is None else frequency_hz),
            width: float(self.pw_lo if pulse_width_us is None else pulse_width_us),
        }
        out.update(self.others)
        return out

    def charge(self, amplitude: float, pulse_width_us: float) -> float:
        """Charge per phase of a wire amplitude and a width, in envelope units."""
        return amplitude / self.per_unit * pulse_width_us / 1000.0


def _by_role(params: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    roles: dict[str, Mapping[str, Any]] = {}
    for spec in params:
        role = spec.get("role")
        if role == "other":
            continue
        if role in roles:
            raise SetupError(f"Expected one parameter of role {role}, actual two or more")
        roles[str(role)] = spec
    missing = sorted({"amplitude", "frequency", "pulse_width"} - set(roles))
    if missing:
        raise SetupError(f"Expected parameters with roles {missing}, actual none")
    return roles


def _rule(domain: str, name: str, wanted: float) -> float:
    bounds = rule_for(domain, name)
    return min(bounds.hi, max(bounds.lo, wanted))


def derive_envelope(capabilities: Mapping[str, Any]) -> TestEnvelope:
    """Build the check's envelope for ``capabilities`` (the ``welcome`` map).

    Raises:
        SetupError: The capabilities do not allow a valid envelope (a unit §3.3 does not know,
            a control period outside the domain's lease bounds, ranges too narrow).
    """
    params = list(capabilities["stim_params"])
    roles = _by_role(params)
    amp_spec, f_spec, pw_spec = roles["amplitude"], roles["frequency"], roles["pulse_width"]
    unit = str(amp_spec["unit"])
    if unit not in DOMAINS:
        raise SetupError(f"Expected an amplitude unit in {sorted(DOMAINS)}, actual {unit!r}")
    domain, per_unit = DOMAINS[unit]
    caps = MODEL_CAPS if domain == "model" else PHYSICAL_CAPS
    period_ms = float(capabilities["control_period_ms"])
    period_s = period_ms / 1000.0

    amp_max = min(float(amp_spec["max"]) / per_unit, caps.amplitude_max) / 2.0
    f_lo = max(float(f_spec["min"]), caps.frequency_min_hz)
    f_top = min(float(f_spec["max"]), caps.frequency_max_hz)
    pw_lo = max(float(pw_spec["min"]), caps.pulse_width_min_us)
    pw_top = min(float(pw_spec["max"]), caps.pulse_width_max_us)
    if not (amp_max > 0.0 and f_top > f_lo and pw_top > pw_lo):
        raise SetupError(
            f"Expected advertised ranges wider than a point inside the {domain} caps, actual "
            f"amplitude max {amp_max * 2:g}, frequency [{f_lo:g}, {f_top:g}] Hz, "
            f"width [{pw_lo:g}, {pw_top:g}] us"
        )
    f_hi = f_lo + 0.8 * (f_top - f_lo)
    pw_hi = pw_lo + 0.8 * (pw_top - pw_lo)

    soft_start_s = rule_for(domain, "soft_start_s").lo
    up = _rule(domain, "amplitude_up_per_s", 0.5 * amp_max / soft_start_s)
    down = _rule(domain, "amplitude_down_per_s", up / 4.0)
    slew_up = up * period_s  # envelope units per period
    amp_on = min(0.5 * slew_up, 0.25 * amp_max)
    f_step = _rule(domain, "frequency_step_hz", (f_hi - f_lo) / 4.0)
    pw_step = _rule(domain, "pulse_width_step_us", (pw_hi - pw_lo) / 4.0)

    shortest_period_us = 1e6 / f_hi
    margin_us = _rule(domain, "recharge_margin_us", shortest_period_us - pw_lo - pw_hi)
    if 2.0 * pw_lo + margin_us > shortest_period_us:
        raise SetupError(
            f"Expected the narrowest pulse ({pw_lo:g} us) with the {domain} domain's recharge "
            f"margin ({margin_us:g} us) to fit a period at {f_hi:g} Hz, actual it does not"
        )
    charge_max = 0.9 * slew_up * (pw_lo + 0.75 * (pw_hi - pw_lo)) / 1000.0
    area, density = 0.0, 0.0
    if domain == "physical":
        area, density = 0.06, 30.0  # a DBS contact; 1.8 µC per phase at most
        charge_max = min(charge_max, area * density)

    timing = timing_for(domain)
    lease_ms = min(timing.lease_ms[1], max(timing.lease_ms[0], 2.5 * period_ms))
    watchdog_ms = min(timing.watchdog_ms[1], max(timing.watchdog_ms[0], 3.0 * period_ms))
    lease_periods = lease_ms / period_ms
    watchdog_periods = max(lease_periods, watchdog_ms / period_ms)
    if not (1.0 <= lease_periods <= 20.0 and 1.0 <= watchdog_periods <= 20.0):
        raise SetupError(
            f"Expected a control period whose lease (1-20 periods) fits the {domain} domain's "
            f"bounds {timing.lease_ms} ms, actual {period_ms:g} ms"
        )

    extra = {
        "charge_per_phase_max": charge_max,
        "electrode_area_cm2": area,
        "charge_density_max_uc_cm2": density,
        "interphase_gap_us": 0.0,
        "recharge_margin_us": margin_us,
        "amplitude_up_per_s": up,
        "amplitude_down_per_s": down,
        "frequency_step_hz": f_step,
        "pulse_width_step_us": pw_step,
        "soft_start_s": soft_start_s,
        "lease_periods": lease_periods,
        "watchdog_periods": watchdog_periods,
        "invalid_streak_to_fault": 3.0,
    }
    others: dict[str, float] = {}
    limits: list[dict[str, Any]] = []
    for spec in params:
        base = {"name": spec["name"], "unit": spec["unit"], "role": spec["role"]}
        if spec is amp_spec:
            limits.append({**base, "min": 0.0, "max": amp_max * per_unit})
        elif spec is f_spec:
            limits.append({**base, "min": f_lo, "max": f_hi})
        elif spec is pw_spec:
            limits.append({**base, "min": pw_lo, "max": pw_hi})
        else:
            lo, hi = float(spec["min"]), float(spec["max"])
            pinned = 0.0 if lo <= 0.0 <= hi else lo
            others[str(spec["name"])] = pinned
            limits.append({**base, "min": pinned, "max": pinned})
    if not all(math.isfinite(v) for v in extra.values()):
        raise SetupError(f"Expected finite envelope values, actual {extra}")
    return TestEnvelope(
        domain=domain,
        names=(str(amp_spec["name"]), str(f_spec["name"]), str(pw_spec["name"])),
        others=others,
        limits=limits,
        extra=extra,
        period_ms=period_ms,
        amp_max=amp_max * per_unit,
        amp_on=amp_on * per_unit,
        slew_up=slew_up * per_unit,
        f_lo=f_lo,
        f_hi=f_hi,
        f_step=f_step,
        pw_lo=pw_lo,
        pw_hi=pw_hi,
        pw_step=pw_step,
        charge_max=charge_max,
        per_unit=per_unit,
        margin_us=margin_us,
        advertised={str(s["name"]): dict(s) for s in params},
    )
