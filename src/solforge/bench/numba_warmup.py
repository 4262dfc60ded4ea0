"""Numba's one-time costs, paid once in the template process instead of in every
solution's process.

The first `@njit` compile in a process costs more than later ones: numba builds its
typing and target contexts, and compiles each `@overload` it meets (`ndarray.view`,
`np.empty`, `np.exp`, ...) once per argument types, for the whole process. Measured on
the 2-vCPU developer machine (2026-12-03, numba 0.68.1, the seed numba/rmsnorm_rows at
64 x 4096 bfloat16): a serial variant compiled in 0.76-0.79 s first in a process and in
0.32-0.41 s after another variant; a `parallel=True` variant in 1.68 s first and 1.36 s
after a serial one. Every solution's process is forked from the template (`processes`),
so what the template compiled before forking is already there for each of them.

`warm()` compiles two harness-owned kernels, serial only, written in the idioms of the
shipped numba seeds (bfloat16 through its raw bits, float32 rows, reductions, exp, log
and sqrt, 1-D and 2-D scratch arrays), for the array types a solution's `run` hands
numba (C-contiguous uint16, uint32, float32 and float64 arrays of one and two
dimensions). Measured the same way, with the warm-up (1.2 s, once per template) before
it, a candidate's compile and first call took (cold -> warm, seconds): rmsnorm_rows
serial 0.81 -> 0.38, parallel 1.86 -> 1.44; silu_and_mul 0.74 -> 0.30, 1.40 -> 1.10;
softmax_split_row 0.83 -> 0.39, 1.76 -> 1.26; layernorm_rows 1.00 -> 0.54, 2.10 -> 1.79
(those with the fastmath variants warmed too, a 2.2 s warm-up; without them a FASTMATH
candidate gains a little less: rmsnorm_rows 0.84 -> 0.49 against 0.38).

Never `parallel=True`: compiling a parfor loads numba's threading layer, and GNU OpenMP
in a process that then forks makes every child that uses it abort ("fork() called from
a process already using GNU OpenMP"). Nothing is
cached on disk and no user code runs. A kernel compiled here is never a solution's: its
own functions are compiled in its process as before (their IR is the same either way;
only the process-wide caches are warm).
"""

from __future__ import annotations

import math
import time

import numpy as np


def _kernels() -> list:
    """The two warm-up kernels, `bf16_rows(x, w, out)` and `f32_rows(x, out, acc)`, as
    numba dispatchers (not yet compiled)."""
    import numba

    @numba.njit(inline="always")
    def bf16_to_f32(src, dst_bits):
        for i in range(src.shape[0]):
            dst_bits[i] = np.uint32(src[i]) << np.uint32(16)

    @numba.njit(inline="always")
    def f32_to_bf16(src_bits, dst):
        for i in range(src_bits.shape[0]):
            bits = src_bits[i]
            if (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
                dst[i] = np.uint16((bits >> np.uint32(16)) | np.uint32(0x40))
            else:
                rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
                dst[i] = np.uint16(rounded >> np.uint32(16))

    def bf16_rows(x, w, out):  # x, out: (T, H) bf16 bits; w: (H,) bf16 bits
        n_rows, n_cols = x.shape
        w_bits = np.empty(n_cols, np.uint32)
        bf16_to_f32(w, w_bits)
        w_f32 = w_bits.view(np.float32)
        partial = np.zeros(4, np.float32)
        for row in range(n_rows):
            row_bits = np.empty(n_cols, np.uint32)
            row_f32 = row_bits.view(np.float32)
            bf16_to_f32(x[row], row_bits)
            total = np.float32(0.0)
            for i in range(n_cols):
                partial[i % 4] += row_f32[i] * row_f32[i]
            for j in range(4):
                total += partial[j]
            inv = np.float32(1.0) / np.sqrt(total / np.float32(n_cols) + np.float32(1e-5))
            m = -np.inf
            for i in range(n_cols):
                m = max(m, row_f32[i])
            for i in range(n_cols):
                g = row_f32[i]
                row_f32[i] = g * inv * w_f32[i] + g / (np.float32(1.0) + np.exp(-g)) - np.float32(m)
            f32_to_bf16(row_bits, out[row])
            f32_to_bf16(row_bits[: n_cols // 2], out[row, : n_cols // 2])

    def f32_rows(x, out, acc):  # x, out: (T, H) float32; acc: (T,) float64
        n_rows, n_cols = x.shape
        out_bits = out.view(np.uint32)
        scratch = np.empty((n_rows, 2), np.float64)
        for row in range(n_rows):
            m = -np.inf
            for i in range(n_cols):
                m = max(m, x[row, i])
            total = 0.0
            for i in range(n_cols):
                e = np.exp(x[row, i] - np.float32(m))
                out[row, i] = e
                total += e
            scratch[row, 0] = m
            scratch[row, 1] = total
            acc[row] = np.log(total) + math.exp(np.float64(m) - m) + math.sqrt(total) + np.float64(m)
            out_bits[row, 0] = out_bits[row, 0] | np.uint32(0)
        return scratch

    return [numba.njit(bf16_rows), numba.njit(f32_rows)]


def warm() -> float:
    """Compile the two warm-up kernels (serial) for 2 x 8 arrays and run them once.

    Returns:
        The seconds it took (wall clock).
    Raises:
        ImportError: numba is not installed.
    """
    t0 = time.perf_counter()
    bf16_rows, f32_rows = _kernels()
    x16 = np.zeros((2, 8), np.uint16)
    x32 = np.zeros((2, 8), np.float32)
    bf16_rows(x16, np.zeros(8, np.uint16), x16.copy())
    f32_rows(x32, x32.copy(), np.zeros(2, np.float64))
    return time.perf_counter() - t0
