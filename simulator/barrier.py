"""A spin barrier for the kernel's threads (LLVM atomics, no fast-math, nothing cached by address).

The threaded kernel (:func:`simulator.kernel.run_steps_threaded`) runs one network on several
OS threads, each inside the same compiled loop, and meets at a barrier a few times per step.
Numba has no atomic operations, so they are written here in LLVM IR: a sequentially consistent
``atomicrmw add`` to arrive, an acquire load to watch the generation word, a release store to
open it. Waiting threads spin with ``pause`` for a while and then give their core away with
``sched_yield`` (the machines here are shared: a thread spinning on a core that the other
thread needs would stall both).

The barrier's words are an ``int64`` array of :data:`BARRIER_WORDS` (the arrival count and the
generation on separate cache lines), zeroed before the threads start.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Length of a barrier's int64 array: count at 0, generation at 8 (another cache line), abort
#: flag at 16 (set by a thread that failed: the others return instead of waiting for it).
BARRIER_WORDS = 24
_COUNT = 0
_GENERATION = 8
ABORT = 16
#: Spins with ``pause`` before a waiting thread starts yielding its core.
SPINS_BEFORE_YIELD = 200


def _element_pointer(context: Any, builder: Any, aryty: Any, ary: Any, index: Any) -> Any:
    array = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, aryty, array, [index], wraparound=False
    )


def _int64_array(a: Any) -> bool:
    return isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1


@intrinsic
def _atomic_add(typingctx: Any, arr: Any, index: Any, value: Any) -> Any:
    if not _int64_array(arr):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def _atomic_load(typingctx: Any, arr: Any, index: Any) -> Any:
    if not _int64_array(arr):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def _atomic_store(typingctx: Any, arr: Any, index: Any, value: Any) -> Any:
    if not _int64_array(arr):
        return None
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _pause(typingctx: Any) -> Any:
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, "llvm.x86.sse2.pause"
        )
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _sched_yield(typingctx: Any) -> Any:
    sig = types.void()

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, "sched_yield"
        )
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


atomic_add: Any = _atomic_add
atomic_load: Any = _atomic_load
atomic_store: Any = _atomic_store
pause: Any = _pause
sched_yield: Any = _sched_yield


@njit(cache=True, nogil=True, fastmath=False)
def barrier_wait(words, n_threads, generation):  # type: ignore[no-untyped-def]
    """Wait until ``n_threads`` threads have arrived; returns the next generation to wait on.

    Each thread keeps its own ``generation`` (starting at 0) and passes the returned value to
    its next wait. The last thread to arrive resets the count and opens the barrier. Returns
    −1 instead once ``words[ABORT]`` is set (another thread failed): the caller returns.
    """
    if n_threads == 1:
        return generation
    if atomic_add(words, _COUNT, 1) == n_threads - 1:
        atomic_store(words, _COUNT, 0)
        atomic_store(words, _GENERATION, generation + 1)
        return generation + 1
    spins = 0
    while atomic_load(words, _GENERATION) == generation:
        if atomic_load(words, ABORT) != 0:
            return -1
        if spins < SPINS_BEFORE_YIELD:
            pause()
            spins += 1
        else:
            sched_yield()
    return generation + 1


def new_barrier() -> np.ndarray[Any, np.dtype[np.int64]]:
    """A zeroed barrier for one threaded call."""
    return np.zeros(BARRIER_WORDS, dtype=np.int64)
