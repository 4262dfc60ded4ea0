"""Residual add fused with RMSNorm on the CPU with numba: rows in parallel chunks, one float32 row buffer.

s = hidden_states + residual in float32; residual_out = s rounded once to bfloat16;
output = s / sqrt(mean(s^2) + eps) * weight with the reference's eps, normalizing the unrounded
s, as the definition's reference. Fused, each row is read twice (hidden, residual) and
written twice; nothing intermediate goes back to memory.

bfloat16 without bfloat16: numba has no bfloat16 type, so run() hands the kernel each
bf16 tensor's raw 16 bits, `tensor.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and the kernel converts with bit operations: bf16 -> fp32 is the 16 bits
shifted left by 16 and reinterpreted as float32 (exact); fp32 -> bf16 rounds to
nearest even on the bits (add 0x7FFF plus the lowest kept bit, shift right by 16; a
NaN stays a quiet NaN). Conversions go through two float32 buffers of H elements per chunk of
rows, so memory does not grow with T.

Speed on a CPU: FASTMATH (LLVM reassoc and contract only: inf and NaN keep their
meaning) lets the sum of squares vectorize; ACCUMULATORS > 1 splits it into
independent partial sums by hand to the same end; PARALLEL runs chunks of
ROWS_PER_CHUNK rows on numba's threads. The defaults are the plain serial kernel.
"""

import numba
import numpy as np
import torch

SEED = {
    "op_type": "rmsnorm",
    "family": "numba_fused_add_row_buffer",
    "language": "numba",
    "description": (
        "Fused residual add + RMSNorm on the CPU: prange over chunks of rows, bf16 bits decoded per row, "
        "split accumulators."
    ),
    "techniques": ["fusion", "cpu simd", "multiple accumulators", "fastmath", "bf16 bit conversion", "prange"],
    "definitions": ["fused_add_rmsnorm_h*"],
    "constants": {"EPS": "eps"},
}

PARAMS = {
    "ROWS_PER_CHUNK": 8,
    "ACCUMULATORS": 1,
    "PARALLEL": False,
    "FASTMATH": False,
}

PARAM_SPACE = {
    "ROWS_PER_CHUNK": [1, 2, 4, 8, 16, 32],
    "ACCUMULATORS": [1, 4, 8, 16],
    "PARALLEL": [False, True],
    "FASTMATH": [False, True],
}

EPS = 1e-5  # replaced by the reference's `eps` in a Solution (SEED["constants"])
ROWS_PER_CHUNK = PARAMS["ROWS_PER_CHUNK"]
ACCUMULATORS = PARAMS["ACCUMULATORS"]
FASTMATH = {"reassoc", "contract"} if PARAMS["FASTMATH"] else False


@numba.njit(inline="always")
def _bf16_to_f32(src, dst_bits):
    for i in range(src.shape[0]):
        dst_bits[i] = np.uint32(src[i]) << np.uint32(16)


@numba.njit(inline="always")
def _f32_to_bf16(src_bits, dst):
    for i in range(src_bits.shape[0]):
        bits = src_bits[i]
        if (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):  # NaN: keep it a (quiet) NaN
            dst[i] = np.uint16((bits >> np.uint32(16)) | np.uint32(0x40))
        else:
            dst[i] = np.uint16((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@numba.njit(inline="always")
def _sum_squares(x, partial):
    n = x.shape[0]
    main = n - n % ACCUMULATORS
    for j in range(ACCUMULATORS):
        partial[j] = 0.0
    for i in range(0, main, ACCUMULATORS):
        for j in range(ACCUMULATORS):
            partial[j] += x[i + j] * x[i + j]
    total = np.float32(0.0)
    for i in range(main, n):
        total += x[i] * x[i]
    for j in range(ACCUMULATORS):
        total += partial[j]
    return total


@numba.njit(parallel=PARAMS["PARALLEL"], fastmath=FASTMATH)
def _fused_add_rmsnorm(h, r, w, out, res_out):  # (T, H) bf16 bits as uint16; w: (H,)
    n_rows, n_cols = h.shape
    w_bits = np.empty(n_cols, np.uint32)
    _bf16_to_f32(w, w_bits)
    w_f32 = w_bits.view(np.float32)
    n_chunks = (n_rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK
    for chunk in numba.prange(n_chunks):
        s_bits = np.empty(n_cols, np.uint32)
        s = s_bits.view(np.float32)
        r_bits = np.empty(n_cols, np.uint32)
        r_f32 = r_bits.view(np.float32)
        partial = np.empty(ACCUMULATORS, np.float32)
        for row in range(chunk * ROWS_PER_CHUNK, min(n_rows, (chunk + 1) * ROWS_PER_CHUNK)):
            _bf16_to_f32(h[row], s_bits)
            _bf16_to_f32(r[row], r_bits)
            for i in range(n_cols):
                s[i] = s[i] + r_f32[i]
            _f32_to_bf16(s_bits, res_out[row])
            mean_sq = _sum_squares(s, partial) / np.float32(n_cols)
            inv_rms = np.float32(1.0) / np.sqrt(mean_sq + np.float32(EPS))
            for i in range(n_cols):
                s[i] = s[i] * inv_rms * w_f32[i]
            _f32_to_bf16(s_bits, out[row])


def _bits(t):
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.view(torch.int16).numpy().view(np.uint16)


def run(hidden_states, residual, weight, output, residual_out):
    _fused_add_rmsnorm(_bits(hidden_states), _bits(residual), _bits(weight), _bits(output), _bits(residual_out))
