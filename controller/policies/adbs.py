"""Clinical adaptive DBS control laws on a sensed band power (baselines of issue 23).

Four laws a clinician would recognise, all reading one measurable feature (default
``lfp_band_uv2``, the LFP power in the network's own band), smoothed over a trailing window,
against thresholds calibrated per network seed from the unstimulated lead-in
(:mod:`controller.policies.biomarker`):

* :class:`OnOffPolicy` (``adbs-onoff``, B1, Little et al. 2013): ramp to the clinical amplitude
  while the smoothed power is above one threshold, ramp to zero below it;
* :class:`SingleThresholdPolicy` (``adbs-single``, B3-ST, Percept single threshold): the
  on/off law with onset timers and the threshold 75 % of the way up;
* :class:`DualThresholdPolicy` (``adbs-dual``, B3, Percept dual threshold): ramp up after the
  power has stayed above the upper threshold for an onset time, ramp down after it has stayed
  below the lower one for another, hold in between; the detector is blanked for a while after
  every change of direction;
* :class:`ProportionalPolicy` (``adbs-prop``, B2/B4): amplitude proportional to where the power
  sits between the two thresholds, slew-limited like the ramps.

Units (spec decision D6): the amplitude is mV of drive (the simulator envelope's unit), the pulse
shape is the paper's FTSTS train (83.33 Hz, 1000 µs phases) because this network's
desynchronising mechanism is that train, and the clinical amplitude is the FTSTS amplitude
(100 mV), the setting known to work open loop, as a clinician starts from the continuous-DBS
amplitude. docs/rl.md ("Clinical baselines") lists every parameter with its source.

Every output is a :class:`~protocol.envelope.setpoint.Setpoint` that the safety governor
checks (and clamps, with a logged finding) like any other request. Before the onset the
policies deliver nothing and calibrate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from controller.envelope.action import ActionMap
from controller.policies.biomarker import TIME_SLACK_MS, LeadInCalibration, Smoother
from core.errors import ConfigError
from protocol.envelope.setpoint import Setpoint

#: The paper's pulse shape, used by every clinical baseline (mV of drive, Hz, µs per phase).
CLINICAL_AMPLITUDE_MV = 100.0
CLINICAL_FREQUENCY_HZ = 1000.0 / 12.0
CLINICAL_PULSE_WIDTH_US = 1000.0
#: Default sensed feature (LFP power in the network's own band, µV²).
DEFAULT_FEATURE = "lfp_band_uv2"

_log = structlog.get_logger("controller.policies")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0.0 if allow_zero else value > 0.0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"Expected {name} {bound}, actual {value!r}")


@dataclass
class AdaptiveSettings:
    """What every clinical law shares.

    Args:
        feature: The sensed observation field (a measurable one).
        onset_ms: Model time from which stimulation may start (end of the lead-in).
        settle_ms: Lead-in observations before this are not used for calibration.
        smoothing_ms: Trailing boxcar over the feature (400 ms: He et al.).
        amplitude_mv: Clinical (upper) amplitude in mV of drive.
        frequency_hz: Pulse rate.
        pulse_width_us: Phase width.
    """

    feature: str = DEFAULT_FEATURE
    onset_ms: float = 2000.0
    settle_ms: float = 500.0
    smoothing_ms: float = 400.0
    amplitude_mv: float = CLINICAL_AMPLITUDE_MV
    frequency_hz: float = CLINICAL_FREQUENCY_HZ
    pulse_width_us: float = CLINICAL_PULSE_WIDTH_US

    def __post_init__(self) -> None:
        _positive("onset_ms", self.onset_ms, allow_zero=True)
        _positive("settle_ms", self.settle_ms, allow_zero=True)
        _positive("smoothing_ms", self.smoothing_ms)
        _positive("amplitude_mv", self.amplitude_mv)
        _positive("frequency_hz", self.frequency_hz)
        _positive("pulse_width_us", self.pulse_width_us)
        if not self.feature:
            raise ConfigError("Expected a sensed feature name, actual ''")


@dataclass
class AdaptivePolicy:
    """Common machinery: calibration, smoothing, the ramped amplitude and the setpoint.

    Subclasses implement :meth:`_calibrated` (thresholds from the lead-in reference) and
    :meth:`_next_amplitude` (the law).
    """

    settings: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    name: str = "adaptive"
    action_map: ActionMap | None = None
    required_fields: tuple[str, ...] = field(default=(), init=False)
    amplitude_mv: float = field(default=0.0, init=False)
    reference: float | None = field(default=None, init=False)
    _calib: LeadInCalibration = field(init=False, repr=False)
    _smoother: Smoother = field(init=False, repr=False)
    _t_prev_ms: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        self._calib = LeadInCalibration(s.onset_ms, s.settle_ms)
        self._smoother = Smoother(s.smoothing_ms)
        self.required_fields = (s.feature,)

    def reset(self) -> None:
        """A new run: forget calibration, smoothing and amplitude."""
        self._calib.reset()
        self._smoother.reset()
        self.amplitude_mv = 0.0
        self.reference = None
        self._t_prev_ms = None
        self._reset_law()

    def _reset_law(self) -> None:
        """Forget the law's own state."""

    def _calibrated(self, reference: float) -> None:
        """Set thresholds from the lead-in reference level."""

    def _next_amplitude(self, t_ms: float, dt_ms: float, power: float) -> float:
        raise NotImplementedError

    def setpoint(self, amplitude_mv: float) -> Setpoint:
        """The clinical pulse shape at ``amplitude_mv`` (0: off)."""
        s = self.settings
        return Setpoint(amplitude=amplitude_mv, frequency_hz=s.frequency_hz,
                        pulse_width_us=s.pulse_width_us)  # fmt: skip

    def act(self, fields: Mapping[str, float], t_model_ms: float) -> Setpoint:
        """Calibrate before the onset, then apply the law to the smoothed feature."""
        value = float(fields[self.settings.feature])
        dt = 0.0 if self._t_prev_ms is None else max(0.0, t_model_ms - self._t_prev_ms)
        self._t_prev_ms = t_model_ms
        power = self._smoother.add(t_model_ms, value)
        if not self._calib.offer(t_model_ms, value):
            return self.setpoint(0.0)
        if self.reference is None:
            self.reference = self._calib.mean
            if not (math.isfinite(self.reference) and self.reference > 0.0):
                raise ConfigError(
                    f"Expected a positive lead-in mean of {self.settings.feature}, actual "
                    f"{self.reference!r} (is the sensor reporting?)"
                )
            self._calibrated(self.reference)
            _log.info("adbs_calibrated", policy=self.name, feature=self.settings.feature,
                      t_model_ms=t_model_ms, reference=self.reference,
                      samples=self._calib.n_samples, **self.thresholds())  # fmt: skip
        if t_model_ms < self.settings.onset_ms - TIME_SLACK_MS:
            return self.setpoint(0.0)
        new = self._next_amplitude(t_model_ms, dt, power)
        self.amplitude_mv = min(self.settings.amplitude_mv, max(0.0, new))
        return self.setpoint(self.amplitude_mv)

    def thresholds(self) -> dict[str, float]:
        """The calibrated thresholds (for logs and summaries)."""
        return {}


