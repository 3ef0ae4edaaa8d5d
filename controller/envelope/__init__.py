"""The controller's side of the safety envelope: the governor and the policy-facing rules.

The envelope itself (fields, caps, floors, one module per rule, the backends' check) is
defined once in :mod:`protocol.envelope`; the governor shapes every request with those rules
(plus the action map, the lease and the invalid-input streak kept here). Nothing reaches a
backend without passing :class:`SafetyGovernor`.
"""

from controller.envelope.action import ActionMap
from controller.envelope.governor import Decision, SafetyGovernor
from protocol.envelope.config import SafetyEnvelope, load_envelope, parse_envelope
from protocol.envelope.setpoint import Finding, Setpoint

__all__ = [
    "ActionMap",
    "Decision",
    "Finding",
    "SafetyEnvelope",
    "SafetyGovernor",
    "Setpoint",
    "load_envelope",
    "parse_envelope",
]
