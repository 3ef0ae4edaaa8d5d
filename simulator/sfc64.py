"""Eight SFC64 generators advanced side by side in AVX2 vectors: the network noise's words.

The network draws one standard normal per neuron per 0.1 ms step (≈ 5·10⁸ draws for 25 s at
N = 2000). One SFC64 generator is a serial recurrence (each word needs the previous state), so a
single stream costs 1.0–1.5 ns per word on our machines however it is compiled.
The network's noise therefore comes from ``LANES = 8`` independent generators,
``numpy.random.Generator(SFC64(child))`` for the eight children a run's noise
``SeedSequence`` spawns, and the kernel advances all eight at once: lanes 0–3 and 4–7 each in
one 256-bit vector, every operation of numpy's SFC64 step (Chris Doty-Humphrey's Small Fast
Chaotic generator) applied to four lanes per instruction (0.28 ns per word,
``bench/bench_noise.py``).

* Word ``LANES·j + l`` of a block of words is lane ``l``'s ``j``-th word: exactly what
  ``generators[l].bit_generator.random_raw`` would return next.
* :func:`load_state` reads the generators' state words out into a ``(4, LANES)`` array (rows
  a, b, c and the counter), the kernel advances that array, and :func:`store_state` writes it
  back, so each generator continues where the kernel left off. Every draw still comes from a
  seeded numpy generator of the run.
* The step is written in LLVM IR (``_sfc64_lanes``): LLVM does not vectorise eight
  scalar recurrences written in Python. The shift count of the step's 9·c (``c + (c << 3)``)
  comes through an empty inline-assembly statement on a scalar register, since with a constant
  count LLVM rewrites the sum to a multiply, which AVX2 lacks for 64-bit lanes. The vectors are
  plain LLVM vectors: on a CPU without AVX2 (or another architecture) LLVM splits them into
  the registers it has, with the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, types
from numba.core import errors
from numba.extending import intrinsic

from core.errors import ConfigError

#: Generators advanced together (two AVX2 vectors of four 64-bit lanes).
LANES = 8
_VECTORS = LANES // 4


def generators(seed: np.random.SeedSequence | int) -> tuple[np.random.Generator, ...]:
    """The ``LANES`` noise generators of a seed: ``Generator(SFC64(child))`` per child.

    The children are those ``seed.spawn(LANES)`` gives on a fresh sequence, derived without
    spawning, so that the same sequence always gives the same generators.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    children = (
        np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, lane), pool_size=ss.pool_size)
        for lane in range(LANES)
    )
    return tuple(np.random.Generator(np.random.SFC64(child)) for child in children)


def load_state(gens: Sequence[np.random.Generator]) -> npt.NDArray[np.uint64]:
    """Copy the generators' state words into a fresh ``(4, LANES)`` array (a, b, c, counter).

    Raises:
        ConfigError: Unless ``gens`` is ``LANES`` generators driven by ``numpy.random.SFC64``.
    """
    if len(gens) != LANES:
        raise ConfigError(f"Expected {LANES} noise generators, actual {len(gens)}")
    state = np.empty((4, LANES), dtype=np.uint64)
    for lane, gen in enumerate(gens):
        st = gen.bit_generator.state
        if st.get("bit_generator") != "SFC64":
            raise ConfigError(
                "Expected numpy Generators on SFC64 bit generators for the network noise, "
                f"actual {st.get('bit_generator')!r} (generator {lane})"
            )
        state[:, lane] = st["state"]["state"]
    return state


def store_state(gens: Sequence[np.random.Generator], state: npt.NDArray[np.uint64]) -> None:
    """Write state words advanced by the kernel back into the generators."""
    for lane, gen in enumerate(gens):
        st = gen.bit_generator.state
        st["state"]["state"] = np.array(state[:, lane], dtype=np.uint64)
        gen.bit_generator.state = st


