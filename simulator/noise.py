"""Fast standard-normal noise from the run's seeded numpy generators (SFC64).

The network needs one standard normal per neuron per 0.1 ms step (≈ 5·10⁸ draws for 25 s at
N = 2000). ``Generator.standard_normal`` costs 11–15 ns per float32 draw on our machines, and
even ``bit_generator.random_raw`` costs 4–11 ns per 64-bit word through its Python-level
interface. The network's noise therefore comes from eight ``numpy.random.Generator(SFC64)``
generators seeded from the run's noise ``SeedSequence``, whose words the kernel draws itself,
all eight side by side in AVX2 vectors (:mod:`simulator.sfc64`): the same words their
``random_raw`` would return, and each generator continues where the kernel left off.

Every two 32-bit halves of the stream become two normals by the Box–Muller transform, evaluated
in float32 so that it runs as one vectorised loop (eight pairs per AVX2 instruction, no table
look-ups, no rejections):

* a step of ``n`` draws takes ``h = ⌈n/2⌉`` words of the block of ``⌈h/8⌉·8`` it draws (word
  ``8j + l`` is generator ``l``'s ``j``-th; the block's last ``⌈h/8⌉·8 − h`` words are not
  used), read as ``2h`` 32-bit halves (half ``2i``
  is word ``i``'s low 32 bits, half ``2i + 1`` its high 32 bits); pair ``j`` takes its radius
  from half ``j`` and its angle from half ``h + j``, and gives draws ``j`` and ``j + h`` (the
  last pair's second draw is unused when ``n`` is odd). Radii and angles thus each come from a
  contiguous block, which keeps the loop free of shuffles;
* the radius half's top 31 bits ``k`` give ``ρ = √(−2 ln u)`` with ``u = k̃·2⁻³¹ + 2⁻³²``
  (``k̃`` is ``k`` rounded to float32, one more rounding at the end), so ``u ∈ [2⁻³², 1]`` and
  ``ρ ≤ 6.66``; the angle half's low 24 bits ``a`` give ``φ = 2π·a/2²⁴``; the draws are
  ``ρ cos φ`` and ``ρ sin φ``;
* ``ln`` splits ``u`` into exponent and mantissa and evaluates ``ln(1 + x)``,
  ``x ∈ [√½ − 1, √2 − 1]``, as ``x − x²/2 + x³·P(x)`` with ``P`` of degree 8 (by Estrin's
  scheme, with the factor −2 folded into the constants: a shorter chain of dependent
  operations, which is what bounds this loop);
* ``φ`` is reduced exactly to a quadrant ``q`` and ``f ∈ [−½, ½)`` quarter turns, and
  ``sin(πf/2) = f·S(f²)``, ``cos(πf/2) = C(f²)`` with ``S`` of degree 3 and ``C`` of degree 4.
  ``P``, ``S`` and ``C`` are Chebyshev interpolants (2000 nodes, 40-digit arithmetic) of these
  functions; in double their relative error is below 4·10⁻⁹, 3·10⁻⁹ and 5·10⁻¹¹;
* every polynomial is evaluated with explicit fused multiply–adds
  (:func:`simulator.intrinsics.fma_f32`), and :func:`fill_standard_normal` is compiled with
  ``fastmath=False`` set explicitly (a Numba function without the option inherits the flags of
  whichever caller compiles it first, and the kernel's fast-math flags re-round about 5 % of the
  draws by one ulp), so the draws are the same bits whoever compiles them.

The result is standard normal to float32 precision: −2 ln u is within 1 ulp of the exact value
(0.85 ulp at worst on 1.6 M arguments), each draw within 1.6·10⁻⁷·ρ (≈ 1.3 ulp) of the exact
transform of the same bits, and the only truncation is the tail beyond 6.66 SD (probability
3·10⁻¹¹, about one draw in 70 runs of 25 s at N = 2000). Tests check the moments, the tails to
4 SD, a Kolmogorov–Smirnov distance, independence within a pair and across steps, and the
transform against a float64 evaluation of the same formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numba import njit

from simulator.intrinsics import bits_f32, f32_bits, fma_f32, sqrt_f32
from simulator.sfc64 import LANES, load_state, sfc64_words, store_state
from simulator.sfc64 import generators as noise_generators

__all__ = [
    "fill_standard_normal", "load_state", "noise_generators", "normal_pairs", "scratch_words",
    "sfc64_words", "standard_normal_f32", "store_state",
]  # fmt: skip

_F = np.float32
# ln(1 + x) = x − x²/2 + x³·P(x) on [√½ − 1, √2 − 1]; P₀ … P₈
_P0, _P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8 = (
    _F(0.33333331190848137), _F(-0.24999989048734922), _F(0.20000707478391344),
    _F(-0.16668480239502972), _F(0.14249936532971894), _F(-0.12411050684005806),
    _F(0.11661511067750856), _F(-0.11571200727098774), _F(0.07149753890893254),
)  # fmt: skip
# sin(πf/2) = f·S(f²) and cos(πf/2) = C(f²) on f ∈ [−½, ½]
_S0, _S1, _S2, _S3 = (
    _F(1.5707963219600258), _F(-0.6459634781534188),
    _F(0.07968022285819473), _F(-0.004602163105045658),
)  # fmt: skip
_C0, _C1, _C2, _C3, _C4 = (
    _F(0.9999999999525447), _F(-1.2337005406402657), _F(0.25366920379715935),
    _F(-0.020860070409178887), _F(0.000903629883935526),
)  # fmt: skip
_Q0, _Q1, _Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8 = (
    _F(-2.0) * p for p in (_P0, _P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8)
)  # −2·P, exact
#: −2·ln 2, split so that ``e·_M2_LN2_HI`` is exact for every exponent ``e`` of a float32
_M2_LN2_HI = _F(-2.0 * 0.693359375)
_M2_LN2_LO = _F(-2.0 * -2.12194440e-4)
_SQRT_HALF = _F(0.70710678118654752)
_HALF = _F(0.5)
_ONE = _F(1.0)
_TWO = _F(2.0)
_MINUS_TWO = _F(-2.0)
_TWO_M31 = _F(2.0**-31)
_TWO_M32 = _F(2.0**-32)
_QUARTERS_PER_UNIT = _F(4.0 * 2.0**-24)  # 24-bit angle → quarter turns
_MANTISSA = np.int32(0x7FFFFF)
_HALF_BITS = np.int32(0x3F000000)  # exponent field of 0.5
_I1 = np.int32(1)
_I2 = np.int32(2)
_I23 = np.int32(23)
_I126 = np.int32(126)
_LOW31 = np.int32(0x7FFFFFFF)
_LOW24 = np.int32(0xFFFFFF)


@njit(cache=True, nogil=True, inline="always")
def _minus_two_ln(u):  # type: ignore[no-untyped-def]
    """−2 ln u for a float32 ``u`` in (0, 1].

    With ``u = (1 + x)·2^e``: −2 ln u = −2x + x² − 2x³·P(x) − 2e·ln 2. The factor −2 is folded
    into the constants (exact: a power of two), which shortens the chain of dependent
    operations; every rounding is that of ``2·(x − x²/2 + x³P + e ln 2)`` evaluated directly.
    """
    bits = f32_bits(u)
    e = np.int32((bits >> _I23) - _I126)
    m = bits_f32((bits & _MANTISSA) | _HALF_BITS)  # u = m·2^e, m ∈ [½, 1)
    low = m < _SQRT_HALF
    e = np.int32(e - np.int32(low))
    x = fma_f32(m, _TWO if low else _ONE, -_ONE)  # exact; u = (1 + x)·2^e, x ∈ [√½ − 1, √2 − 1)
    # −2·P(x) by Estrin's scheme: four levels of independent FMAs instead of eight in a row
    x2 = x * x
    x4 = x2 * x2
    p_low = fma_f32(fma_f32(_Q3, x, _Q2), x2, fma_f32(_Q1, x, _Q0))  # Q = −2P, Q₀ … Q₃
    p_high = fma_f32(fma_f32(_Q7, x, _Q6), x2, fma_f32(_Q5, x, _Q4))  # Q₄ … Q₇
    q = fma_f32(fma_f32(_Q8, x4, p_high), x4, p_low)
    ef = np.float32(e)
    tail = fma_f32(q * x, x2, fma_f32(ef, _M2_LN2_LO, x2))  # −2x³P + x² − 2e·ln2_lo
    return fma_f32(ef, _M2_LN2_HI, fma_f32(x, _MINUS_TWO, tail))


@njit(cache=True, nogil=True, inline="always")
def _normal_pair(radius_bits, angle_bits):  # type: ignore[no-untyped-def]
    """Two standard normals from two 32-bit halves (as int32): one for ρ, one for φ."""
    u = fma_f32(np.float32(np.int32((radius_bits >> _I1) & _LOW31)), _TWO_M31, _TWO_M32)
    rho = sqrt_f32(_minus_two_ln(u))
    y = np.float32(np.int32(angle_bits & _LOW24)) * _QUARTERS_PER_UNIT  # φ in quarter turns
    q = np.int32(y + _HALF)
    f = y - np.float32(q)  # exact; φ = (q + f) quarter turns, f ∈ [−½, ½)
    f2 = f * f
    sin_f = f * fma_f32(fma_f32(fma_f32(_S3, f2, _S2), f2, _S1), f2, _S0)
    cos_f = fma_f32(fma_f32(fma_f32(fma_f32(_C4, f2, _C3), f2, _C2), f2, _C1), f2, _C0)
    # rotate by q quarter turns: (cos φ, sin φ) = (c, s), (−s, c), (−c, −s), (s, −c)
    odd = (q & _I1) != 0
    cos_sign = np.float32(np.int32(_I1 - ((q + _I1) & _I2)))
    sin_sign = np.float32(np.int32(_I1 - (q & _I2)))
    cos_phi = (sin_f if odd else cos_f) * cos_sign
    sin_phi = (cos_f if odd else sin_f) * sin_sign
    return rho * cos_phi, rho * sin_phi


# fastmath=False is set explicitly: Numba lets a callee without the option inherit its first
# caller's fast-math flags (the kernel's), which would let LLVM re-round the transform
@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def fill_standard_normal(state, words, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` (float32) with standard normals from the generators' ``state``.

    ``state`` is the ``(4, LANES)`` array of :func:`load_state`; ``words`` is scratch of at
    least :func:`scratch_words` ``(len(out))`` words. With ``h = ⌈n/2⌉``, pair ``j`` takes its
    radius from 32-bit half ``j`` and its angle from half ``h + j`` of the step's words and
    gives ``out[j]`` and ``out[j + h]`` (see the module docstring).

    Raises:
        ValueError: If ``words`` is shorter than :func:`scratch_words` ``(len(out))``.
    """
    n = out.shape[0]
    h = (n + 1) // 2
    m = n - h  # complete pairs
    need = -(-h // LANES) * LANES
    if words.shape[0] < need:
        raise ValueError(
            "Expected at least scratch_words(len(out)) scratch words; needed, actual:",
            need,
            words.shape[0],
        )
    step_words = words[:need]
    sfc64_words(state, step_words)
    halves = step_words.view(np.int32)  # little-endian: half 2i is word i's low 32 bits
    radius_halves = halves[:m]
    angle_halves = halves[h : h + m]
    first = out[:m]
    second = out[h : h + m]
    for j in range(m):
        first[j], second[j] = _normal_pair(radius_halves[j], angle_halves[j])
    if m < h:  # odd n: the last pair's first draw only
        out[m], _ = _normal_pair(halves[m], halves[h + m])


def scratch_words(n: int) -> int:
    """Scratch words :func:`fill_standard_normal` needs for ``n`` draws (whole blocks)."""
    return -(-((n + 1) // 2) // LANES) * LANES


def standard_normal_f32(
    gens: Sequence[np.random.Generator], shape: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """Draw standard normals of ``shape`` as float32 from the noise generators (advancing them).

    Row by row (the last axis is one kernel step), the same numbers the network kernel draws
    from the same generator states.

    Args:
        gens: The seeded generators, from :func:`noise_generators`.
        shape: Output shape; the last axis is filled as one block of draws.

    Returns:
        A C-contiguous float32 array of independent standard normals.

    Raises:
        ConfigError: Unless ``gens`` is ``LANES`` generators on SFC64 bit generators.
    """
    state = load_state(gens)
    row = int(shape[-1]) if shape else 1
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    out = np.empty((rows, row), dtype=np.float32)
    words = np.empty(scratch_words(row), dtype=np.uint64)
    for k in range(rows):
        fill_standard_normal(state, words, out[k])
    store_state(gens, state)
    return out.reshape(shape)


@njit(cache=True, nogil=True, boundscheck=False, fastmath=False)
def normal_pairs(words, out, lo, hi):  # type: ignore[no-untyped-def]
    """Pairs ``lo:hi`` of a step's Box–Muller transform from its ``words`` (already drawn).

    The same draws as :func:`fill_standard_normal` gives ``out[j]`` and ``out[j + h]`` for each
    pair ``j`` (``h = ⌈n/2⌉``): the threaded kernel draws the words on one thread and
    transforms each thread's own pairs (the cells it integrates) on that thread.
    """
    n = out.shape[0]
    h = (n + 1) // 2
    m = n - h
    halves = words.view(np.int32)
    top = min(hi, m)
    if lo < top:
        radius_halves = halves[lo:top]
        angle_halves = halves[h + lo : h + top]
        first = out[lo:top]
        second = out[h + lo : h + top]
        for j in range(top - lo):
            first[j], second[j] = _normal_pair(radius_halves[j], angle_halves[j])
    if m < h and lo <= m < hi:  # odd n: the last pair's first draw only
        out[m], _ = _normal_pair(halves[m], halves[h + m])
