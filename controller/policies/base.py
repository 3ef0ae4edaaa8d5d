"""What a policy is to the control loop.

A policy sees the latest observation (named floats) and the model time at which its output will
take effect, and returns either a physical :class:`~protocol.envelope.setpoint.Setpoint`
(built-in policies) or a normalised action vector in ``[-1, 1]`` that the envelope maps through
the policy's :class:`~controller.envelope.action.ActionMap` (trained policy bundles). Either
way the output goes through the safety governor before anything reaches a backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controller.envelope.action import ActionMap


class Policy(Protocol):
    """A controller policy."""

    #: Short name for logs and summaries.
    name: str
    #: Observation fields the policy reads (checked for presence and finiteness every tick).
    required_fields: tuple[str, ...]
    #: Layout of normalised outputs, or ``None`` when :meth:`act` returns setpoints.
    action_map: ActionMap | None

    def reset(self) -> None:
        """Forget any state from a previous run."""
        ...

    def act(self, fields: Mapping[str, float], t_model_ms: float) -> Any:
        """Return the request for the window starting at ``t_model_ms``.

        Args:
            fields: The latest observation (already checked finite for ``required_fields``).
            t_model_ms: Model time at which the returned request takes effect.
        """
        ...
