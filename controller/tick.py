"""One control tick, shared by the real-time loop and the gymnasium environments.

A tick takes a request (a policy's or agent's output, or a physical setpoint), passes it
through the :class:`~controller.envelope.governor.SafetyGovernor` (envelope, action map, ramps,
soft start), applies the resulting setpoint to the backend for one control period through a
:class:`~controller.backends.base.BackendConnection`, and returns the window's observation.
:class:`~controller.loop.ControlLoop` adds the clock, deadlines and recording around it;
:class:`~controller.envs.dbs.DBSEnv` adds the reward around it. Both open the session with
:func:`open_session` and account a window's charge with :func:`window_charge`, so a trained
policy meets in deployment exactly the path it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from controller.backends.base import BackendConnection, BackendInfo, BackendObservation
from controller.envelope.governor import Decision, SafetyGovernor
from core.errors import ConfigError, SafetyError
from protocol.envelope.config import SafetyEnvelope
from protocol.envelope.setpoint import Setpoint
from protocol.observables import (
    CONTROLLER_FIELDS,
    DOSE_FIELDS,
    is_device_backend,
    unobservable,
    unobservable_problem,
)


def check_observable(
    required_fields: Sequence[str], backend_kind: str, user: str, log_level: str = "warning"
) -> None:
    """Refuse a reader of unobservable fields on a device backend; log it on any other.

    A device senses only what an implant measures (``protocol.observables``): a policy that
    needs the synaptic weight or the all-cell order parameter cannot run on it. A simulator or
    replay reports every field, so the run is allowed there, and ``policy_uses_unobservable``
    is logged with the fields (the policy would not transfer to a device).

    Args:
        required_fields: Observation fields the caller reads.
        backend_kind: ``backend_kind`` of the backend (``sim``, ``serial``, ``replay``, ...).
        user: Who reads them, for the message (``policy 'ftsts'``, ``the environment``).
        log_level: Level of the ``policy_uses_unobservable`` line on other backends (an
            environment, whose reward reads the simulator's truth by design, logs it at debug).

    Raises:
        ConfigError: On a device backend, naming the unobservable fields and listing the
            measurable ones.
    """
    bad = unobservable(required_fields)
    if not bad:
        return
    if is_device_backend(backend_kind):
        problem = unobservable_problem(required_fields, user=user, backend=backend_kind)
        raise ConfigError(problem or f"Expected measurable fields, actual {list(bad)}")
    getattr(structlog.get_logger(), log_level)(
        "policy_uses_unobservable",
        user=user,
        fields=list(bad),
        backend=backend_kind,
        reason="an implant cannot measure these fields: allowed on a simulator or replay, "
        "refused on a device backend",
    )


#: Observation fields the controller derives itself (a backend need not report them; the one
#: list is ``protocol.observables.CONTROLLER_FIELDS``, where they are declared measurable).
DERIVED_FIELDS = frozenset(CONTROLLER_FIELDS)


def dose_field(envelope: SafetyEnvelope) -> str:
    """Name of the delivered-dose observation for ``envelope``'s charge unit.

    The dose is the charge the stimulator has delivered since the session's reset (both phases
    of every pulse, :func:`window_charge` summed over the windows): a stimulator knows its
    output, so it is measurable on any backend; :meth:`ControlTick.fields` adds it to what a
    policy observes (``protocol.observables.DOSE_FIELDS``).
    """
    return DOSE_FIELDS[envelope.charge_unit]


def open_session(
    connection: BackendConnection,
    envelope: SafetyEnvelope,
    period_ms: float,
    *,
    client_name: str,
    required_fields: Sequence[str] = (),
    user: str = "policy",
    fast: bool = False,
    unobservable_log: str = "warning",
) -> BackendInfo:
    """Handshake: ``hello``, check the backend fits, ``configure`` with the envelope.

    Args:
        connection: The connection (not yet opened).
        envelope: The envelope every command passes through.
        period_ms: Control period.
        client_name: Sent in ``hello``.
        required_fields: Observation fields the caller reads.
        user: Who reads them, for the error message (``policy 'ftsts'``, ``environment``).
        fast: The caller steps faster than real time (the backend must allow it).
        unobservable_log: Log level of reading unobservable fields off a device
            (:func:`check_observable`).

    Returns:
        What the backend said about itself.

    Raises:
        ConfigError: The envelope's domain, the observation fields or the pace do not fit,
            or the caller reads a field a device backend cannot measure
            (:func:`check_observable`).
        SafetyError: The backend accepted another envelope than the one sent.
    """
    info = connection.hello(client_name)
    check_observable(required_fields, info.kind, user, unobservable_log)
    if info.domain != envelope.domain:
        raise ConfigError(
            f"Expected a {info.domain!r} envelope for backend {info.kind!r}, actual "
            f"{envelope.name!r} in domain {envelope.domain!r}"
        )
    missing = [
        f for f in required_fields if f not in info.observation_fields and f not in DERIVED_FIELDS
    ]
    if missing:
        raise ConfigError(
            f"Expected backend observation fields to include {missing} for {user}, actual "
            f"{list(info.observation_fields)}"
        )
    if fast and not info.supports_fast_pace:
        raise ConfigError(f"Expected pace realtime for backend {info.kind!r}, actual fast")
    accepted = connection.configure(envelope, period_ms)
    expected = envelope.sha256()
    if accepted != expected:
        raise SafetyError(f"Expected the backend to accept envelope {expected}, actual {accepted}")
    return info


def window_charge(obs: BackendObservation, envelope: SafetyEnvelope) -> float:
    """The charge one window delivered, in the envelope's charge unit (:func:`charge_of_window`)."""
    return charge_of_window(obs.fields, obs.applied, obs.duration_ms, envelope.charge_unit)


