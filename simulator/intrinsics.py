"""Scalar LLVM operations that Numba does not expose, for the kernel's and the noise's hot loops.

* :func:`f32_bits` and :func:`bits_f32` reinterpret a float32 as an int32 and back, as C's
  ``memcpy`` would. The vectorised logarithm takes its argument apart with them.
* :func:`sqrt_f32` is ``llvm.sqrt.f32``, the correctly rounded IEEE square root. ``np.sqrt`` on a
  float32 calls libm's ``sqrtf``, and that call keeps a loop from being vectorised.
* :func:`fma_f32` and :func:`fma_f64` are ``llvm.fma``: ``a·b + c`` with one rounding, on every
  machine and under any fast-math flags (where the CPU has no FMA unit it becomes a call to
  libm's exact ``fmaf`` / ``fma``). Code written with them rounds the same way whichever CPU it
  is compiled for; the kernel uses them instead of letting LLVM contract ``a·b + c`` (which it
  does only for CPUs with FMA, see ``docs/simulator.md#reproducibility-across-cpus``).
* :func:`sum16_f32` sums float32 elements in float64 in sixteen lanes, as four vectors of four
  (``vaddpd`` on AVX, pairs of ``addpd`` on SSE2): the kernel's window sums, in a fixed order
  whatever the CPU and as fast as the vectorised loop it replaces (Numba's LLVM vectorises a
  sum only with fast-math, and then in an order chosen for the CPU).
* :func:`masked_sum4_f64` sums the float64 elements whose flag is ≥ 0 in four lanes (one
  vector): the Kuramoto sample's sums of phasors, in a fixed order and vectorised.
* :func:`cttz` is ``llvm.cttz.i64``, the count of trailing zero bits (one ``tzcnt``): the
  kernel finds the spiking cells among eight ``bool`` bytes read as one word with it.
* :func:`at` is ``c[i]`` for a 1-D array and ``c`` itself for a scalar, decided when Numba
  types the call: the kernel's neuron pass is one function for per-neuron constant arrays and
  for per-population scalars. The array read skips Numba's negative-index check.

* :func:`cycles` reads the time-stamp counter (the threaded kernel times its phases with it).

All but ``cycles`` are pure; all but ``cttz`` and ``cycles`` vectorise (the two sums are
vector code themselves).
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _f32_bits(typingctx: Any, x: Any) -> Any:
    sig = types.int32(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_f32(typingctx: Any, x: Any) -> Any:
    sig = types.float32(types.int32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _sqrt_f32(typingctx: Any, x: Any) -> Any:
    sig = types.float32(types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.sqrt", [f32], ir.FunctionType(f32, [f32]))
        return builder.call(fn, [args[0]])

    return sig, codegen


@intrinsic
def _fma_f32(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        f32 = ir.FloatType()
        fnty = ir.FunctionType(f32, [f32, f32, f32])
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], fnty)
        return builder.call(fn, list(args))

    return sig, codegen


@intrinsic
def _fma_f64(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        f64 = ir.DoubleType()
        fnty = ir.FunctionType(f64, [f64, f64, f64])
        fn = builder.module.declare_intrinsic("llvm.fma", [f64], fnty)
        return builder.call(fn, list(args))

    return sig, codegen


@intrinsic
def _sum16_f32(typingctx: Any, x: Any, lo: Any, blocks: Any) -> Any:
    if not (isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1
            and x.layout == "C"):  # fmt: skip
        return None
    sig = types.float64(x, types.int64, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        lo, blocks = args[1], args[2]
        i64 = ir.IntType(64)
        f32x4 = ir.VectorType(ir.FloatType(), 4)
        f64x4 = ir.VectorType(ir.DoubleType(), 4)
        first = builder.bitcast(builder.gep(array.data, [lo]), f32x4.as_pointer())
        zero = ir.Constant(f64x4, [0.0] * 4)
        entry = builder.block
        loop = builder.append_basic_block("sum16.loop")
        done = builder.append_basic_block("sum16.done")
        builder.cbranch(builder.icmp_signed(">", blocks, ir.Constant(i64, 0)), loop, done)

        builder.position_at_end(loop)
        j = builder.phi(i64)
        j.add_incoming(ir.Constant(i64, 0), entry)
        acc = [builder.phi(f64x4) for _ in range(4)]
        nxt = []
        for k, phi in enumerate(acc):
            phi.add_incoming(zero, entry)
            slot = builder.add(builder.mul(j, ir.Constant(i64, 4)), ir.Constant(i64, k))
            quad = builder.load(builder.gep(first, [slot]), align=4)
            nxt.append(builder.fadd(phi, builder.fpext(quad, f64x4)))
        j_next = builder.add(j, ir.Constant(i64, 1))
        j.add_incoming(j_next, loop)
        for phi, value in zip(acc, nxt, strict=True):
            phi.add_incoming(value, loop)
        builder.cbranch(builder.icmp_signed("<", j_next, blocks), loop, done)

        builder.position_at_end(done)
        final = []
        for value in nxt:
            phi = builder.phi(f64x4)
            phi.add_incoming(zero, entry)
            phi.add_incoming(value, loop)
            final.append(phi)
        # lane l of the four vectors: ((a[4+l] + a[l]) + a[8+l]) + a[12+l]
        quads = builder.fadd(final[3], builder.fadd(final[2], builder.fadd(final[1], final[0])))
        b = [builder.extract_element(quads, ir.Constant(i64, k)) for k in range(4)]
        return builder.fadd(builder.fadd(b[0], b[2]), builder.fadd(b[1], b[3]))

    return sig, codegen


@intrinsic
def _masked_sum4_f64(typingctx: Any, z: Any, flags: Any, blocks: Any) -> Any:
    def usable(a: Any, dtype: Any) -> bool:
        return isinstance(a, types.Array) and a.dtype == dtype and a.ndim == 1 and a.layout == "C"

    if not (usable(z, types.float64) and usable(flags, types.int64)):
        return None
    sig = types.float64(z, flags, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        values = context.make_array(signature.args[0])(context, builder, args[0])
        marks = context.make_array(signature.args[1])(context, builder, args[1])
        blocks = args[2]
        i64 = ir.IntType(64)
        f64x4 = ir.VectorType(ir.DoubleType(), 4)
        i64x4 = ir.VectorType(i64, 4)
        z_ptr = builder.bitcast(values.data, f64x4.as_pointer())
        f_ptr = builder.bitcast(marks.data, i64x4.as_pointer())
        minus_zero = ir.Constant(f64x4, [-0.0] * 4)  # adding −0.0 leaves every sum as it is
        entry = builder.block
        loop = builder.append_basic_block("msum4.loop")
        done = builder.append_basic_block("msum4.done")
        builder.cbranch(builder.icmp_signed(">", blocks, ir.Constant(i64, 0)), loop, done)

        builder.position_at_end(loop)
        j = builder.phi(i64)
        j.add_incoming(ir.Constant(i64, 0), entry)
        acc = builder.phi(f64x4)
        acc.add_incoming(ir.Constant(f64x4, [0.0] * 4), entry)
        quad = builder.load(builder.gep(z_ptr, [j]), align=8)
        mark = builder.load(builder.gep(f_ptr, [j]), align=8)
        keep = builder.icmp_signed(">", mark, ir.Constant(i64x4, [-1] * 4))
        nxt = builder.fadd(acc, builder.select(keep, quad, minus_zero))
        j_next = builder.add(j, ir.Constant(i64, 1))
        j.add_incoming(j_next, loop)
        acc.add_incoming(nxt, loop)
        builder.cbranch(builder.icmp_signed("<", j_next, blocks), loop, done)

        builder.position_at_end(done)
        final = builder.phi(f64x4)
        final.add_incoming(ir.Constant(f64x4, [0.0] * 4), entry)
        final.add_incoming(nxt, loop)
        lane = [builder.extract_element(final, ir.Constant(i64, k)) for k in range(4)]
        return builder.fadd(builder.fadd(lane[0], lane[2]), builder.fadd(lane[1], lane[3]))

    return sig, codegen


@intrinsic
def _cttz(typingctx: Any, x: Any) -> Any:
    sig = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, ir.IntType(1)])
        fn = builder.module.declare_intrinsic("llvm.cttz", [i64], fnty)
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 0)])

    return sig, codegen


@intrinsic
def _at(typingctx: Any, c: Any, i: Any) -> Any:
    if isinstance(c, types.Array):
        sig = c.dtype(c, i)

        def element(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aryty = signature.args[0]
            array = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
                context, builder, aryty, array, [args[1]], wraparound=False
            )
            return builder.load(ptr)

        return sig, element

    def scalar(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return args[0]

    return c(c, i), scalar


@intrinsic
def _cycles(typingctx: Any) -> Any:
    sig = types.int64()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
        )
        return builder.call(fn, [])

    return sig, codegen


# Typed ``Any``: an intrinsic's Python-level signature includes Numba's typing context.
#: ``f32_bits(x)``: the IEEE bits of float32 ``x`` as an int32.
f32_bits: Any = _f32_bits
#: ``bits_f32(b)``: the float32 whose IEEE bits are the int32 ``b``.
bits_f32: Any = _bits_f32
#: ``sqrt_f32(x)``: the correctly rounded float32 square root (vectorisable).
sqrt_f32: Any = _sqrt_f32
#: ``fma_f32(a, b, c)``: ``a·b + c`` in float32 with a single rounding.
fma_f32: Any = _fma_f32
#: ``fma_f64(a, b, c)``: ``a·b + c`` in float64 with a single rounding.
fma_f64: Any = _fma_f64
#: ``sum16_f32(x, lo, blocks)``: the float64 sum of ``x[lo : lo + 16·blocks]`` (1-D float32) in
#: sixteen lanes (lane ``l`` sums every 16th element from ``lo + l``), combined as
#: ``((a₄₊ₗ + aₗ) + a₈₊ₗ) + a₁₂₊ₗ`` into four and those as ``(b₀ + b₂) + (b₁ + b₃)``.
sum16_f32: Any = _sum16_f32
#: ``masked_sum4_f64(z, flags, blocks)``: the float64 sum of ``z[i]`` over ``i < 4·blocks`` with
#: ``flags[i] ≥ 0`` (int64 flags), in four lanes (lane ``l`` from ``i = l`` in steps of four)
#: combined as ``(l₀ + l₂) + (l₁ + l₃)``.
masked_sum4_f64: Any = _masked_sum4_f64
#: ``cttz(x)``: the number of trailing zero bits of the uint64 ``x`` (64 for zero).
cttz: Any = _cttz
#: ``cycles()``: the time-stamp counter (``rdtsc``: constant-rate ticks), for timing phases.
cycles: Any = _cycles
#: ``at(c, i)``: ``c[i]`` for a 1-D array (no negative-index check), ``c`` for a scalar.
at: Any = _at