def _ramp(current: float, target: float, rate_per_ms: float, dt_ms: float) -> float:
    step = rate_per_ms * dt_ms
    if target > current:
        return min(target, current + step)
    return max(target, current - step)


@dataclass
class OnOffPolicy(AdaptivePolicy):
    """B1: on above one threshold, off below it, linear ramps between (Little et al. 2013).

    With onset timers it is the Percept single-threshold mode (B3-ST,
    :class:`SingleThresholdPolicy`): the power must stay past the threshold for
    ``onset_on_ms`` (above) or ``onset_off_ms`` (at or below) before the target changes.

    Args:
        threshold_fraction: Threshold as a fraction of the lead-in mean of the feature.
        ramp_ms: Time of a full ramp 0 ↔ clinical amplitude (250 ms: Little 2013, Fleming 2020).
        onset_on_ms: How long the power must stay above the threshold to switch on.
        onset_off_ms: How long it must stay at or below it to switch off.
    """

    threshold_fraction: float = 0.5
    ramp_ms: float = 250.0
    onset_on_ms: float = 0.0
    onset_off_ms: float = 0.0
    name: str = "adbs-onoff"
    threshold: float | None = field(default=None, init=False)
    on: bool = field(default=False, init=False)
    _since_ms: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("threshold_fraction", self.threshold_fraction)
        _positive("ramp_ms", self.ramp_ms)
        _positive("onset_on_ms", self.onset_on_ms, allow_zero=True)
        _positive("onset_off_ms", self.onset_off_ms, allow_zero=True)

    def _reset_law(self) -> None:
        self.threshold = None
        self.on = False
        self._since_ms = None

    def _calibrated(self, reference: float) -> None:
        self.threshold = self.threshold_fraction * reference

    def thresholds(self) -> dict[str, float]:
        """The one threshold."""
        return {} if self.threshold is None else {"threshold": self.threshold}

    def _next_amplitude(self, t_ms: float, dt_ms: float, power: float) -> float:
        assert self.threshold is not None
        wants_on = power > self.threshold
        if wants_on == self.on:
            self._since_ms = None
        else:
            if self._since_ms is None:
                self._since_ms = t_ms
            timer = self.onset_on_ms if wants_on else self.onset_off_ms
            if t_ms - self._since_ms >= timer - TIME_SLACK_MS:
                self.on, self._since_ms = wants_on, None
        target = self.settings.amplitude_mv if self.on else 0.0
        return _ramp(self.amplitude_mv, target, self.settings.amplitude_mv / self.ramp_ms, dt_ms)


