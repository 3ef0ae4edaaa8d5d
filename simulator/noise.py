"""Fast standard-normal noise drawn from a seeded numpy ``Generator`` (SFC64).

The network needs one standard normal per neuron per 0.1 ms step (≈ 5·10⁸ draws for 25 s at
N = 2000). ``Generator.standard_normal`` costs 11–15 ns per float32 draw on our machines, and
even ``bit_generator.random_raw`` costs 4–11 ns per 64-bit word through its Python-level
interface. The network's noise generator is therefore ``numpy.random.Generator(SFC64(seed))``,
and the kernel advances that bit generator itself: :func:`sfc64_words` is numpy's SFC64 step
(Chris Doty-Humphrey's Small Fast Chaotic generator, as numpy implements it) on the generator's
own state words, which :func:`load_state` reads out and :func:`store_state` writes back. The words
are exactly the ones ``rng.bit_generator.random_raw`` would return, and the generator continues
where the kernel left off, so every draw still comes from the run's seeded generator.

Each 32-bit half of a word becomes one normal through a 256-layer ziggurat (Marsaglia & Tsang
2000): the fast path (≈ 98.8 % of draws) is one table look-up and a multiply and runs as a
vectorised loop; the rare rejections are then resolved in index order with further words from
the same stream. Magnitudes have 23 bits, the resolution of numpy's own float32 ziggurat; the
output is exactly standard normal up to that resolution.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from protocol.errors import ConfigError

_LAYERS = 256
_R = 3.6541528853610088  # start of the tail for 256 layers of equal area
_V = 4.92867323399e-3  # area of each layer
_M = float(1 << 23)

_U11 = np.uint64(11)
_U3 = np.uint64(3)
_U24 = np.uint64(24)
_U40 = np.uint64(40)
_U32 = np.uint64(32)
_U1 = np.uint64(1)


def _tables() -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    ki = np.zeros(_LAYERS, dtype=np.int32)
    wi = np.zeros(_LAYERS)
    fi = np.zeros(_LAYERS)
    dn = _R
    tn = dn
    q = _V / math.exp(-0.5 * dn * dn)
    ki[0] = int((dn / q) * _M)
    ki[1] = 0
    wi[0] = q / _M
    wi[_LAYERS - 1] = dn / _M
    fi[0] = 1.0
    fi[_LAYERS - 1] = math.exp(-0.5 * dn * dn)
    for i in range(_LAYERS - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_V / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = int((dn / tn) * _M)
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / _M
    return ki, wi, fi


#: Ziggurat tables: acceptance thresholds, layer widths and layer heights.
ZIG_KI, ZIG_WI, ZIG_FI = _tables()


def noise_generator(seed: np.random.SeedSequence | int) -> np.random.Generator:
    """The network's noise generator: a numpy ``Generator`` on an SFC64 bit generator."""
    return np.random.Generator(np.random.SFC64(seed))


def load_state(rng: np.random.Generator) -> npt.NDArray[np.uint64]:
    """Copy an SFC64 generator's four state words (a, b, c, counter) into a fresh array.

    Raises:
        ConfigError: If ``rng`` is not driven by ``numpy.random.SFC64``.
    """
    state = rng.bit_generator.state
    if state.get("bit_generator") != "SFC64":
        raise ConfigError(
            "Expected a numpy Generator on an SFC64 bit generator for the network noise, "
            f"actual {state.get('bit_generator')!r}"
        )
    return np.array(state["state"]["state"], dtype=np.uint64)


def store_state(rng: np.random.Generator, words: npt.NDArray[np.uint64]) -> None:
    """Write state words advanced by the kernel back into the generator."""
    state = rng.bit_generator.state
    state["state"]["state"] = np.array(words, dtype=np.uint64)
    rng.bit_generator.state = state


@njit(cache=True, nogil=True, inline="always")
def _sfc64_step(a, b, c, w):  # type: ignore[no-untyped-def]
    """One SFC64 step (numpy's algorithm): ``(word, a, b, c, counter)`` after it."""
    tmp = a + b + w
    return tmp, b ^ (b >> _U11), c + (c << _U3), ((c << _U24) | (c >> _U40)) + tmp, w + _U1


