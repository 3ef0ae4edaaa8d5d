"""A conformance check for protocol backends: is this backend what docs/protocol.md says?

:func:`check_backend` talks to a running backend over ZeroMQ as a client written from the
document would (raw msgpack maps, malformed bytes where that is the point, a deadline on
every reply) and returns a :class:`Report` with one result per check: the section of the
document, pass/fail/skip, and what was expected and what came back. ``neuroloop-check-backend``
(:mod:`protocol.conformance.cli`) runs it from the command line. One module per area:

* :mod:`~protocol.conformance.handshake`: ``hello``, versions, capabilities, ``busy``;
* :mod:`~protocol.conformance.states`: every transition of the §5 state machine;
* :mod:`~protocol.conformance.refusals`: malformed bodies, headers and fields, bad envelopes,
  refused steps that stop stimulation;
* :mod:`~protocol.conformance.rules`: each envelope rule broken on its own;
* :mod:`~protocol.conformance.stops`: ``stop``, ``bye`` and a second ``hello``;
* :mod:`~protocol.conformance.timeouts`: heartbeats and the session time-out.

Differences between backends (units, durations, spikes, fixed observations) are read from
the advertised capabilities; nothing depends on a backend's name.
"""

from protocol.conformance.check import AREAS, check_backend
from protocol.conformance.report import CheckResult, Report

__all__ = ["AREAS", "CheckResult", "Report", "check_backend"]