@dataclass
class SingleThresholdPolicy(OnOffPolicy):
    """B3-ST: Percept single threshold, on/off with onset timers (``adbs-single``).

    The threshold sits 75 % of the way from the power at the upper amplitude limit to the power
    at the lower one (Stanslaski 2024 defaults, *Unconfirmed*); here the lower limit is 0 mV,
    whose power is the lead-in mean, and stimulation drives the band power to about 1 % of it,
    so the threshold is 0.75 × the lead-in mean. Onset timers 200 ms (ST: 200–500 ms), ramps
    250 ms (ST default).
    """

    threshold_fraction: float = 0.75
    onset_on_ms: float = 200.0
    onset_off_ms: float = 200.0
    name: str = "adbs-single"


@dataclass
class TwoThresholdPolicy(AdaptivePolicy):
    """A law with an upper and a lower threshold, each a fraction of the lead-in mean.

    Args:
        upper_fraction: Upper threshold as a fraction of the lead-in mean.
        lower_fraction: Lower threshold as a fraction of the lead-in mean (below the upper).
    """

    upper_fraction: float = 0.5
    lower_fraction: float = 0.25
    upper: float | None = field(default=None, init=False)
    lower: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("upper_fraction", self.upper_fraction)
        _positive("lower_fraction", self.lower_fraction, allow_zero=True)
        if self.lower_fraction >= self.upper_fraction:
            raise ConfigError(
                f"Expected lower_fraction < upper_fraction, actual {self.lower_fraction} >= "
                f"{self.upper_fraction}"
            )

    def _reset_law(self) -> None:
        self.upper = self.lower = None

    def _calibrated(self, reference: float) -> None:
        self.upper = self.upper_fraction * reference
        self.lower = self.lower_fraction * reference

    def thresholds(self) -> dict[str, float]:
        """Upper and lower thresholds."""
        if self.upper is None or self.lower is None:
            return {}
        return {"upper": self.upper, "lower": self.lower}


