"""A spin barrier for the kernel's threads (LLVM atomics, no fast-math, nothing cached by address).

The threaded kernel (:func:`simulator.threaded.run_steps_threaded`) runs one network on
several OS threads, each inside the same compiled loop, and meets at a barrier once or twice
per block of steps. Numba has no atomic operations, so they are written here in LLVM IR: a
sequentially consistent ``atomicrmw add`` to arrive, an acquire load to watch the generation word, a
release store to open it. Waiting threads spin with ``pause`` for a while
(:data:`SPIN_TICKS`) and then sleep on the generation word (a Linux futex) until the last
thread to arrive wakes them: on a shared machine a thread that spins or merely yields keeps
the core its partner needs, and a woken sleeper is scheduled promptly.

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

from simulator import aligned
from simulator.intrinsics import cycles

#: Length of a barrier's int64 array: count at 0, generation at 8 (another cache line), abort
#: flag at 16 (set by a thread that failed: the others return instead of waiting for it), the
#: number of threads asleep on the generation word at 17.
BARRIER_WORDS = 24
_COUNT = 0
_GENERATION = 8
ABORT = 16
_SLEEPERS = 17
#: Linux x86-64: the futex system call and its private wait/wake operations
_SYS_FUTEX = 202
_FUTEX_WAIT_PRIVATE = 128
_FUTEX_WAKE_PRIVATE = 129
#: Time-stamp ticks (≈ 30 µs at 2 GHz) a waiting thread spins with ``pause`` before it sleeps:
#: the threaded kernel meets once per block of ≈ 2.5 ms of model time, and the threads of a
#: block usually arrive within a few microseconds of each other on free cores; a thread whose
#: partner is not running gives its core away after this long.
SPIN_TICKS = 60_000


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
def _futex(typingctx: Any, arr: Any, index: Any, op: Any, value: Any) -> Any:
    """``syscall(SYS_futex, &arr[index] (its low 32 bits), op, value, NULL)``."""
    if not _int64_array(arr):
        return None
    sig = types.int64(arr, types.intp, types.int64, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64], var_arg=True)
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, "syscall"
        )
        i32 = ir.IntType(32)
        return builder.call(fn, [
            ir.Constant(i64, _SYS_FUTEX), builder.ptrtoint(ptr, i64),
            builder.trunc(args[2], i32), builder.trunc(args[3], i32), ir.Constant(i64, 0),
        ])  # fmt: skip

    return sig, codegen


atomic_add: Any = _atomic_add
atomic_load: Any = _atomic_load
atomic_store: Any = _atomic_store
pause: Any = _pause
futex: Any = _futex


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
        if atomic_add(words, _SLEEPERS, 0) > 0:  # seq_cst: sees every sleeper announced
            futex(words, _GENERATION, _FUTEX_WAKE_PRIVATE, 1 << 30)
        return generation + 1
    start = cycles()
    while cycles() - start < SPIN_TICKS:
        for _ in range(8):
            if atomic_load(words, _GENERATION) != generation:
                return generation + 1
            pause()
    atomic_add(words, _SLEEPERS, 1)
    while atomic_load(words, _GENERATION) == generation:
        if atomic_load(words, ABORT) != 0:
            atomic_add(words, _SLEEPERS, -1)
            return -1
        # sleeps only while the word's low 32 bits still hold this generation's
        futex(words, _GENERATION, _FUTEX_WAIT_PRIVATE, generation & 0xFFFFFFFF)
    atomic_add(words, _SLEEPERS, -1)
    return generation + 1


def new_barrier() -> np.ndarray[Any, np.dtype[np.int64]]:
    """A zeroed barrier for one threaded call (on cache lines of its own)."""
    words: np.ndarray[Any, np.dtype[np.int64]] = aligned.zeros(BARRIER_WORDS, np.int64)
    return words


@njit(cache=True, nogil=True, fastmath=False)
def barrier_abort(words):  # type: ignore[no-untyped-def]
    """Tell the threads at (or on their way to) the barrier to return: a thread failed."""
    atomic_store(words, ABORT, 1)
    futex(words, _GENERATION, _FUTEX_WAKE_PRIVATE, 1 << 30)
