"""Charge-balanced biphasic FTSTS stimulation and its exact per-step integration.

A pulse is two rectangular phases of equal width and opposite sign (cathodic-first for the
population that receives the "negative-first" waveform). The excitatory (E) and inhibitory (I)
populations see the same pulse with opposite polarity, optionally shifted by an E–I offset:

* ``desync`` (Fig 3): I cells get (+, −), E cells get (−, +), so I is depolarised about one phase
  width before E on every pulse; post-before-pre pairing on E→I synapses gives LTD.
* ``sync`` (Fig 4): the waveforms are swapped, E leads I and E→I synapses potentiate.

A lead may have several contacts (``NetworkConfig.contacts``), each near one subgroup of E and
one of I cells. A stimulus reaches every cell (``contact=None``, the default), the subgroups of
one contact, or, in the ``coordinated-reset`` pattern (Figs 10 and 14), one E and one I
subgroup per slot: a cycle is ``contacts`` slots of ``burst_pulses`` pulses, and at every
cycle's start the E and the I subgroups' order is drawn anew, independently, from the run's
seeded generator (``PulseTrain.rng``).

Pulses are integrated by the charge they deliver inside each time step: the drive applied in a
step is the exact integral of the waveform over that step divided by ``dt``. A 50 µs phase at
``dt = 0.1 ms`` is therefore neither lost nor rounded up to a whole step. Amplitudes are in the
model's drive units (mV inside ``τ_m·dV/dt``); charge is reported in mV·ms (amplitude × time).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from numba import njit

from core.errors import ConfigError

Polarity = Literal["desync", "sync"]
Pattern = Literal["continuous", "coordinated-reset"]
IWaveform = Literal["mirror", "same"]

#: Limits the simulator accepts (and advertises to controllers), in model units.
AMPLITUDE_RANGE_MV = (0.0, 400.0)
FREQUENCY_RANGE_HZ = (1.0, 250.0)
#: Pulse rate within a coordinated-reset burst (an experiment's, not a controller's setting:
#: Fig 14's bursts run at 400 Hz, 0.5 ms phases every 2.5 ms).
BURST_FREQUENCY_RANGE_HZ = (1.0, 500.0)
PULSE_WIDTH_RANGE_US = (10.0, 5000.0)
EI_OFFSET_RANGE_MS = (-50.0, 50.0)


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"Expected a finite {name}, actual {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"Expected {name} in [{lo}, {hi}], actual {value!r}")


@dataclass(frozen=True)
class Stimulus:
    """One setting of the pulse train, held until the next setting.

    Args:
        amplitude_mv: Drive per phase in model units (mV inside ``τ_m·dV/dt``); 0 means off.
        frequency_hz: Pulse rate in Hz.
        pulse_width_us: Width of each phase in µs (the pulse is two phases long).
        polarity: ``desync`` (I leads E: E→I depression) or ``sync`` (E leads I: potentiation).
        ei_offset_ms: Extra delay of the I waveform relative to the E waveform in ms (Fig 12).
        contact: Deliver on this contact's subgroups only (``0 … contacts − 1`` of the network's
            lead); ``None``: every cell (every figure but 10 and 14).
        pattern: ``continuous`` (a pulse every period) or ``coordinated-reset`` (bursts that
            visit the contacts' subgroups in a fresh random order every cycle; Figs 10, 14).
        burst_pulses: Pulses per coordinated-reset slot.
        i_waveform: ``mirror`` (I cells get the E waveform's mirror image: FTSTS) or ``same``
            (I cells get the E waveform itself, no I-before-E offset: Fig 10's "CR only").

    Everything after the amplitude is keyword-only (``Stimulus(100.0, frequency_hz=…,
    pulse_width_us=…)``): the device layer orders the triplet differently, so frequency and
    pulse width are never passed by position.
    """

    amplitude_mv: float
    _: KW_ONLY
    frequency_hz: float = 1000.0 / 12.0
    pulse_width_us: float = 1000.0
    polarity: Polarity = "desync"
    ei_offset_ms: float = 0.0
    contact: int | None = None
    pattern: Pattern = "continuous"
    burst_pulses: int = 4
    i_waveform: IWaveform = "mirror"

    def __post_init__(self) -> None:
        _check_range("amplitude_mv", self.amplitude_mv, *AMPLITUDE_RANGE_MV)
        if self.pattern not in ("continuous", "coordinated-reset"):
            raise ConfigError(
                f"Expected pattern 'continuous' or 'coordinated-reset', actual {self.pattern!r}"
            )
        rates = FREQUENCY_RANGE_HZ if self.pattern == "continuous" else BURST_FREQUENCY_RANGE_HZ
        _check_range("frequency_hz", self.frequency_hz, *rates)
        _check_range("pulse_width_us", self.pulse_width_us, *PULSE_WIDTH_RANGE_US)
        _check_range("ei_offset_ms", self.ei_offset_ms, *EI_OFFSET_RANGE_MS)
        if self.polarity not in ("desync", "sync"):
            raise ConfigError(f"Expected polarity 'desync' or 'sync', actual {self.polarity!r}")
        if self.i_waveform not in ("mirror", "same"):
            raise ConfigError(f"Expected i_waveform 'mirror' or 'same', actual {self.i_waveform!r}")
        contact = self.contact
        if contact is not None and (isinstance(contact, bool) or not isinstance(contact, int)
                                    or contact < 0):  # fmt: skip
            raise ConfigError(f"Expected contact None or an integer >= 0, actual {contact!r}")
        burst = self.burst_pulses
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(f"Expected burst_pulses to be an integer >= 1, actual {burst!r}")
        if self.pattern == "coordinated-reset" and contact is not None:
            raise ConfigError(
                f"Expected contact=None with the coordinated-reset pattern (it visits every "
                f"contact), actual {contact!r}"
            )
        period_ms = 1000.0 / self.frequency_hz
        # Relative slack 1e-9, the envelope's own: a width the governor's duty rule computed as
        # exactly half the period must not be refused for a rounding error.
        if 2.0 * self.pulse_width_us / 1000.0 > period_ms * (1.0 + 1e-9):
            raise ConfigError(
                f"Expected two phases of {self.pulse_width_us} µs to fit in one period of "
                f"{period_ms:.3f} ms ({self.frequency_hz} Hz); lower the pulse width or frequency"
            )

    @property
    def is_on(self) -> bool:
        """Whether this setting delivers any pulse."""
        return self.amplitude_mv > 0.0

    @property
    def charge_per_phase_mv_ms(self) -> float:
        """Charge of one phase in model units (mV·ms)."""
        return self.amplitude_mv * self.pulse_width_us / 1000.0


def stimulus_for(
    *,
    amplitude_mv: float,
    frequency_hz: float,
    pulse_width_us: float,
    polarity: Polarity = "desync",
    ei_offset_ms: float = 0.0,
) -> Stimulus | None:
    """The network's stimulus for one commanded setting; ``None`` (off) at zero amplitude.

    The one place a commanded amplitude, frequency and pulse width become a :class:`Stimulus`:
    the simulator server, every in-process route to it and the device emulator's tissue call
    it. Keyword-only, so the same-typed triplet cannot be passed in the wrong order. An
    amplitude of 0 is off whatever the shape (the envelope checks no duty while off).

    Raises:
        ConfigError: A value outside the simulator's ranges, or two phases that do not fit in
            one period.
    """
    if amplitude_mv <= 0.0 and math.isfinite(amplitude_mv):
        return None
    return Stimulus(
        amplitude_mv=amplitude_mv,
        frequency_hz=frequency_hz,
        pulse_width_us=pulse_width_us,
        polarity=polarity,
        ei_offset_ms=ei_offset_ms,
    )


#: The paper's Fig 3 pulse train: 100 mV, 1 ms phases, 12 ms period (83.3 Hz), I leads E.
FTSTS_DESYNC = Stimulus(amplitude_mv=100.0)
#: The paper's Fig 4 pulse train: 200 mV, swapped polarity (E leads I).
FTSTS_SYNC = Stimulus(amplitude_mv=200.0, polarity="sync")


@dataclass
class _Pulse:
    """A pulse already started: it finishes with the setting it started with."""

    onset_ms: float
    amplitude_mv: float
    width_ms: float
    sign_e: float  # sign of the E waveform's first phase
    ei_offset_ms: float
    e_group: int = -1  # the contact whose E subgroup it reaches (−1: every E cell)
    i_group: int = -1  # the contact whose I subgroup it reaches (−1: every I cell)
    sign_i: float = -1.0  # the I waveform's first phase relative to the E waveform's

    def end_ms(self) -> float:
        return self.onset_ms + max(0.0, self.ei_offset_ms) + 2.0 * self.width_ms


@dataclass
class PulseTrain:
    """Stateful pulse scheduler that turns settings into per-step drive.

    The train keeps its phase across windows: a new setting takes effect at the next pulse onset,
    and a pulse that has started always finishes with the amplitude and width it started with, so
    every pulse is charge-balanced whatever the controller does between windows. Turning the
    stimulation off lets the pulse in progress finish; turning it on starts a pulse at once.
    """

    next_onset_ms: float | None = None
    pending: list[_Pulse] = field(default_factory=list)
    #: Draws each coordinated-reset cycle's order of the subgroups (the run's, seeded).
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    #: Contacts of the lead (``NetworkConfig.contacts``).
    contacts: int = 1
    #: Pulses since the coordinated-reset pattern started, and the current cycle's orders.
    cr_pulse: int = 0
    cr_order: tuple[list[int], list[int]] = ([], [])

    def reset(self, rng: np.random.Generator | None = None, contacts: int = 1) -> None:
        """Forget every scheduled and running pulse; take the run's generator and lead."""
        self.next_onset_ms = None
        self.pending.clear()
        if rng is not None:
            self.rng = rng
        self.contacts = contacts
        self.cr_pulse = 0
        self.cr_order = ([], [])

    def _groups(self, stimulus: Stimulus) -> tuple[int, int]:
        """The E and I subgroups of the next pulse (−1: every cell)."""
        if stimulus.pattern == "continuous":
            if stimulus.contact is None:
                return -1, -1
            if stimulus.contact >= self.contacts:
                raise ConfigError(
                    f"Expected contact < the lead's {self.contacts} contacts, actual "
                    f"{stimulus.contact}"
                )
            return stimulus.contact, stimulus.contact
        per_cycle = self.contacts * stimulus.burst_pulses
        at = self.cr_pulse % per_cycle
        if at == 0:  # a new cycle: the E and the I order, drawn independently
            self.cr_order = (
                [int(g) for g in self.rng.permutation(self.contacts)],
                [int(g) for g in self.rng.permutation(self.contacts)],
            )
        self.cr_pulse += 1
        slot = at // stimulus.burst_pulses
        return self.cr_order[0][slot], self.cr_order[1][slot]

    def drive(
        self, stimulus: Stimulus | None, t0_ms: float, n_steps: int, dt_ms: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, int]:
        """Per-step mean drive for E and I cells over ``n_steps`` steps from ``t0_ms``.

        Args:
            stimulus: The setting for this window, or ``None`` (off).
            t0_ms: Start of the window in model time (ms).
            n_steps: Number of integration steps in the window.
            dt_ms: Integration step (ms).

        Returns:
            ``(u_e, u_i, charge_mv_ms, n_pulses)``: the per-step mean drive (mV) for E and for I
            cells (shape ``(n_steps,)`` with one contact, ``(n_steps, contacts)`` with more),
            the absolute charge delivered in the window (both phases, one waveform), and how
            many pulses started in the window.
        """
        t1_ms = t0_ms + n_steps * dt_ms
        on = stimulus is not None and stimulus.is_on
        if on:
            assert stimulus is not None
            period_ms = 1000.0 / stimulus.frequency_hz
            if self.next_onset_ms is None or self.next_onset_ms < t0_ms - 1e-9:
                self.next_onset_ms = t0_ms
            sign_e = -1.0 if stimulus.polarity == "desync" else 1.0
            sign_i = -1.0 if stimulus.i_waveform == "mirror" else 1.0
            while self.next_onset_ms < t1_ms - 1e-9:
                e_group, i_group = self._groups(stimulus)
                self.pending.append(
                    _Pulse(
                        self.next_onset_ms,
                        stimulus.amplitude_mv,
                        stimulus.pulse_width_us / 1000.0,
                        sign_e,
                        stimulus.ei_offset_ms,
                        e_group,
                        i_group,
                        sign_i,
                    )
                )
                self.next_onset_ms += period_ms
        else:
            self.next_onset_ms = None
            self.cr_pulse = 0
        started = 0
        still_running: list[_Pulse] = []
        # per pulse: E onset, I onset, phase width, E level of the first phase, E and I
        # subgroup (−1: all), the I waveform's sign relative to E's
        phases = np.empty((len(self.pending), 7))
        for row, pulse in enumerate(self.pending):
            if t0_ms - 1e-9 <= pulse.onset_ms < t1_ms - 1e-9:
                started += 1
            phases[row] = (
                pulse.onset_ms + max(0.0, -pulse.ei_offset_ms),
                pulse.onset_ms + max(0.0, pulse.ei_offset_ms),
                pulse.width_ms,
                pulse.amplitude_mv * pulse.sign_e,
                pulse.e_group,
                pulse.i_group,
                pulse.sign_i,
            )
            if pulse.end_ms() > t1_ms + 1e-9:
                still_running.append(pulse)
        u_e, u_i, charge = _waveforms(phases, t0_ms, dt_ms, n_steps, self.contacts)
        self.pending = still_running
        if self.contacts == 1:  # one contact: one drive per step, as before contacts existed
            return u_e[:, 0], u_i[:, 0], charge, started
        return u_e, u_i, charge, started


@njit(cache=True, nogil=True)
def _waveforms(  # type: ignore[no-untyped-def]
    phases: npt.NDArray[np.float64], t0_ms: float, dt_ms: float, n_steps: int, contacts: int
):
    """The step-averaged E and I drive of a window's pulses per contact, and the charge.

    One compiled call per window (four calls of :func:`_add_phase` per pulse from Python cost
    more than the arithmetic). ``phases`` has one row per pulse: E onset, I onset, phase width,
    the E waveform's first-phase level, the E and the I subgroup (−1: all) and the I
    waveform's sign: E gets ``level`` then ``−level``, I its mirror image (``−level`` then
    ``level``; the same as E for sign +1). Returns ``(u_e, u_i, charge)`` with drives of shape
    ``(n_steps, contacts)``; the charge is one waveform's, counted once per pulse.
    """
    u_e = np.zeros((n_steps, contacts))
    u_i = np.zeros((n_steps, contacts))
    charge = 0.0
    for row in range(phases.shape[0]):
        e_onset, i_onset, w, level = phases[row, 0], phases[row, 1], phases[row, 2], phases[row, 3]
        e_group, i_group, sign_i = int(phases[row, 4]), int(phases[row, 5]), phases[row, 6]
        level_i = sign_i * level
        counted = False
        for g in range(contacts):
            if e_group < 0 or e_group == g:
                ue = u_e[:, g]
                q1 = _add_phase(ue, t0_ms, dt_ms, e_onset, e_onset + w, level)
                q2 = _add_phase(ue, t0_ms, dt_ms, e_onset + w, e_onset + 2 * w, -level)
                if not counted:  # added phase by phase, as the digests were pinned
                    charge += q1
                    charge += q2
                    counted = True
            if i_group < 0 or i_group == g:
                ui = u_i[:, g]
                _add_phase(ui, t0_ms, dt_ms, i_onset, i_onset + w, level_i)
                _add_phase(ui, t0_ms, dt_ms, i_onset + w, i_onset + 2 * w, -level_i)
    return u_e, u_i, charge


@njit(cache=True, nogil=True)  # plain IEEE arithmetic: the same numbers as in Python
def _add_phase(
    u: npt.NDArray[np.float64], t0_ms: float, dt_ms: float, a_ms: float, b_ms: float, level: float
) -> float:
    """Add the step-averaged drive of a rectangular phase ``[a, b)`` to ``u``.

    Returns:
        The absolute charge (mV·ms) of the part of the phase that falls inside the window.
    """
    n = u.shape[0]
    first = max(0, math.floor((a_ms - t0_ms) / dt_ms))
    last = min(n - 1, math.ceil((b_ms - t0_ms) / dt_ms) - 1)
    delivered = 0.0
    for k in range(first, last + 1):
        s = t0_ms + k * dt_ms
        overlap = min(b_ms, s + dt_ms) - max(a_ms, s)
        if overlap > 0.0:
            u[k] += level * overlap / dt_ms
            delivered += abs(level) * overlap
    return delivered