@intrinsic
def _sfc64_lanes_intrinsic(typingctx: Any, state: Any, out: Any, n_blocks: Any) -> Any:
    """``n_blocks`` blocks of ``LANES`` words into ``out``; ``state`` advanced (see module)."""
    for name, arr, ndim in (("state", state, 2), ("out", out, 1)):
        if not (isinstance(arr, types.Array) and arr.dtype == types.uint64 and arr.ndim == ndim
                and arr.layout == "C"):  # fmt: skip
            raise errors.TypingError(
                f"Expected {name} to be a C-contiguous {ndim}-d uint64 array, actual {arr}"
            )
    sig = types.none(state, out, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        st = context.make_array(signature.args[0])(context, builder, args[0])
        words = context.make_array(signature.args[1])(context, builder, args[1])
        count = args[2]
        i64 = ir.IntType(64)
        vec = ir.VectorType(i64, 4)
        st_ptr = builder.bitcast(st.data, vec.as_pointer())
        out_ptr = builder.bitcast(words.data, vec.as_pointer())

        def splat(value: int) -> ir.Constant:
            return ir.Constant(vec, [value] * 4)

        def index(k: int) -> ir.Constant:
            return ir.Constant(count.type, k)

        # state rows a, b, c, counter, each LANES wide: vectors 0-1, 2-3, 4-5, 6-7
        init = [
            builder.load(builder.gep(st_ptr, [ir.Constant(i64, k)]), align=8)
            for k in range(4 * _VECTORS)
        ]
        # the shift count 3 of c + (c << 3), hidden from LLVM behind an empty inline-assembly
        # statement on a scalar register (any target has one): with a constant count LLVM
        # rewrites the sum to c·9, a 64-bit vector multiply that AVX2 lacks
        barrier = ir.InlineAsm(ir.FunctionType(i64, [i64]), "", "=r,0", side_effect=False)
        three = builder.call(barrier, [ir.Constant(i64, 3)])
        three_v = builder.shuffle_vector(
            builder.insert_element(ir.Constant(vec, ir.Undefined), three, ir.Constant(i64, 0)),
            ir.Constant(vec, ir.Undefined),
            ir.Constant(ir.VectorType(ir.IntType(32), 4), [0, 0, 0, 0]),
        )
        entry = builder.block
        loop = builder.append_basic_block("sfc64.loop")
        done = builder.append_basic_block("sfc64.done")
        builder.cbranch(builder.icmp_signed(">", count, index(0)), loop, done)

        builder.position_at_end(loop)
        j = builder.phi(count.type)
        j.add_incoming(index(0), entry)
        now = [builder.phi(vec) for _ in init]
        for phi, value in zip(now, init, strict=True):
            phi.add_incoming(value, entry)
        nxt: list[Any] = [None] * len(init)
        for h in range(_VECTORS):
            a, b, c, w = (now[r * _VECTORS + h] for r in range(4))
            word = builder.add(builder.add(a, b), w)
            slot = builder.add(builder.mul(j, index(_VECTORS)), index(h))
            builder.store(word, builder.gep(out_ptr, [slot]), align=8)
            nxt[h] = builder.xor(b, builder.lshr(b, splat(11)))
            nxt[_VECTORS + h] = builder.add(c, builder.shl(c, three_v))
            rotated = builder.or_(builder.shl(c, splat(24)), builder.lshr(c, splat(40)))
            nxt[2 * _VECTORS + h] = builder.add(rotated, word)
            nxt[3 * _VECTORS + h] = builder.add(w, splat(1))
        j_next = builder.add(j, index(1))
        j.add_incoming(j_next, loop)
        for phi, value in zip(now, nxt, strict=True):
            phi.add_incoming(value, loop)
        builder.cbranch(builder.icmp_signed("<", j_next, count), loop, done)

        builder.position_at_end(done)
        final = [builder.phi(vec) for _ in init]
        for phi, first, last in zip(final, init, nxt, strict=True):
            phi.add_incoming(first, entry)
            phi.add_incoming(last, loop)
        for k, phi in enumerate(final):
            builder.store(phi, builder.gep(st_ptr, [ir.Constant(i64, k)]), align=8)
        return context.get_dummy_value()

    return sig, codegen


# Typed ``Any``: an intrinsic's Python-level signature includes Numba's typing context.
_sfc64_lanes: Any = _sfc64_lanes_intrinsic


@njit(cache=True, nogil=True, boundscheck=False)
def sfc64_words(state, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` with the next words of the ``LANES`` generators and advance ``state``.

    ``state`` is the C-contiguous ``(4, LANES)`` array of :func:`load_state`; ``len(out)`` is
    a multiple of ``LANES`` (a remainder is left untouched); word ``LANES·j + l`` is lane
    ``l``'s ``j``-th.

    Raises:
        ValueError: If ``state`` is not of shape ``(4, LANES)``.
    """
    if state.shape[0] != 4 or state.shape[1] != LANES:
        raise ValueError(
            "Expected the SFC64 lanes' state of shape (4, 8); actual rows, columns:",
            state.shape[0],
            state.shape[1],
        )
    _sfc64_lanes(state, out, out.shape[0] // LANES)
