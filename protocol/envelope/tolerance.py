"""The envelope's one floating-point tolerance, shared by every layer that checks a limit.

A setpoint at a limit computed one way (a ramp of ten 0.2 mA steps) and checked another way
(2.2 − 2.0 against 2 mA/s × 100 ms) differs from it by rounding alone. Every comparison of a
value against an envelope limit allows the same slack, so that what the governor emits always
passes the backends' check (:mod:`protocol.envelope.monitor`) and the replay's.
"""

from __future__ import annotations

#: Relative and absolute slack of every comparison against a limit.
REL_SLACK = 1e-9
ABS_SLACK = 1e-12


def within(value: float, limit: float) -> bool:
    """Whether ``value <= limit`` up to the envelope's slack."""
    return value <= limit + ABS_SLACK + REL_SLACK * abs(limit)
