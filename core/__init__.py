"""Foundations every NeuroLoop package stands on, below even the wire protocol.

* :mod:`core.clip`: bounded text for error messages and log fields built from input.
* :mod:`core.errors`: the one exception hierarchy (:class:`~core.errors.NeuroLoopError`).
* :mod:`core.logs`: structlog configured once per process, and the shared ``--log-*`` options.
* :mod:`core.clock`: the one clock convention (monotonic seconds) and a fake clock for tests.
* :mod:`core.executor`: one task interface over a local process pool (default) or a Ray cluster.

This package imports nothing of ours; every other package (protocol, simulator, drivers,
controller, fitting) may import it. This file imports nothing, so ``import core.errors`` is cheap.
"""
