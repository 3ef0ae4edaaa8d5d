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
   ``blank_post_ms`` after it (the device knows its own schedule; here the output runs
   ``blank_pre_ms`` late, so that a pulse at the start of the next window can still blank
   the end of this one); while blanked its output holds the last sample before the blank
   (sample and hold). What is left of the tail after the blank, and the held stretches
   themselves, reach the recording.
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
    clean, drive, active, gain_uv, recovery_fraction, decay, pre_steps, post_steps, state,
    pending_x, pending_mask,
):  # fmt: skip
    """The amplifier's output per kernel step (µV), ``pre_steps`` late, and the blanked steps.

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
        pending_x: The previous call's last ``pre_steps`` inputs, not yet output (a pulse at
            the start of this call may still blank them); replaced by this call's.
        pending_mask: Their blanking so far; replaced likewise.

    Returns:
        ``(output, blanked)``: the output of the ``len(clean)`` steps that end ``pre_steps``
        before this call's end (the pending ones first), whatever the calls' lengths; and,
        per step of this call, whether it is blanked as far as known (a pulse in the next
        call may still blank its last ``pre_steps``).
    """
    n = clean.shape[0]
    p = pre_steps
    total = p + n
    xs = np.empty(total)
    mask = np.zeros(total, dtype=np.bool_)
    for c in range(p):
        xs[c] = pending_x[c]
        mask[c] = pending_mask[c]
    z = state[0]
    remaining = int(state[1])
    for k in range(n):
        c = p + k
        z = decay * z + (1.0 - decay) * drive[k]
        xs[c] = clean[k] + gain_uv * (drive[k] + recovery_fraction * z)
        if active[k]:
            remaining = post_steps + 1
            for j in range(c - p, c):
                mask[j] = True
        if remaining > 0:
            mask[c] = True
            remaining -= 1
    out = np.empty(n)
    held = state[2]
    for c in range(n):
        if not mask[c]:
            held = xs[c]
        out[c] = held
    for c in range(p):
        pending_x[c] = xs[n + c]
        pending_mask[c] = mask[n + c]
    state[0] = z
    state[1] = remaining
    state[2] = held
    return out, mask[p:]


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