@dataclass
class DualThresholdPolicy(TwoThresholdPolicy):
    """B3: Percept-style dual threshold with onset timers and blanking.

    The detector state is ``up`` (power above the upper threshold for ``onset_up_ms``),
    ``down`` (below the lower threshold for ``onset_down_ms``) or ``hold`` (in between, or a
    timer still running). ``up`` ramps the amplitude toward ``amplitude_mv``, ``down`` toward
    ``lower_mv``, ``hold`` keeps it. After every change of state the detector is blanked for
    ``blanking_ms``: the state is kept and the onset timers restart when blanking ends (the
    stimulation artefact of an amplitude change would otherwise be read as power).

    Args:
        upper_fraction: Upper threshold as a fraction of the lead-in mean.
        lower_fraction: Lower threshold as a fraction of the lead-in mean.
        lower_mv: Lower amplitude limit (mV of drive).
        ramp_up_ms: Time of a full ramp from ``lower_mv`` to ``amplitude_mv``.
        ramp_down_ms: Time of a full ramp back down.
        onset_up_ms: How long the power must stay above the upper threshold.
        onset_down_ms: How long it must stay below the lower one.
        blanking_ms: Detector blanking after a state change.
    """

    lower_mv: float = 0.0
    ramp_up_ms: float = 500.0
    ramp_down_ms: float = 1000.0
    onset_up_ms: float = 200.0
    onset_down_ms: float = 400.0
    blanking_ms: float = 550.0
    name: str = "adbs-dual"
    state: str = field(default="hold", init=False)
    _above_since_ms: float | None = field(default=None, init=False, repr=False)
    _below_since_ms: float | None = field(default=None, init=False, repr=False)
    _blank_until_ms: float = field(default=-math.inf, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("lower_fraction", self.lower_fraction)
        _positive("lower_mv", self.lower_mv, allow_zero=True)
        if self.lower_mv >= self.settings.amplitude_mv:
            raise ConfigError(
                f"Expected lower_mv < amplitude_mv ({self.settings.amplitude_mv}), actual "
                f"{self.lower_mv}"
            )
        for name in ("ramp_up_ms", "ramp_down_ms"):
            _positive(name, getattr(self, name))
        for name in ("onset_up_ms", "onset_down_ms", "blanking_ms"):
            _positive(name, getattr(self, name), allow_zero=True)

    def _reset_law(self) -> None:
        super()._reset_law()
        self.state = "hold"
        self._above_since_ms = self._below_since_ms = None
        self._blank_until_ms = -math.inf

    def _detect(self, t_ms: float, power: float) -> str:
        assert self.upper is not None
        assert self.lower is not None
        if t_ms < self._blank_until_ms - TIME_SLACK_MS:
            self._above_since_ms = self._below_since_ms = None
            return self.state
        if power > self.upper:
            self._below_since_ms = None
            if self._above_since_ms is None:
                self._above_since_ms = t_ms
            if t_ms - self._above_since_ms >= self.onset_up_ms - TIME_SLACK_MS:
                return "up"
            return "hold" if self.state != "up" else "up"
        if power < self.lower:
            self._above_since_ms = None
            if self._below_since_ms is None:
                self._below_since_ms = t_ms
            if t_ms - self._below_since_ms >= self.onset_down_ms - TIME_SLACK_MS:
                return "down"
            return "hold" if self.state != "down" else "down"
        self._above_since_ms = self._below_since_ms = None
        return "hold"

    def _next_amplitude(self, t_ms: float, dt_ms: float, power: float) -> float:
        state = self._detect(t_ms, power)
        if state != self.state:
            _log.debug("adbs_state", policy=self.name, t_model_ms=t_ms, old=self.state,
                       new=state, power=power)  # fmt: skip
            self.state = state
            self._blank_until_ms = t_ms + self.blanking_ms
            self._above_since_ms = self._below_since_ms = None
        span = self.settings.amplitude_mv - self.lower_mv
        current = max(self.amplitude_mv, self.lower_mv)
        if self.state == "up":
            return _ramp(current, self.settings.amplitude_mv, span / self.ramp_up_ms, dt_ms)
        if self.state == "down":
            return _ramp(current, self.lower_mv, span / self.ramp_down_ms, dt_ms)
        return current


@dataclass
class ProportionalPolicy(TwoThresholdPolicy):
    """B2/B4: amplitude proportional to the power's place between two thresholds.

    ``amplitude = amplitude_mv · clip((P − lower) / (upper − lower), 0, 1)``, moved toward at
    most ``amplitude_mv / ramp_ms`` per ms (the on/off law's ramp as the slew limit).

    Args:
        upper_fraction: Power (fraction of the lead-in mean) that asks for the full amplitude.
        lower_fraction: Power at and below which the amplitude is zero.
        ramp_ms: Slew limit as the time of a full 0 → ``amplitude_mv`` ramp.
    """

    ramp_ms: float = 250.0
    name: str = "adbs-prop"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("ramp_ms", self.ramp_ms)

    def _next_amplitude(self, t_ms: float, dt_ms: float, power: float) -> float:
        assert self.upper is not None
        assert self.lower is not None
        share = min(1.0, max(0.0, (power - self.lower) / (self.upper - self.lower)))
        target = self.settings.amplitude_mv * share
        return _ramp(self.amplitude_mv, target, self.settings.amplitude_mv / self.ramp_ms, dt_ms)
