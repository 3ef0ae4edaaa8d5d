"""The safety envelope, defined once: fields, caps, floors, rules, the wire form and the check.

Every layer uses this package: the controller's governor shapes requests with the rules, every
protocol backend rebuilds the envelope from ``configure`` (``wire``) and checks each delivered
setpoint (``monitor``), the serial bridge converts it into the device's envelope, and replay
verification checks recordings with the same monitor. See ``docs/controller.md``.
"""

from protocol.envelope.config import SafetyEnvelope, load_envelope, parse_envelope, validate
from protocol.envelope.monitor import EnvelopeMonitor
from protocol.envelope.setpoint import Finding, Setpoint
from protocol.envelope.wire import envelope_from_wire, envelope_to_wire

__all__ = [
    "EnvelopeMonitor",
    "Finding",
    "SafetyEnvelope",
    "Setpoint",
    "envelope_from_wire",
    "envelope_to_wire",
    "load_envelope",
    "parse_envelope",
    "validate",
]
