"""Dose schedules: a stimulation programme indexed by the charge already delivered.

A :class:`DoseSchedule` holds amplitude ``amplitudes[k]`` in part ``k`` of a total dose
``stop_dose``, at one pulse rate and phase width, and stops for good once the whole dose is
given. Part ``k`` is ``stop_dose · a_k / Σ a`` long (in dose), so that at a steady rate and
width every part lasts the same time: the programme is a sequence of equal-length stages, told
apart by the charge delivered, not by a clock. It reads one observation, the delivered dose
(``dose_uc`` on a device, ``dose_mv_ms`` in model units), which the controller counts itself
from what the backend reports: nothing it reads needs an electrode to see the network's
synaptic weights.

:func:`schedule_arrays` writes a schedule as the two layers of a ReLU network in the policy
bundle format (``docs/controller.md``), exactly but for the steps: each of the ``K`` changes of
amplitude (the last one to zero) is a step of width :data:`STEP_WIDTH` of the dose unit (its
place exact to about two step widths with the format's float32 weights), built from two ReLU
units, ``relu((d − b)/ε) − relu((d − b)/ε − 1)``, and the output layer adds the steps to the
first amplitude and maps amplitude, rate and width onto the action box. So a schedule runs
wherever a trained bundle runs (``neuroloop-controller``, ``neuroloop-eval``, the serial
device through the driver) with no code of its own on the control path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.policies.bundle import FieldSpec, PolicyBundle, load_bundle, write_bundle
from core.errors import ConfigError
from protocol.envelope.setpoint import Setpoint

#: Width of each step of the schedule's network, in the dose unit (µC or mV·ms): far below the
#: dose of one control period (≈ 25 µC or ≈ 1 000 mV·ms), so the network gives the schedule's
#: amplitude at every observed dose but those inside a step.
STEP_WIDTH = 0.01
#: The bundle's ``algorithm`` entry for a schedule.
ALGORITHM = "CMA-ES dose schedule"


@dataclass(frozen=True)
class DoseSchedule:
    """A stimulation programme indexed by the delivered dose.

    Args:
        amplitudes: Amplitude of each of the ``K`` parts of the dose (equal durations, see the
            module docstring), in the envelope's amplitude unit (mA on a device, mV of drive
            in model units).
        frequency_hz: Pulse rate while stimulating.
        pulse_width_us: Phase width while stimulating.
        stop_dose: Total dose after which stimulation stops for good (µC or mV·ms, the unit
            of ``dose_field``).
        dose_field: The observation the schedule reads (``dose_uc`` or ``dose_mv_ms``).
        part_ends: Explicit ends of the parts (ascending, the last one ``stop_dose``) instead
            of equal durations; :meth:`truncated` makes them.
    """

    amplitudes: tuple[float, ...]
    frequency_hz: float
    pulse_width_us: float
    stop_dose: float
    dose_field: str
    part_ends: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        values = (*self.amplitudes, self.frequency_hz, self.pulse_width_us, self.stop_dose)
        if not self.amplitudes or not all(math.isfinite(v) for v in values):
            raise ConfigError(
                f"Expected at least one amplitude and finite schedule values, actual {values}"
            )
        if min(self.amplitudes) <= 0.0 or self.frequency_hz <= 0.0 or self.pulse_width_us <= 0.0:
            raise ConfigError(
                f"Expected amplitudes, frequency and pulse width > 0, actual {self.amplitudes}, "
                f"{self.frequency_hz}, {self.pulse_width_us}"
            )
        if self.part_ends is not None:
            ends = self.part_ends
            if (len(ends) != len(self.amplitudes) or ends[-1] != self.stop_dose
                    or not all(math.isfinite(e) for e in ends)):  # fmt: skip
                raise ConfigError(
                    f"Expected one finite part end per amplitude, the last the stop dose "
                    f"{self.stop_dose}, actual {ends}"
                )
        shortest = float(np.min(np.diff((0.0, *self.breakpoints))))
        if shortest <= 4 * STEP_WIDTH:
            raise ConfigError(
                f"Expected every part of the dose longer than {4 * STEP_WIDTH} (four step "
                f"widths), actual {shortest} (stop_dose {self.stop_dose})"
            )

    @property
    def breakpoints(self) -> tuple[float, ...]:
        """Doses at which the amplitude changes: the ends of the parts, the last one the stop.

        Part ``k`` ends at ``stop_dose · (a_0 + … + a_k) / Σ a`` (equal durations at a steady
        rate and width).
        """
        if self.part_ends is not None:
            return self.part_ends
        total = sum(self.amplitudes)
        ends = np.cumsum(self.amplitudes) * (self.stop_dose / total)
        return (*(float(e) for e in ends[:-1]), self.stop_dose)

    def truncated(self, dose: float) -> DoseSchedule:
        """The same programme stopped for good once ``dose`` has been delivered.

        A cut within four step widths after a part's start stops at that part's start instead.

        Raises:
            ConfigError: ``dose`` not in (0, ``stop_dose``].
        """
        if not 0.0 < dose <= self.stop_dose:
            raise ConfigError(f"Expected a dose in (0, {self.stop_dose}], actual {dose}")
        ends: list[float] = []
        for end in self.breakpoints:
            ends.append(min(end, dose))
            if end >= dose:
                break
        if len(ends) > 1 and ends[-1] - ends[-2] <= 4 * STEP_WIDTH:
            ends.pop()  # a last part too short to write: stop where the one before ends
        return replace(self, amplitudes=self.amplitudes[: len(ends)], stop_dose=ends[-1],
                       part_ends=tuple(ends))  # fmt: skip

    def amplitude_at(self, dose: float) -> float:
        """The amplitude the schedule asks for after ``dose`` has been delivered (0: stopped)."""
        for end, amplitude in zip(self.breakpoints, self.amplitudes, strict=True):
            if dose < end:
                return amplitude
        return 0.0

    def setpoint_at(self, dose: float) -> Setpoint:
        """The setting after ``dose`` has been delivered."""
        return Setpoint(
            amplitude=self.amplitude_at(dose),
            frequency_hz=self.frequency_hz,
            pulse_width_us=self.pulse_width_us,
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DoseSchedule:
        """The schedule of :meth:`as_dict`'s form (a bundle's ``schedule`` entry).

        Raises:
            ConfigError: A missing or malformed entry.
        """
        try:
            ends = raw.get("part_ends")
            return cls(
                amplitudes=tuple(float(a) for a in raw["amplitudes"]),
                frequency_hz=float(raw["frequency_hz"]),
                pulse_width_us=float(raw["pulse_width_us"]),
                stop_dose=float(raw["stop_dose"]),
                dose_field=str(raw["dose_field"]),
                part_ends=None if ends is None else tuple(float(e) for e in ends),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                f"Expected a schedule with amplitudes, frequency_hz, pulse_width_us, stop_dose "
                f"and dose_field, actual {dict(raw)!r} ({err})"
            ) from err

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the bundle's ``schedule`` entry)."""
        return {
            "amplitudes": list(self.amplitudes),
            "frequency_hz": self.frequency_hz,
            "pulse_width_us": self.pulse_width_us,
            "stop_dose": self.stop_dose,
            "dose_field": self.dose_field,
            **({} if self.part_ends is None else {"part_ends": list(self.part_ends)}),
        }


