"""Lease rule: a setpoint is valid for ``lease_periods × T`` after it was sent.

The backend drops its output when the lease runs out. The controller mirrors that: when the gap
since the last command exceeds the lease, the governor assumes the output is off, so the next
command ramps from zero again under a fresh soft start (a recovery).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.envelope.config import SafetyEnvelope


@dataclass
class Lease:
    """Tracks when the last command was sent.

    Args:
        lease_s: Lease duration in s.
    """

    lease_s: float
    last_sent_s: float | None = None

    @classmethod
    def for_envelope(cls, env: SafetyEnvelope, period_s: float) -> Lease:
        """Lease of ``env.lease_periods`` control periods."""
        return cls(env.lease_periods * period_s)

    def expired(self, now_s: float) -> bool:
        """Whether the previous command's lease has run out by ``now_s``."""
        return self.last_sent_s is not None and now_s - self.last_sent_s > self.lease_s + 1e-12

    def renew(self, now_s: float) -> None:
        """Record that a command (or hold) was sent at ``now_s``."""
        self.last_sent_s = now_s

    def clear(self) -> None:
        """Forget the last command (after a stop)."""
        self.last_sent_s = None
