"""The default fitting pool: :class:`fitting.cluster.ExecutorPool` over local processes.

Workers are started with the ``spawn`` (default) or ``forkserver`` context, so no NEURON state
is ever inherited through ``fork`` (a forked child of a process that already ran NEURON records
empty vectors without raising — see docs/fitting.md). Each worker builds the model once, then
evaluates parameter sets on request. A simulation that exceeds ``timeout_s`` gets its worker
stopped and replaced, and is returned as a ``timeout`` failure. The same pool on a Ray cluster
is ``ExecutorPool(model, measurements, make_executor(address), timeout_s)``.
"""

from __future__ import annotations

from core.errors import FittingError
from core.executor.local import LocalExecutor
from fitting.cluster import ExecutorPool
from fitting.measurements import MeasurementSet
from fitting.model import ModelSpec


class WorkerPool(ExecutorPool):
    """A fixed number of model-building local worker processes.

    Args:
        model_spec: The model; call ``ModelSpec.prepare`` first so mods are compiled once.
        measurements: Stimuli and targets.
        workers: Number of processes.
        timeout_s: Longest allowed evaluation of one parameter set.
        start_method: ``spawn`` or ``forkserver`` (``fork`` is refused).
    """

    def __init__(
        self,
        model_spec: ModelSpec,
        measurements: MeasurementSet,
        workers: int = 1,
        timeout_s: float = 60.0,
        start_method: str = "spawn",
    ) -> None:
        if start_method not in ("spawn", "forkserver"):
            raise FittingError(
                f"Expected start method spawn or forkserver, actual {start_method!r}: "
                "fork would inherit NEURON state"
            )
        if workers < 1:
            raise FittingError(f"Expected workers >= 1, actual {workers}")
        if timeout_s <= 0:
            raise FittingError(f"Expected timeout_s > 0, actual {timeout_s}")
        super().__init__(model_spec, measurements, LocalExecutor(workers, start_method), timeout_s)
