"""In-process evaluation: build the model here, then simulate parameter sets on demand.

Use it only inside a worker process (see :mod:`fitting.pool`) or a process that never forks
afterwards: NEURON state must not be inherited through ``fork``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import structlog

from core.errors import FittingError
from fitting.features import STATUS_SIMULATION_ERROR, FeatureResult, extract_features
from fitting.measurements import MeasurementSet
from fitting.model import BuiltModel, ModelSpec, build_model
from fitting.objective import Evaluation, failed_evaluation, score_features
from fitting.simulation import run_stimulus

log = structlog.get_logger()
FloatArray = npt.NDArray[np.float64]
Traces = dict[str, tuple[FloatArray, FloatArray]]


class Evaluator:
    """Simulates parameter sets against a measurement set in this process.

    Args:
        model_spec: The model (built lazily on first use).
        measurements: Stimuli and targets.
    """

    def __init__(self, model_spec: ModelSpec, measurements: MeasurementSet) -> None:
        self.model_spec = model_spec
        self.measurements = measurements
        self._model: BuiltModel | None = None

    @property
    def model(self) -> BuiltModel:
        """The built model (built on first access)."""
        if self._model is None:
            self._model = build_model(self.model_spec)
        return self._model

    def simulate(self, params: Mapping[str, float]) -> Traces:
        """Set ``params`` and run every stimulus that has targets; ``stimulus → (t, v)``."""
        self.model.set_parameters(params)
        used = {t.stimulus for t in self.measurements.targets}
        return {
            p.name: run_stimulus(self.model, p) for p in self.measurements.stimuli if p.name in used
        }

    def evaluate(self, params: Mapping[str, float]) -> Evaluation:
        """Simulate and score one parameter set; simulation errors become failure states."""
        start = time.perf_counter()
        targets = self.measurements.targets
        try:
            traces = self.simulate(params)
        except FittingError:
            raise
        except Exception as err:  # NEURON raises RuntimeError/hoc errors on numerical failure
            log.warning("simulation_failed", params=dict(params), error=str(err))
            return failed_evaluation(
                params, targets, STATUS_SIMULATION_ERROR, str(err), time.perf_counter() - start
            )
        results: dict[str, FeatureResult] = {}
        for stim in self.measurements.stimuli:
            names = self.measurements.features_for(stim.name)
            if not names:
                continue
            time_ms, voltage_mv = traces[stim.name]
            computed = extract_features(
                time_ms,
                voltage_mv,
                names,
                stim.delay_ms,
                stim.stim_end_ms,
                stim.amplitude_na,
                stim.tstop_ms,
            )
            for result in computed:
                results[f"{stim.name}/{result.name}"] = result
        return score_features(params, targets, results, time.perf_counter() - start)
