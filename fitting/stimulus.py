"""Stimuli (current steps) and measured feature targets: the records a measurement set holds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stimulus:
    """A current step.

    Attributes:
        name: Unique stimulus name.
        amplitude_na: Step amplitude (negative hyperpolarises).
        delay_ms: Step onset.
        duration_ms: Step length.
        tstop_ms: Simulation end.
        location: Injection site, ``section(x)``.
        record: Recording site, ``section(x)``.
        v_init_mv: Initial membrane potential.
    """

    name: str
    amplitude_na: float
    delay_ms: float = 150.0
    duration_ms: float = 100.0
    tstop_ms: float = 500.0
    location: str = "soma(0.5)"
    record: str = "soma(0.5)"
    v_init_mv: float = -65.0

    @property
    def stim_end_ms(self) -> float:
        """End of the step."""
        return self.delay_ms + self.duration_ms


#: The source paper's stimulus: −5 nA at the soma for 100 ms after 150 ms (tstop 500 ms).
PAPER_STIMULUS = Stimulus("hyperpolarising", -5.0)


@dataclass(frozen=True)
class Target:
    """A measured feature.

    Attributes:
        stimulus: Name of the stimulus it was measured under.
        feature: Friendly alias or eFEL name.
        mean: Measured mean.
        std: Measured standard deviation (> 0).
        weight: Relative weight in the objective (> 0).
    """

    stimulus: str
    feature: str
    mean: float
    std: float
    weight: float = 1.0

    @property
    def key(self) -> str:
        """``stimulus/feature``."""
        return f"{self.stimulus}/{self.feature}"
