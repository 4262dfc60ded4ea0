"""Evicting exactly a call's bytes from every CPU cache: CLFLUSHOPT (or CLFLUSH) per line.

Before each timed CPU call the judge evicts the lines of that call's inputs and output
buffers, the bytes it just wrote, from every level of cache of every core (the
instructions act on the coherence domain, not on the core that runs them; Intel SDM
Vol. 2A, "CLFLUSH" and "CLFLUSHOPT"), then fences (MFENCE). So the call reads its
inputs from DRAM, as it would right after they were written by someone else, at a cost
proportional to the call's own bytes. Writing a buffer of twice the last-level cache
(the GPU method) costs that much per call whatever the workload: on this project's
CPU machines, whose reported L3 is 480 MiB, that was about 0.1 s per timed call.

What stays warm: memory the solution keeps between calls (its own buffers and tables),
which the buffer method would also evict. Available on x86-64 with numba (the
instructions are emitted through LLVM intrinsics); elsewhere `line_flusher()` returns
None and the judge falls back to the buffer method.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable

CACHE_LINE_BYTES = 64


def _has_flag(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def line_flusher() -> Callable[[int, int], int] | None:
    """A function `(address, nbytes) -> lines flushed` that evicts those bytes from every
    cache and fences, or None where this machine cannot (not x86-64, or no numba).
    Compiles once per process (about half a second)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        from llvmlite import ir
        from numba import njit, types
        from numba.core import cgutils
        from numba.extending import intrinsic
    except ImportError:
        return None
    name = "llvm.x86.clflushopt" if _has_flag("clflushopt") else "llvm.x86.sse2.clflush"

    @intrinsic
    def _flush_line(typingctx, address):
        def codegen(context, builder, signature, args):
            pointer = builder.inttoptr(args[0], ir.IntType(8).as_pointer())
            fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), [pointer])
            return context.get_dummy_value()

        return types.void(types.uintp), codegen

    @intrinsic
    def _fence(typingctx):
        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.mfence"), [])
            return context.get_dummy_value()

        return types.void(), codegen

    @njit(cache=False, nogil=True)
    def flush(address, nbytes):
        line = address - address % CACHE_LINE_BYTES
        end = address + nbytes
        lines = 0
        while line < end:
            _flush_line(line)
            line += CACHE_LINE_BYTES
            lines += 1
        _fence()
        return lines

    try:
        flush(0, 0)  # compile now, on an empty range
    except Exception:  # an LLVM without the intrinsic: fall back
        return None
    return flush