def _to_action(value: float, spec: FieldSpec) -> float:
    return 2.0 * (value - spec.low) / (spec.high - spec.low) - 1.0


def schedule_arrays(
    schedule: DoseSchedule,
    observation_fields: Sequence[FieldSpec],
    action_fields: Sequence[FieldSpec],
) -> tuple[dict[str, npt.NDArray[np.float32]], list[dict[str, str]]]:
    """The schedule as a bundle's arrays and layers (module docstring).

    Args:
        schedule: The programme.
        observation_fields: The bundle's observation fields; one must be ``dose_field``.
        action_fields: ``amplitude``, ``frequency_hz`` and ``pulse_width_us`` with their
            action-box ranges.

    Raises:
        ConfigError: The dose is not observed, an action field is missing, or a value of the
            schedule lies outside the action box.
    """
    names = [f.name for f in observation_fields]
    if schedule.dose_field not in names:
        raise ConfigError(
            f"Expected the observation fields to include {schedule.dose_field!r}, actual {names}"
        )
    specs = {f.name: f for f in action_fields}
    order = [f.name for f in action_fields]
    if sorted(order) != sorted(("amplitude", "frequency_hz", "pulse_width_us")):
        raise ConfigError(
            f"Expected action fields amplitude, frequency_hz, pulse_width_us, actual {order}"
        )
    checks = [("amplitude", a) for a in schedule.amplitudes]
    checks += [("frequency_hz", schedule.frequency_hz), ("pulse_width_us", schedule.pulse_width_us)]
    for name, value in checks:
        spec = specs[name]
        if not spec.low <= value <= spec.high:
            raise ConfigError(
                f"Expected {name} in the action box [{spec.low}, {spec.high}] {spec.unit}, "
                f"actual {value}"
            )
    dose_col = names.index(schedule.dose_field)
    levels = (*schedule.amplitudes, 0.0)
    n_hidden = 2 * len(schedule.amplitudes)
    w0 = np.zeros((n_hidden, len(names)))
    b0 = np.zeros(n_hidden)
    w1 = np.zeros((len(order), n_hidden))
    b1 = np.zeros(len(order))
    amp = specs["amplitude"]
    gain = 2.0 / (amp.high - amp.low)  # action per unit of amplitude
    for j, end in enumerate(schedule.breakpoints):
        for half in (0, 1):  # relu(x) − relu(x − 1), x = (d − end)/ε
            w0[2 * j + half, dose_col] = 1.0 / STEP_WIDTH
            b0[2 * j + half] = -end / STEP_WIDTH - half
        step = gain * (levels[j + 1] - levels[j])
        w1[order.index("amplitude"), 2 * j] = step
        w1[order.index("amplitude"), 2 * j + 1] = -step
    b1[order.index("amplitude")] = _to_action(levels[0], amp)
    b1[order.index("frequency_hz")] = _to_action(schedule.frequency_hz, specs["frequency_hz"])
    b1[order.index("pulse_width_us")] = _to_action(schedule.pulse_width_us, specs["pulse_width_us"])
    arrays = {
        "layer0.weight": w0.astype(np.float32),
        "layer0.bias": b0.astype(np.float32),
        "layer1.weight": w1.astype(np.float32),
        "layer1.bias": b1.astype(np.float32),
    }
    layers = [
        {"weight": "layer0.weight", "bias": "layer0.bias", "activation": "relu"},
        {"weight": "layer1.weight", "bias": "layer1.bias", "activation": "identity"},
    ]
    return arrays, layers


def write_schedule_bundle(
    schedule: DoseSchedule,
    path: str | Path,
    *,
    observation_fields: Sequence[FieldSpec],
    action_fields: Sequence[FieldSpec],
    envelope_hash: str,
    training: dict[str, Any],
) -> PolicyBundle:
    """Write ``schedule`` as a policy bundle at ``path`` and return it loaded.

    Args:
        schedule: The programme.
        path: Output directory.
        observation_fields: What it observes (the dose field at least; the search gives it
            the dose alone, :func:`controller.training.schedule_search.schedule_observation`).
        action_fields: The action box of its envelope.
        envelope_hash: ``SafetyEnvelope.sha256()`` of that envelope.
        training: The bundle's ``training`` entry (episode timing, search facts).
    """
    arrays, layers = schedule_arrays(schedule, observation_fields, action_fields)
    import cma

    root = write_bundle(
        path,
        arrays=arrays,
        layers=layers,
        normalization=None,
        output="clip",
        algorithm=ALGORITHM,
        versions={"cma": str(cma.__version__)},
        observation_fields=observation_fields,
        action_fields=action_fields,
        envelope_hash=envelope_hash,
        metadata={"training": training, "schedule": schedule.as_dict()},
    )
    return load_bundle(root)
