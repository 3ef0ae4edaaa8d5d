"""Build the policy named on the command line: a builtin, a clinical baseline or a bundle path.

Builtins: ``off``, ``constant``, ``ftsts`` (the paper's weight latch). Clinical baselines on
measurable observations only (docs/rl.md, "Clinical baselines"): ``ftsts-sensed``,
``adbs-onoff``, ``adbs-single``, ``adbs-dual``, ``adbs-prop``.
"""

from __future__ import annotations

from pathlib import Path

from controller.policies.base import Policy
from controller.policies.builtin import FTSTS_SETPOINT, ConstantPolicy, FtstsPolicy, OffPolicy
from controller.policies.bundle import BundlePolicy, load_bundle, training_setting
from core.errors import ConfigError
from protocol.envelope.bounds import limits_of
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint
from protocol.observables import is_device_backend, unobservable_problem

#: Baselines reading only measurable observations, in the order the evaluation lists them.
SENSED_BASELINES = ("ftsts-sensed", "adbs-onoff", "adbs-single", "adbs-dual", "adbs-prop")
BUILTIN = ("off", "constant", "ftsts", *SENSED_BASELINES)


def build_sensed_baseline(name: str, onset_ms: float, amplitude: float | None = None) -> Policy:
    """One of :data:`SENSED_BASELINES` with its documented defaults (model units).

    Args:
        name: The baseline.
        onset_ms: End of the unstimulated lead-in (calibration before, stimulation from).
        amplitude: Clinical amplitude in mV of drive (default: the FTSTS 100 mV).

    Raises:
        ConfigError: Unknown name or bad value.
    """
    from controller.policies.adbs import (
        AdaptiveSettings,
        DualThresholdPolicy,
        OnOffPolicy,
        ProportionalPolicy,
        SingleThresholdPolicy,
    )
    from controller.policies.ftsts_sensed import FtstsSensedPolicy

    amp = FTSTS_SETPOINT.amplitude if amplitude is None else amplitude
    if name == "ftsts-sensed":
        sp = Setpoint(amplitude=amp, frequency_hz=FTSTS_SETPOINT.frequency_hz,
                      pulse_width_us=FTSTS_SETPOINT.pulse_width_us)  # fmt: skip
        return FtstsSensedPolicy(onset_ms=onset_ms, setpoint=sp)
    settings = AdaptiveSettings(onset_ms=onset_ms, amplitude_mv=amp)
    if name == "adbs-onoff":
        return OnOffPolicy(settings)
    if name == "adbs-single":
        return SingleThresholdPolicy(settings)
    if name == "adbs-dual":
        return DualThresholdPolicy(settings)
    if name == "adbs-prop":
        return ProportionalPolicy(settings)
    raise ConfigError(f"Expected a baseline from {list(SENSED_BASELINES)}, actual {name!r}")


def _check_in_envelope(sp: Setpoint, env: SafetyEnvelope) -> None:
    values = sp.as_dict()
    for name, (lo, hi, unit) in limits_of(env).items():
        if name == "amplitude" and values[name] == 0.0:
            continue
        if not lo <= values[name] <= hi:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"Expected {flag} in [{lo}, {hi}] {unit} (envelope {env.name!r}), "
                f"actual {values[name]}"
            )


def _refuse_unobservable(fields: tuple[str, ...], user: str, backend_kind: str | None) -> None:
    """Refuse, before anything else, a policy that reads what a device cannot measure."""
    if backend_kind is None or not is_device_backend(backend_kind):
        return
    problem = unobservable_problem(fields, user=user, backend=backend_kind)
    if problem is not None:
        raise ConfigError(problem)


