"""A software prefetch for Numba kernels (LLVM's ``llvm.prefetch``).

The spike loops update synapses scattered over megabytes of weights (at N = 10 000 the E→I
weights alone are 12.8 MB); asking for a weight a few synapses ahead lets the memory system
fetch several at once instead of stalling on each. A prefetch is only a hint: it never faults
and never changes a result.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _prefetch(typingctx: Any, arr: Any, index: Any) -> Any:
    """Hint that ``arr[index]`` will soon be read and written (1-D array, no bounds check)."""
    sig = types.void(arr, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary, ind = args
        aryty = signature.args[0]
        array = context.make_array(aryty)(context, builder, ary)
        ptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, aryty, array, [ind], wraparound=False
        )
        i32 = ir.IntType(32)
        if getattr(ptr.type, "is_opaque", False):  # LLVM with opaque pointers (llvmlite >= 0.45)
            name = "llvm.prefetch.p0"
        else:  # typed pointers: the intrinsic takes an i8*
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            name = "llvm.prefetch.p0i8"
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, name
        )
        # write intent (1), high temporal locality (3), data cache (1)
        builder.call(fn, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


#: ``prefetch(arr, index)`` inside ``@njit`` code (typed ``Any``: the intrinsic's Python-level
#: signature includes Numba's typing context).
prefetch: Any = _prefetch


@njit(nogil=True, inline="always")
def prefetch_range(arr: Any, start: int, stop: int) -> None:
    """Hint that ``arr[start:stop]`` (1-D, contiguous) will soon be used: one hint per line."""
    if stop <= start:
        return
    step = max(1, 64 // arr.itemsize)
    for q in range(start, stop, step):
        prefetch(arr, q)
    prefetch(arr, stop - 1)