def charge_of_window(
    fields: Mapping[str, float], applied: Setpoint | None, duration_ms: float, charge_unit: str
) -> float:
    """The charge of one window, in ``charge_unit``, from what a backend reported.

    A simulator reports its delivered model charge (``charge_mv_ms``, mV·ms); a device reports
    the charge per phase it actually delivers (``delivered_charge_uc``, lower than the setpoint
    while it ramps), from which the window's charge follows. Tissue features a device forwards
    (its model's ``charge_mv_ms``) are never mixed into a physical envelope's charge. Without
    either (a replay), the charge the applied setpoint commands: both phases of every pulse in
    the window, ``2 · q_phase · f · window``. The control loop, the environments and the replay
    verification all count charge here.
    """
    sp = applied
    charge: float | None = None
    if charge_unit == "mV·ms":
        charge = fields.get("charge_mv_ms")
    elif sp is not None and "delivered_charge_uc" in fields:
        charge = 2.0 * fields["delivered_charge_uc"] * sp.frequency_hz
        charge *= duration_ms / 1000.0
    if charge is None:
        charge = 0.0
        if sp is not None and sp.is_on:
            charge = 2.0 * sp.charge_per_phase() * sp.frequency_hz * duration_ms / 1000.0
    return float(charge)


class ControlTick:
    """Request → governor → backend → observation, one control period at a time.

    It counts the delivered dose (:data:`DOSE_FIELDS`), the charge of every window since
    :meth:`start` in the envelope's charge unit, which :meth:`fields` adds to what a policy sees.

    Args:
        connection: The opened connection (see :func:`open_session`).
        governor: The governor every request passes through.
        period_ms: Control period ``T``.
    """

    def __init__(
        self, connection: BackendConnection, governor: SafetyGovernor, period_ms: float
    ) -> None:
        self.connection = connection
        self.governor = governor
        self.period_ms = period_ms
        self.dose_field = dose_field(governor.envelope)
        self.dose = 0.0
        #: The charge of the last applied window (:func:`window_charge`), counted once.
        self.last_charge = 0.0

    def start(self) -> Decision:
        """Arm the governor at control time 0; its first (off) setpoint starts the soft start."""
        self.dose = 0.0
        self.governor.arm(0.0)
        return self.governor.idle(0.0)

    def command(self, request: Any, t_s: float) -> Decision:
        """The governor's setpoint for ``request`` at control time ``t_s``."""
        return self.governor.command(request, t_s)

    def apply(
        self, decision: Decision, timeout_s: float, want_spikes: bool = False
    ) -> BackendObservation:
        """Apply the decided setpoint for one control period; return the window's observation.

        Raises:
            TransportTimeoutError: No observation within ``timeout_s``.
            BackendUnavailableError: The backend cannot be reached.
            NeuroLoopError: The backend refused the step (it stopped stimulation).
        """
        if want_spikes:
            obs = self.connection.step(decision.setpoint, self.period_ms, timeout_s, True)
        else:
            # Without spikes the call stays the three-argument one every connection accepts.
            obs = self.connection.step(decision.setpoint, self.period_ms, timeout_s)
        self.last_charge = window_charge(obs, self.governor.envelope)
        self.dose += self.last_charge
        return obs

    def fields(self, obs: BackendObservation) -> dict[str, float]:
        """What a policy observes: the backend's fields and the delivered dose so far.

        Recordings keep the backend's observation as it came; the dose is the controller's own
        account (:data:`DOSE_FIELDS`), derived again on every run, replays included.
        """
        return {**obs.fields, self.dose_field: self.dose}