def build_policy(
    name: str,
    envelope: SafetyEnvelope,
    *,
    amplitude: float | None = None,
    frequency_hz: float | None = None,
    pulse_width_us: float | None = None,
    onset_ms: float = 1980.0,
    latch_below_mv: float = 75.0,
    bundle_onset_ms: float | None = None,
    backend_kind: str | None = None,
) -> Policy:
    """Make the policy ``name``.

    Args:
        name: ``off``, ``constant``, ``ftsts``, one of :data:`SENSED_BASELINES` or the path of
            a policy bundle directory.
        envelope: The envelope in force (units of ``amplitude``; bundle hash check).
        amplitude: ``constant``: amplitude in the envelope's unit; ``ftsts`` and the sensed
            baselines: their amplitude while on (default 100 mV).
        frequency_hz: ``constant``: pulse rate (model domain default: the paper's 83.33 Hz).
        pulse_width_us: ``constant``: phase width (model domain default: 1000 µs).
        onset_ms: ``ftsts`` and the sensed baselines: model time at which stimulation may
            start (the sensed baselines calibrate on the observations before it).
        latch_below_mv: ``ftsts``: weight below which stimulation stops for good.
        bundle_onset_ms: bundle: model time before which it delivers nothing (default: the
            lead-in of the episodes it was trained on, ``training.onset_ms``, else 0).
        backend_kind: The backend it will run on (``sim``, ``serial``, ``replay``), if known:
            on a device backend a policy that reads an unobservable field
            (``protocol.observables``) is refused first, with the fields named. The session
            handshake checks it again against the backend's own ``backend_kind``.

    Raises:
        ConfigError: Missing or out-of-envelope values, unknown name, a bundle trained
            against another envelope, or a policy that needs an unobservable field on a
            device backend.
    """
    model = envelope.domain == "model"
    if name == "off":
        return OffPolicy()
    if name == "constant":
        if amplitude is None:
            raise ConfigError(
                f"Expected --amplitude ({envelope.amplitude_unit}) for --policy constant, "
                "actual none"
            )
        if not model and (frequency_hz is None or pulse_width_us is None):
            raise ConfigError(
                "Expected --frequency-hz and --pulse-width-us for --policy constant on a "
                "physical envelope, actual "
                f"{frequency_hz}, {pulse_width_us}"
            )
        sp = Setpoint(
            amplitude=amplitude,
            frequency_hz=FTSTS_SETPOINT.frequency_hz if frequency_hz is None else frequency_hz,
            pulse_width_us=FTSTS_SETPOINT.pulse_width_us
            if pulse_width_us is None
            else pulse_width_us,
        )
        _check_in_envelope(sp, envelope)
        return ConstantPolicy(sp)
    if name == "ftsts":
        _refuse_unobservable(FtstsPolicy.required_fields, "policy 'ftsts'", backend_kind)
        if not model:
            raise ConfigError(
                f"Expected a model-domain envelope for --policy ftsts (100 mV of drive), actual "
                f"{envelope.domain!r}"
            )
        sp = Setpoint(
            amplitude=FTSTS_SETPOINT.amplitude if amplitude is None else amplitude,
            frequency_hz=FTSTS_SETPOINT.frequency_hz if frequency_hz is None else frequency_hz,
            pulse_width_us=FTSTS_SETPOINT.pulse_width_us
            if pulse_width_us is None
            else pulse_width_us,
        )
        _check_in_envelope(sp, envelope)
        return FtstsPolicy(onset_ms=onset_ms, setpoint=sp, latch_below_mv=latch_below_mv)
    if name in SENSED_BASELINES:
        if not model:
            raise ConfigError(
                f"Expected a model-domain envelope for --policy {name} (amplitudes in mV of "
                f"drive), actual {envelope.domain!r}"
            )
        policy = build_sensed_baseline(name, onset_ms, amplitude)
        shape = Setpoint(amplitude=FTSTS_SETPOINT.amplitude if amplitude is None else amplitude,
                         frequency_hz=FTSTS_SETPOINT.frequency_hz,
                         pulse_width_us=FTSTS_SETPOINT.pulse_width_us)  # fmt: skip
        _check_in_envelope(shape, envelope)
        return policy
    path = Path(name)
    if not path.exists():
        raise ConfigError(
            f"Expected --policy in {list(BUILTIN)} or a policy bundle directory, actual {name!r}"
        )
    bundle = load_bundle(path)
    _refuse_unobservable(bundle.observation_fields, f"policy bundle {path}", backend_kind)
    if bundle.envelope_hash != envelope.sha256():
        raise ConfigError(
            f"Expected policy bundle {path} to be trained against envelope "
            f"{envelope.sha256()} ({envelope.name!r}), actual {bundle.envelope_hash}; "
            "retrain, or pass the envelope it was trained with via --envelope"
        )
    onset = training_setting(bundle, "onset_ms") if bundle_onset_ms is None else bundle_onset_ms
    return BundlePolicy(bundle, onset_ms=0.0 if onset is None else onset)
