"""The agent's view of the stimulator and the network: action layout and observation features.

Actions are three numbers in ``[-1, 1]`` that :class:`~controller.envelope.action.ActionMap` maps
linearly onto amplitude 10–200 mV (model drive), frequency 5–180 Hz and pulse width 50–500 µs
per phase. The same map goes into the policy bundle, so the controller turns a bundle's output
into exactly the setpoint the agent was trained with.

Observations are six features of one control window, each scaled from its physical bounds to
``[0, 1]``: the causal Kuramoto order parameter R of E cells, the time mean and temporal SD of
the E and I population-mean voltages, and the mean effective E→I weight ``J_I·W`` divided by
its 290 mV upper bound (the real synaptic state, not an elapsed-time clock; spec §9 item 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

from controller.envelope.action import ActionMap
from controller.policies.bundle import FieldSpec
from core.errors import ConfigError, SafetyFaultError
from protocol.observables import DOSE_FIELDS

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Feature:
    """One observation feature: a backend observation field and its physical bounds.

    Args:
        field: Name of the backend observation field (``simulator.network.OBSERVATION_FIELDS``).
        unit: Unit of the field.
        low: Physical value mapped to 0.
        high: Physical value mapped to 1.
        label: Short description for plots and docs.
    """

    field: str
    unit: str
    low: float
    high: float
    label: str


#: The six observation features, in input order (bounds as in the seed document).
FEATURES: tuple[Feature, ...] = (
    Feature("synchrony", "1", 0.0, 1.0, "Kuramoto order parameter R (E cells)"),
    Feature("mean_v_e_mv", "mV", -80.0, 50.0, "mean E membrane voltage"),
    Feature("sd_v_e_mv", "mV", 0.0, 30.0, "SD of the E population-mean voltage"),
    Feature("mean_v_i_mv", "mV", -80.0, 50.0, "mean I membrane voltage"),
    Feature("sd_v_i_mv", "mV", 0.0, 30.0, "SD of the I population-mean voltage"),
    Feature("weight_mv", "mV", 0.0, 290.0, "mean effective E→I weight J_I·W"),
)
OBSERVATION_NAMES: tuple[str, ...] = tuple(f.field for f in FEATURES)

#: What a sensing implant can give a policy (``protocol.observables``): the LFP features of
#: ``simulator.sensing`` (µV² at the contact pair, one-second Welch spectra, so the same on
#: the simulator's control windows and on a device's 20 ms STATUS). The recorded units' R and
#: rate are measurable too, but over a window as short as a device's STATUS they are another
#: estimate than over a control period, so a policy meant to run on a device leaves them out.
LFP_FEATURES: tuple[Feature, ...] = (
    Feature("lfp_beta_uv2", "uV^2", 0.0, 5.0, "LFP power, 13–30 Hz"),
    Feature("lfp_band_uv2", "uV^2", 0.0, 5.0, "LFP power in the network's band"),
    Feature("lfp_peak_hz", "Hz", 0.0, 100.0, "frequency of the LFP's spectral peak"),
    Feature("lfp_peak_uv2", "uV^2", 0.0, 5.0, "LFP power around the spectral peak"),
)
#: The delivered dose (``controller.tick.DOSE_FIELDS``), the stimulator's own account and the
#: policy's memory of how much it has given: 0 to a little more than open-loop FTSTS's
#: 315 000 mV·ms over 20 s (model), or than 4 mA × 450 µs at 185 Hz for 20 s (device).
DOSE_FEATURES: dict[str, Feature] = {
    "model": Feature(DOSE_FIELDS["mV·ms"], "mV·ms", 0.0, 400_000.0, "charge delivered so far"),
    "physical": Feature(DOSE_FIELDS["µC"], "uC", 0.0, 15_000.0, "charge delivered so far"),
}
#: The measurable set of the model domain (see :func:`observation_set`).
MEASURED_FEATURES: tuple[Feature, ...] = (*LFP_FEATURES, DOSE_FEATURES["model"])

#: The observation sets an environment offers: ``oracle`` (the simulator's population
#: statistics and the mean E→I weight, which no electrode measures) and ``measurable``.
OBSERVATION_SETS: tuple[str, ...] = ("oracle", "measurable")


def observation_set(name: str, domain: str = "model") -> tuple[Feature, ...]:
    """The features of observation set ``name`` for an envelope of ``domain``.

    ``measurable`` is the LFP features and the delivered dose in the domain's charge unit.

    Raises:
        ConfigError: Unknown name or domain.
    """
    if name not in OBSERVATION_SETS or domain not in DOSE_FEATURES:
        raise ConfigError(
            f"Expected an observation set in {list(OBSERVATION_SETS)} and a domain in "
            f"{sorted(DOSE_FEATURES)}, actual {name!r}, {domain!r}"
        )
    if name == "oracle":
        return FEATURES
    return (*LFP_FEATURES, DOSE_FEATURES[domain])


#: Action layout: controlled quantity, unit, physical value at -1 and at +1.
ACTION_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("amplitude", "mV", 10.0, 200.0),
    FieldSpec("frequency_hz", "Hz", 5.0, 180.0),
    FieldSpec("pulse_width_us", "us", 50.0, 500.0),
)
ACTION_MAP = ActionMap(
    tuple(f.name for f in ACTION_FIELDS),
    tuple(f.low for f in ACTION_FIELDS),
    tuple(f.high for f in ACTION_FIELDS),
)

_log = structlog.get_logger()


def observation_field_specs(
    features: tuple[Feature, ...] = FEATURES,
) -> tuple[FieldSpec, ...]:
    """The observation features as bundle field specs (raw physical units)."""
    return tuple(FieldSpec(f.field, f.unit, f.low, f.high) for f in features)


def scale_observation(
    fields: Mapping[str, float], features: tuple[Feature, ...] = FEATURES
) -> npt.NDArray[np.float32]:
    """Map a backend observation onto the ``[0, 1]`` feature vector.

    Values outside a feature's bounds are clamped to the bound and the clamp is logged; a
    missing or non-finite value is a fault (never repaired).

    Args:
        fields: The window's observation (must contain every feature's field).
        features: The observation set (default: the oracle set, :data:`FEATURES`).

    Returns:
        The scaled observation, ``float32`` of shape ``(len(features),)``.

    Raises:
        SafetyFaultError: A feature is missing, NaN or infinite.
    """
    # One list turned into float32 at the end (the same rounding as element-wise stores into a
    # float32 array, at a fraction of their cost).
    out: list[float] = []
    isfinite = math.isfinite
    for feat in features:
        if feat.field not in fields:
            raise SafetyFaultError(
                f"Expected observation field {feat.field!r}, actual fields {sorted(fields)}"
            )
        value = float(fields[feat.field])
        if not isfinite(value):
            _log.error("observation_fault", field=feat.field, value=value, reason="non-finite")
            raise SafetyFaultError(f"Expected a finite {feat.field}, actual {value!r}")
        scaled = (value - feat.low) / (feat.high - feat.low)
        if not 0.0 <= scaled <= 1.0:
            clamped = min(1.0, max(0.0, scaled))
            _log.warning(
                "observation_clamped",
                field=feat.field,
                value=value,
                reason=f"Expected {feat.field} in [{feat.low}, {feat.high}] {feat.unit}, "
                f"actual {value}",
            )
            scaled = clamped
        out.append(scaled)
    return np.array(out, dtype=np.float32)


def unscale_observation(
    obs: npt.ArrayLike, features: tuple[Feature, ...] = FEATURES
) -> dict[str, float]:
    """Inverse of :func:`scale_observation` (physical values of a scaled vector)."""
    arr = np.asarray(obs, dtype=np.float64)
    return {f.field: float(f.low + arr[i] * (f.high - f.low)) for i, f in enumerate(features)}


def feature_scale(
    features: tuple[Feature, ...] = FEATURES,
) -> tuple[FloatArray, FloatArray]:
    """``(low, span)`` arrays with ``scaled = (raw - low) / span``, for folding into a bundle."""
    low = np.array([f.low for f in features], dtype=np.float64)
    span = np.array([f.high - f.low for f in features], dtype=np.float64)
    return low, span