@njit(cache=True, nogil=True, boundscheck=False)
def sfc64_words(state, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` with the next SFC64 words and advance ``state`` (numpy's algorithm)."""
    a, b, c, w = state[0], state[1], state[2], state[3]
    for j in range(out.shape[0]):
        out[j], a, b, c, w = _sfc64_step(a, b, c, w)
    state[0], state[1], state[2], state[3] = a, b, c, w


@njit(cache=True, nogil=True)
def _next_word(state):  # type: ignore[no-untyped-def]
    word, state[0], state[1], state[2], state[3] = _sfc64_step(
        state[0], state[1], state[2], state[3]
    )
    return word


@njit(cache=True, nogil=True)
def _uniform(state):  # type: ignore[no-untyped-def]
    """Next uniform in [0, 1) with 53 random bits."""
    return (_next_word(state) >> _U11) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def _resolve(r, state, ki, wi, fi):  # type: ignore[no-untyped-def]
    """The ziggurat's rejection path for the 32-bit draw ``r`` (further words from ``state``)."""
    while True:
        idx = r & 0xFF
        sign = (r >> 8) & 1
        rabs = (r >> 9) & 0x7FFFFF
        x = rabs * wi[idx]
        if sign:
            x = -x
        if rabs < ki[idx]:
            return x
        if idx == 0:
            while True:
                xx = -math.log1p(-_uniform(state)) / _R
                yy = -math.log1p(-_uniform(state))
                if yy + yy > xx * xx:
                    return -(_R + xx) if sign else _R + xx
        if (fi[idx - 1] - fi[idx]) * _uniform(state) + fi[idx] < math.exp(-0.5 * x * x):
            return x
        r = np.int64(_next_word(state) >> _U32)


@njit(cache=True, nogil=True, boundscheck=False, fastmath=True)
def _fast_path(halves, out, rejected, ki, wi):  # type: ignore[no-untyped-def]
    """Ziggurat fast path over 32-bit draws; lists the rejected indices, returns their count."""
    n_rej = 0
    for j in range(out.shape[0]):
        r = halves[j]
        idx = r & 0xFF
        sgn = np.int32(1) - np.int32(2) * ((r >> 8) & 1)
        rabs = (r >> 9) & 0x7FFFFF
        out[j] = sgn * rabs * wi[idx]
        rejected[n_rej] = j  # kept only if rejected: a branch-free append
        n_rej += rabs >= ki[idx]
    return n_rej


@njit(cache=True, nogil=True, boundscheck=False)
def fill_standard_normal(state, words, out, ki, wi, fi):  # type: ignore[no-untyped-def]
    """Fill ``out`` (float32) with standard normals from the SFC64 ``state``.

    ``words`` is scratch of at least :func:`scratch_words` ``(len(out))`` words: the first half
    takes the draws for the fast path, the second the list of rejected draws, which then take
    further words in index order.
    """
    n = out.shape[0]
    nw = (n + 1) // 2
    sfc64_words(state, words[:nw])
    halves = words[:nw].view(np.int32)
    rejected = words[nw : 2 * nw].view(np.int32)
    n_rej = _fast_path(halves, out, rejected, ki, wi)
    for q in range(n_rej):
        j = rejected[q]
        out[j] = _resolve(np.int64(halves[j]), state, ki, wi, fi)


def scratch_words(n: int) -> int:
    """Scratch words :func:`fill_standard_normal` needs for ``n`` draws."""
    return 2 * ((n + 1) // 2)


def standard_normal_f32(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """Draw standard normals of ``shape`` as float32 from an SFC64 ``rng`` (advancing it).

    Row by row (the last axis is one kernel step), the same numbers the network kernel draws
    from the same generator state.

    Args:
        rng: The seeded generator, from :func:`noise_generator`.
        shape: Output shape; the last axis is filled as one block of draws.

    Returns:
        A C-contiguous float32 array of independent standard normals.
    """
    state = load_state(rng)
    row = int(shape[-1]) if shape else 1
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    out = np.empty((rows, row), dtype=np.float32)
    words = np.empty(scratch_words(row), dtype=np.uint64)
    for k in range(rows):
        fill_standard_normal(state, words, out[k], ZIG_KI, ZIG_WI, ZIG_FI)
    store_state(rng, state)
    return out.reshape(shape)
