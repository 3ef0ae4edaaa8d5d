"""The two benchmark problems: the paper's five-compartment cell and an active-dendrite cell.

Each problem is a model, a measurement file (stimuli, features, standard deviations and
parameter bounds) and a rule for the standard deviation of synthetic targets:

* ``reference``: the bundled five-compartment cell, 5 parameters, two stimuli (the paper's
  −5 nA step and +4 nA), eight features; synthetic targets get 5 % of the value as std.
* ``l5_active``: the reduced layer-5 pyramidal cell with active dendrites in
  ``fitting/examples/l5_active`` (hoc template + mod files, so it goes through the user-model
  path), 13 channel parameters, three stimuli (−5 nA, +2.5 nA, +3.5 nA), ten features; the
  measurement file's stds are what an experimenter would report for a population of cells
  (absolute, per feature), and synthetic targets keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fitting.measurements import MeasurementSet, Target, load_measurements
from fitting.model import ModelSpec, parse_model
from fitting.objective import Evaluation
from fitting.synthetic import targets_from_evaluation

EXAMPLES = Path(__file__).parent / "examples"


@dataclass(frozen=True)
class Problem:
    """A benchmark problem.

    Attributes:
        name: ``reference`` or ``l5_active``.
        model: The ``--model`` string.
        measurements_file: The example measurement set (bounds, stimuli, features, stds).
        template_stds: Synthetic targets keep the file's stds (else 5 % of the value).
    """

    name: str
    model: str
    measurements_file: Path
    template_stds: bool

    def model_spec(self) -> ModelSpec:
        """The parsed (not yet compiled) model."""
        return parse_model(self.model)

    def measurements(self) -> MeasurementSet:
        """The example measurement set."""
        return load_measurements(self.measurements_file)

    def targets_for(
        self, evaluation: Evaluation, template: tuple[Target, ...]
    ) -> tuple[Target, ...] | None:
        """Targets measured on ``evaluation`` (``None`` if a feature failed)."""
        targets = targets_from_evaluation(evaluation, template)
        if targets is None or not self.template_stds:
            return targets
        return tuple(
            Target(t.stimulus, t.feature, t.mean, s.std, t.weight)
            for t, s in zip(targets, template, strict=True)
        )


PROBLEMS: dict[str, Problem] = {
    "reference": Problem(
        "reference", "reference", EXAMPLES / "paper_minus5na.yaml", template_stds=False
    ),
    "l5_active": Problem(
        "l5_active",
        f"{EXAMPLES / 'l5_active' / 'L5Active.hoc'}:L5Active",
        EXAMPLES / "l5_active_steps.yaml",
        template_stds=True,
    ),
}
