"""Electrophysiological features through eFEL, with friendly aliases and explicit failures.

Every feature request yields a :class:`FeatureResult` whose ``status`` says what happened:
``ok``, ``no_spike`` (a spike feature on a trace without spikes), ``feature_failed`` (eFEL
returned nothing), ``invalid_trace`` (empty, non-finite or truncated trace), ``timeout`` or
``simulation_error``. Values are never a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

STATUS_OK = "ok"
STATUS_NO_SPIKE = "no_spike"
STATUS_FEATURE_FAILED = "feature_failed"
STATUS_INVALID_TRACE = "invalid_trace"
STATUS_TIMEOUT = "timeout"
STATUS_SIMULATION_ERROR = "simulation_error"
FAILURE_STATUSES = (
    STATUS_NO_SPIKE,
    STATUS_FEATURE_FAILED,
    STATUS_INVALID_TRACE,
    STATUS_TIMEOUT,
    STATUS_SIMULATION_ERROR,
)

#: Largest plausible membrane potential magnitude; beyond it a trace is invalid.
MAX_ABS_VOLTAGE_MV = 1000.0


@dataclass(frozen=True)
class FeatureAlias:
    """A friendly feature name.

    Attributes:
        efel_name: The eFEL feature computed.
        unit: Unit of the value.
        needs_spike: True if the feature is undefined without a spike.
        min_std: Smallest sensible standard deviation, used when targets come from raw traces.
        absolute_std: If set, synthetic or trace-derived targets use this std instead of a
            fraction of the value (for potentials, where a relative error is meaningless).
    """

    efel_name: str
    unit: str
    needs_spike: bool
    min_std: float
    absolute_std: float | None = None


ALIASES: dict[str, FeatureAlias] = {
    "input_resistance": FeatureAlias("ohmic_input_resistance_vb_ssse", "MΩ", False, 0.1),
    "resting_potential": FeatureAlias("voltage_base", "mV", False, 0.5, 1.0),
    "steady_state_voltage": FeatureAlias("steady_state_voltage_stimend", "mV", False, 0.5, 1.0),
    "voltage_deflection": FeatureAlias("voltage_deflection_vb_ssse", "mV", False, 0.5),
    "decay_time_constant": FeatureAlias("decay_time_constant_after_stim", "ms", False, 0.1),
    "spike_count": FeatureAlias("spike_count", "1", False, 0.5),
    "mean_frequency": FeatureAlias("mean_frequency", "Hz", True, 1.0),
    "ap_amplitude": FeatureAlias("AP_amplitude", "mV", True, 1.0),
    "ap_half_width": FeatureAlias("AP_duration_half_width", "ms", True, 0.05),
    "ahp_depth": FeatureAlias("AHP_depth", "mV", True, 0.25),
    "time_to_first_spike": FeatureAlias("time_to_first_spike", "ms", True, 0.1),
}

_efel_names: frozenset[str] | None = None


def _known_efel_names() -> frozenset[str]:
    global _efel_names
    if _efel_names is None:
        import efel

        _efel_names = frozenset(efel.get_feature_names())
    return _efel_names


def target_std(name: str, value: float, std_fraction: float) -> float:
    """The std a target derived from a measured ``value`` gets (relative with a floor)."""
    alias = resolve_feature(name)
    if alias.absolute_std is not None:
        return alias.absolute_std
    return max(abs(value) * std_fraction, alias.min_std)


def resolve_feature(name: str) -> FeatureAlias:
    """The alias for ``name``, or a raw eFEL feature wrapped as one.

    Raises:
        ConfigError: If the name is neither an alias nor an eFEL feature (with a suggestion).
    """
    if name in ALIASES:
        return ALIASES[name]
    if name in _known_efel_names():
        spikeless = {"voltage_base", "steady_state_voltage_stimend", "spike_count", "Spikecount"}
        needs_spike = name not in spikeless and not name.startswith(
            (
                "ohmic_",
                "voltage_deflection",
                "decay_time",
                "sag_",
                "steady_state",
                "minimum_voltage",
            )
        )
        return FeatureAlias(name, "", needs_spike, 1e-6)
    import difflib

    close = difflib.get_close_matches(name, [*ALIASES, *sorted(_known_efel_names())], n=3)
    hint = f"; did you mean {close}?" if close else ""
    raise ConfigError(
        f"Expected a feature alias in {sorted(ALIASES)} or an eFEL feature name, "
        f"actual {name!r}{hint}"
    )


@dataclass(frozen=True)
class FeatureResult:
    """One computed feature.

    Attributes:
        name: The requested (friendly or eFEL) name.
        value: The value if ``status == "ok"``, else ``None``.
        status: ``ok`` or one of :data:`FAILURE_STATUSES`.
        detail: Why it failed, for logs and reports.
    """

    name: str
    value: float | None
    status: str
    detail: str = ""


def check_trace(time_ms: FloatArray, voltage_mv: FloatArray, tstop_ms: float) -> str | None:
    """Why a trace is invalid (``None`` if valid): empty, mismatched, non-finite, truncated."""
    if time_ms.size < 3 or voltage_mv.size != time_ms.size:
        return (
            "expected >= 3 samples with matching t and v, "
            f"actual t={time_ms.size}, v={voltage_mv.size}"
        )
    if not (np.all(np.isfinite(time_ms)) and np.all(np.isfinite(voltage_mv))):
        return "expected finite samples, actual NaN or Inf in the trace"
    if abs(float(time_ms[-1]) - tstop_ms) > 1e-3 * max(tstop_ms, 1.0):
        return f"expected trace to end at {tstop_ms} ms, actual {float(time_ms[-1]):.3f} ms"
    peak = float(np.max(np.abs(voltage_mv)))
    if peak > MAX_ABS_VOLTAGE_MV:
        return f"expected |v| <= {MAX_ABS_VOLTAGE_MV:.0f} mV, actual {peak:.1f} mV"
    return None


def extract_features(
    time_ms: FloatArray,
    voltage_mv: FloatArray,
    names: Sequence[str],
    stim_start_ms: float,
    stim_end_ms: float,
    amplitude_na: float,
    tstop_ms: float,
    interp_step_ms: float = 0.025,
) -> list[FeatureResult]:
    """Compute ``names`` on one trace with eFEL.

    Args:
        time_ms: Sample times.
        voltage_mv: Membrane potential.
        names: Friendly or eFEL feature names.
        stim_start_ms: Step onset.
        stim_end_ms: Step end.
        amplitude_na: Step amplitude (eFEL needs it for input resistance).
        tstop_ms: Expected end of the trace.
        interp_step_ms: eFEL resampling step; at most the simulation dt (eFEL issue #142).

    Returns:
        One result per name, in order.
    """
    problem = check_trace(time_ms, voltage_mv, tstop_ms)
    if problem is not None:
        return [FeatureResult(n, None, STATUS_INVALID_TRACE, problem) for n in names]
    import efel

    aliases = [resolve_feature(n) for n in names]
    wanted = sorted({a.efel_name for a in aliases} | {"spike_count"})
    efel.reset()
    efel.set_setting("interp_step", interp_step_ms)
    trace = {
        "T": np.asarray(time_ms, dtype=np.float64),
        "V": np.asarray(voltage_mv, dtype=np.float64),
        "stim_start": [stim_start_ms],
        "stim_end": [stim_end_ms],
        "stimulus_current": [amplitude_na],
    }
    try:
        raw = efel.get_feature_values([trace], wanted, raise_warnings=False)[0]
    except Exception as err:  # eFEL raises bare exceptions from its C++ core
        return [FeatureResult(n, None, STATUS_FEATURE_FAILED, f"eFEL error: {err}") for n in names]
    spikes = raw.get("spike_count")
    spike_count = int(spikes[0]) if spikes is not None and len(spikes) else 0
    results = []
    for name, alias in zip(names, aliases, strict=True):
        values = raw.get(alias.efel_name)
        if alias.needs_spike and spike_count == 0:
            results.append(FeatureResult(name, None, STATUS_NO_SPIKE, "trace has no spike"))
        elif values is None or len(values) == 0:
            results.append(
                FeatureResult(name, None, STATUS_FEATURE_FAILED, f"eFEL gave no {alias.efel_name}")
            )
        else:
            value = float(np.mean(values))
            if math.isfinite(value):
                results.append(FeatureResult(name, value, STATUS_OK))
            else:
                results.append(
                    FeatureResult(
                        name, None, STATUS_FEATURE_FAILED, f"{alias.efel_name} not finite"
                    )
                )
    return results
