"""The stimulation artefact at the sensing contacts and the amplifier's blanking (decision D2).

Model (``docs/simulator.md#sensing`` has the numbers and their reasons):

1. **Template.** Each delivered pulse reaches the two sensing contacts that flank the
   stimulating one (the "sandwich" montage) as the field ``field_uv_per_mv × drive(t)``; the
   differential amplifier rejects all but ``common_mode_residual`` of it. The electrode
   interface then relaxes: a tail ``recovery_fraction × (h ∗ drive)`` with ``h`` a unit-area
   exponential of ``recovery_tau_ms``. Being linear in the drive, this is the sum of one
   template per pulse scaled by its amplitude, shaped by its width and placed at its time
   (the per-step drive is the delivered waveform, :mod:`simulator.stimulus`).
2. **Blanking.** The amplifier is blanked from ``blank_pre_ms`` before each pulse to
   ``blank_post_ms`` after it (the device knows its own schedule); while blanked its output
   holds the last sample before the blank (sample and hold). What is left of the tail after
   the blank, and the held stretches themselves, reach the recording.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@njit(cache=True, nogil=True)
def amplifier(  # type: ignore[no-untyped-def]
    clean, drive, active, gain_uv, recovery_fraction, decay, pre_steps, post_steps, state
):
    """The amplifier's output per kernel step (µV) and the blanked steps.

    Args:
        clean: The LFP at the contact pair per step (µV).
        drive: The delivered drive per step (mV): the artefact is
            ``gain_uv·(drive + recovery_fraction·tail)`` with the one-pole relaxation
            ``tail ← decay·tail + (1 − decay)·drive`` (unit area: the discrete ``h ∗ drive``).
        active: Whether a pulse delivers drive in each step; the steps from ``pre_steps``
            before to ``post_steps`` after such a step are blanked and hold the last
            unblanked output (sample and hold).
        gain_uv: ``field_uv_per_mv × common_mode_residual``.
        recovery_fraction: The tail's weight.
        decay: The tail's per-step factor ``exp(−dt/τ)``.
        pre_steps: Blanking before a pulse.
        post_steps: Blanking after it.
        state: ``[tail, blank steps still owed, held value]``, carried from window to window.

    Returns:
        ``(output, blanked)`` per step.
    """
    n = clean.shape[0]
    out = np.empty(n)
    mask = np.zeros(n, dtype=np.bool_)
    z = state[0]
    remaining = int(state[1])
    for k in range(n):
        if active[k]:
            remaining = post_steps + 1
            for j in range(max(0, k - pre_steps), k):
                mask[j] = True
        if remaining > 0:
            mask[k] = True
            remaining -= 1
    held = state[2]
    for k in range(n):
        z = decay * z + (1.0 - decay) * drive[k]
        x = clean[k] + gain_uv * (drive[k] + recovery_fraction * z)
        if not mask[k]:
            held = x
        out[k] = held
    state[0] = z
    state[1] = remaining
    state[2] = held
    return out, mask


def recovery_decay(dt_ms: float, tau_ms: float) -> float:
    """Per-step factor of the recovery tail, ``exp(−dt/τ)``."""
    return math.exp(-dt_ms / tau_ms)


def active_steps(u_e: F64, u_i: F64) -> Mask:
    """Whether any contact delivers drive to either population in each step."""
    a: Mask = np.asarray(u_e != 0.0) | np.asarray(u_i != 0.0)
    if a.ndim == 1:
        return a
    rows: Mask = np.any(a, axis=1)
    return rows
