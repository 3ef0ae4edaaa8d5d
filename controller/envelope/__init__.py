"""The safety envelope: validated limits (``config``), one small module per rule, and the governor.

Nothing reaches a backend without passing :class:`SafetyGovernor`.
"""

from controller.envelope.action import ActionMap
from controller.envelope.governor import Decision, SafetyGovernor
from protocol.envelope.config import Envelope, load_envelope, parse_envelope
from protocol.envelope.setpoint import Finding, Setpoint

__all__ = [
    "ActionMap",
    "Decision",
    "Envelope",
    "Finding",
    "SafetyGovernor",
    "Setpoint",
    "load_envelope",
    "parse_envelope",
]
