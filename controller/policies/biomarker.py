"""The sensed biomarker of the clinical baselines: causal smoothing and lead-in calibration.

Clinical adaptive DBS reads one sensed feature (beta power), smooths it over a few hundred
milliseconds and compares it with thresholds a clinician set for that patient from a recording
without stimulation. :class:`Smoother` is the smoothing (a trailing boxcar in model time) and
:class:`LeadInCalibration` the per-patient (here: per-network-seed) calibration: it keeps the
values seen during the unstimulated lead-in, and only those, so a threshold never depends on
anything the controller has not yet sensed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from core.errors import ConfigError

#: Two model times closer than this are the same instant (float sums of periods).
TIME_SLACK_MS = 1e-6


@dataclass
class Smoother:
    """Trailing mean of a feature over the observations of the last ``width_ms`` of model time.

    An observation stamped ``t`` describes the window ending at ``t``; the mean at ``t`` covers
    the observations stamped in ``(t - width_ms, t]`` (at least the newest one).

    Args:
        width_ms: Smoothing window (400 ms in most beta-triggered studies).
    """

    width_ms: float = 400.0
    _samples: deque[tuple[float, float]] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.width_ms) and self.width_ms > 0.0):
            raise ConfigError(f"Expected smoothing width_ms > 0, actual {self.width_ms!r}")

    def reset(self) -> None:
        """Forget every sample."""
        self._samples.clear()

    def add(self, t_ms: float, value: float) -> float:
        """Add the observation stamped ``t_ms`` and return the trailing mean."""
        self._samples.append((t_ms, value))
        while self._samples and self._samples[0][0] <= t_ms - self.width_ms + TIME_SLACK_MS:
            if len(self._samples) == 1:
                break
            self._samples.popleft()
        return float(np.mean([v for _, v in self._samples]))


@dataclass
class LeadInCalibration:
    """Per-seed reference level of a feature from the unstimulated lead-in.

    Keeps the values stamped in ``[settle_ms, onset_ms]`` (the observation stamped at the onset
    describes the last lead-in window); the first call after that freezes the reference. The
    first ``settle_ms`` are skipped: the network starts from random states and needs a few
    hundred milliseconds to settle into its synchronous state (and the sensor to fill its
    spectral window).

    Args:
        onset_ms: End of the lead-in (stimulation may start from here).
        settle_ms: Lead-in values stamped before this are ignored.
    """

    onset_ms: float
    settle_ms: float = 500.0
    _values: list[float] = field(default_factory=list, init=False, repr=False)
    _frozen: bool = field(default=False, init=False, repr=False)

    def reset(self) -> None:
        """A new run: forget the lead-in."""
        self._values.clear()
        self._frozen = False

    def offer(self, t_ms: float, value: float) -> bool:
        """Offer the observation stamped ``t_ms``; return whether the calibration is done.

        A run that starts after its onset (no lead-in observation at all) calibrates on its
        first observation, the only one it has seen.
        """
        if self._frozen:
            return True
        in_lead_in = t_ms <= self.onset_ms + TIME_SLACK_MS
        if in_lead_in and t_ms >= self.settle_ms - TIME_SLACK_MS:
            self._values.append(value)
        if in_lead_in and t_ms < self.onset_ms - TIME_SLACK_MS:
            return False
        if not self._values:
            self._values.append(value)
        self._frozen = True
        return True

    @property
    def done(self) -> bool:
        """Whether the reference is frozen."""
        return self._frozen

    @property
    def n_samples(self) -> int:
        """Lead-in observations the reference rests on."""
        return len(self._values)

    @property
    def mean(self) -> float:
        """Mean of the lead-in values (the reference level)."""
        if not self._values:
            raise ConfigError("Expected at least one lead-in observation, actual none")
        return float(np.mean(self._values))

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0–100) of the lead-in values."""
        if not self._values:
            raise ConfigError("Expected at least one lead-in observation, actual none")
        return float(np.percentile(self._values, q))
