"""``ftsts-sensed``: the paper's FTSTS train with a latch on a measurable criterion.

The paper stops its train for good once the mean E→I weight is below 75 mV, a quantity no
electrode measures. The sensed criterion has to stand in for "the network will stay
desynchronised without stimulation". Reading a synchrony marker *during* stimulation says
nothing about that: the train suppresses synchrony within a few tens of milliseconds whatever
the weights (R falls from ≈ 0.7 to ≈ 0.1 in the first windows), and the stimulation artefact
sits in the sensed signal besides. So the criterion is read in **probes**: every
``probe_every_ms`` of stimulation the train pauses for up to ``probe_ms``. If the feature
rises above ``latch_fraction`` of its lead-in mean
(:class:`~controller.policies.biomarker.LeadInCalibration`) during the pause, the network is
resynchronising: the train resumes at once (so a failed probe costs little time and lets the
network resynchronise only briefly). If the feature stays below that level for the whole pause,
the network holds the asynchronous state by itself: the latch trips and stimulation stays off
for the rest of the run. The pauses cost no charge; they do give the network short
stimulation-free stretches, which the evaluation counts like any other (docs/rl.md, "Clinical
baselines").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from controller.envelope.action import ActionMap
from controller.policies.adbs import DEFAULT_FEATURE
from controller.policies.biomarker import TIME_SLACK_MS, LeadInCalibration
from controller.policies.builtin import FTSTS_SETPOINT
from core.errors import ConfigError
from protocol.envelope.setpoint import Setpoint


@dataclass
class FtstsSensedPolicy:
    """FTSTS from the onset, paused for a probe every ``probe_every_ms``, latched on a quiet probe.

    Args:
        feature: The sensed observation field read in probes (measurable).
        onset_ms: Model time from which stimulation starts (end of the lead-in).
        settle_ms: Lead-in observations before this are not used for calibration.
        setpoint: The train while on (the paper's 100 mV, 83.33 Hz, 1000 µs).
        probe_every_ms: Stimulation time between probes.
        probe_ms: Longest probe (stimulation off); a probe ends early when the feature rises.
        latch_fraction: The level, as a fraction of the lead-in mean, that the feature must
            stay below for a whole probe to latch (and whose crossing ends a probe early).
    """

    feature: str = DEFAULT_FEATURE
    onset_ms: float = 2000.0
    settle_ms: float = 500.0
    setpoint: Setpoint = FTSTS_SETPOINT
    probe_every_ms: float = 3000.0
    probe_ms: float = 2000.0
    latch_fraction: float = 0.1
    name: str = "ftsts-sensed"
    action_map: ActionMap | None = None
    required_fields: tuple[str, ...] = field(default=(), init=False)
    latched_at_ms: float | None = field(default=None, init=False)
    reference: float | None = field(default=None, init=False)
    probes: list[dict[str, float]] = field(default_factory=list, init=False)
    _calib: LeadInCalibration = field(init=False, repr=False)
    _phase_start_ms: float | None = field(default=None, init=False, repr=False)
    _probing: bool = field(default=False, init=False, repr=False)
    _peak: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("onset_ms", "settle_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"Expected {name} >= 0, actual {value!r}")
        for name in ("probe_every_ms", "probe_ms", "latch_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f"Expected {name} > 0, actual {value!r}")
        if not self.feature:
            raise ConfigError("Expected a sensed feature name, actual ''")
        self.required_fields = (self.feature,)
        self._calib = LeadInCalibration(self.onset_ms, self.settle_ms)

    @property
    def latch_level(self) -> float | None:
        """The calibrated latch level (``None`` before the onset)."""
        return None if self.reference is None else self.latch_fraction * self.reference

    def reset(self) -> None:
        """A new run."""
        self._calib.reset()
        self.latched_at_ms = None
        self.reference = None
        self.probes = []
        self._phase_start_ms = None
        self._probing = False
        self._peak = 0.0

    def _off(self) -> Setpoint:
        sp = self.setpoint
        return Setpoint(amplitude=0.0, frequency_hz=sp.frequency_hz,
                        pulse_width_us=sp.pulse_width_us)  # fmt: skip

    def act(self, fields: Mapping[str, float], t_model_ms: float) -> Setpoint:
        """Off in the lead-in and after the latch; the train or a probe in between."""
        value = float(fields[self.feature])
        t = t_model_ms
        if not self._calib.offer(t, value) or self.latched_at_ms is not None:
            return self._off()
        if self.reference is None:
            self.reference = self._calib.mean
            if not (math.isfinite(self.reference) and self.reference > 0.0):
                raise ConfigError(
                    f"Expected a positive lead-in mean of {self.feature}, actual "
                    f"{self.reference!r} (is the sensor reporting?)"
                )
        if t < self.onset_ms - TIME_SLACK_MS:
            return self._off()
        if self._phase_start_ms is None:
            self._phase_start_ms = t
        elapsed = t - self._phase_start_ms
        if not self._probing:
            if elapsed < self.probe_every_ms - TIME_SLACK_MS:
                return self.setpoint
            self._probing, self._phase_start_ms, self._peak = True, t, 0.0
            return self._off()
        # In a probe: the observation stamped t describes the probe window ending at t.
        assert self.latch_level is not None
        self._peak = max(self._peak, value)
        risen = value >= self.latch_level
        if not risen and elapsed < self.probe_ms - TIME_SLACK_MS:
            return self._off()
        self.probes.append({"t_model_ms": t, "length_ms": elapsed, "peak": self._peak,
                            "latch_level": self.latch_level})  # fmt: skip
        structlog.get_logger("controller.policies").info(
            "ftsts_sensed_probe", t_model_ms=t, feature=self.feature, length_ms=elapsed,
            peak=self._peak, latch_level=self.latch_level, latched=not risen,
        )  # fmt: skip
        if not risen:
            self.latched_at_ms = t
            return self._off()
        self._probing, self._phase_start_ms = False, t
        return self.setpoint
