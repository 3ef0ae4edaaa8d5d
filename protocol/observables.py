"""Which observation fields an implant can measure: the one definition, used everywhere.

A simulator can report anything about its network; an implanted stimulator reports only what
its sensing front end measures (``docs/protocol.md`` §3.5, ``docs/device-protocol.md`` §10):
the local field potential's band powers and spectral peak, the spikes of a few recorded units,
and what the stimulator itself delivered. No electrode measures a synaptic weight, a
population-wide mean membrane voltage or the order parameter of every cell, so those fields are
*unobservable*: they stay available to simulation studies, but a policy that needs one cannot
leave the simulator, and the controller refuses it on a device backend.

Names are the simulator's observation names (``simulator.network.OBSERVATION_FIELDS``) and the
serial bridge's read-backs. A name this module does not declare measurable counts as
unobservable: measurability is granted by name, never assumed.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Features a sensing implant computes from its LFP and recorded units, in the order the
#: simulator's sensor reports them (``simulator.sensing``) and the device STATUS carries them
#: (``docs/device-protocol.md`` §5).
SENSOR_FIELDS: tuple[str, ...] = (
    "lfp_beta_uv2",
    "lfp_band_uv2",
    "lfp_peak_hz",
    "lfp_peak_uv2",
    "units_synchrony",
    "units_rate_hz",
)
#: The sensor's features followed by the charge the stimulator delivered (STATUS v2's block).
SENSED_FIELDS: tuple[str, ...] = (*SENSOR_FIELDS, "charge_mv_ms")

#: What a stimulator reports about its own output (the serial bridge's read-backs).
DEVICE_READBACK_FIELDS: tuple[str, ...] = (
    "delivered_amplitude_ma",
    "delivered_charge_uc",
    "lease_remaining_ms",
)

#: What the controller derives from the stimulator's own output (``controller.tick``): the
#: charge delivered since the session's reset, in model or physical units. A stimulator knows
#: what it gave, so these are measurable on any backend; no backend has to report them.
DOSE_FIELDS: dict[str, str] = {"mV·ms": "dose_mv_ms", "µC": "dose_uc"}
#: The same, as the list of controller-derived fields.
CONTROLLER_FIELDS: tuple[str, ...] = tuple(DOSE_FIELDS.values())

#: Every field an implant can measure.
MEASURABLE_FIELDS: frozenset[str] = frozenset(
    SENSED_FIELDS + DEVICE_READBACK_FIELDS + CONTROLLER_FIELDS
)

#: The simulator's fields that no implant measures (all-cell Kuramoto R and voltage synchrony,
#: population-mean voltages, population rates, the mean E→I synaptic weight).
UNOBSERVABLE_FIELDS: frozenset[str] = frozenset(
    {
        "synchrony",
        "chi",
        "mean_v_e_mv",
        "sd_v_e_mv",
        "mean_v_i_mv",
        "sd_v_i_mv",
        "weight_mv",
        "rate_e_hz",
        "rate_i_hz",
    }
)

#: ``backend_kind`` values whose observations come from a real (or emulated) implant: a policy
#: that needs an unobservable field is refused on them.
DEVICE_BACKEND_KINDS: frozenset[str] = frozenset({"serial"})


def is_measurable(name: str) -> bool:
    """Whether an implant can measure the observation field ``name``."""
    return name in MEASURABLE_FIELDS


def unobservable(names: Iterable[str]) -> tuple[str, ...]:
    """The names in ``names`` an implant cannot measure, in their order, without repeats.

    Unknown names count as unobservable (measurability is declared, never assumed).
    """
    out: list[str] = []
    for name in names:
        if not is_measurable(name) and name not in out:
            out.append(name)
    return tuple(out)


def is_device_backend(kind: str) -> bool:
    """Whether a backend of ``backend_kind`` ``kind`` senses like an implant."""
    return kind in DEVICE_BACKEND_KINDS


def unobservable_problem(names: Iterable[str], *, user: str, backend: str) -> str | None:
    """Why ``user`` cannot run on device backend ``backend``, or ``None`` if it can.

    Args:
        names: The observation fields ``user`` reads.
        user: Who reads them, for the message (``policy 'ftsts'``).
        backend: The backend, for the message (``serial``).

    Returns:
        A message naming the unobservable fields and listing the measurable ones.
    """
    bad = unobservable(names)
    if not bad:
        return None
    return (
        f"Expected {user} to read only fields an implant can measure on the {backend} backend, "
        f"actual unobservable {list(bad)}; measurable fields: {sorted(MEASURABLE_FIELDS)} "
        "(see docs/protocol.md §3.5; use a policy on measurable fields, or a simulator or "
        "replay backend)"
    )
