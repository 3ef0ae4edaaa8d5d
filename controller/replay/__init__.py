"""Replay of recorded controller sessions: verification, a replay backend, figures and export.

* :mod:`controller.replay.session` reads a recording and groups its records by tick;
* :mod:`controller.replay.rebuild` rebuilds the recorded envelope and policy from the header;
* :mod:`controller.replay.rerun` re-runs policy and envelope on the recorded observations and
  compares every command, finding and action with the recording;
* :mod:`controller.replay.invariants` checks the envelope's invariants on every recorded tick;
* :mod:`controller.replay.timing` reports latency, jitter and deadline misses;
* :mod:`controller.replay.verify` ties these together into one verdict;
* :mod:`controller.replay.backend` serves a recording as a protocol backend;
* :mod:`controller.replay.figures` and :mod:`controller.replay.nwb` turn a session into PNG
  figures and an NWB file;
* :mod:`controller.replay.edit` copies a recording with changes (what-if studies, tests).

``docs/replay.md`` is the user guide.
"""
