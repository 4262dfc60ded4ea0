"""LayerNorm on the CPU with numba: rows in parallel chunks, exact two-step mean and variance per row.

y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias over the last dimension, biased
variance, the reference's eps, float32 statistics, one rounding to bfloat16:
torch.nn.functional.layer_norm's semantics. Signature: hidden_states (T, H) bf16,
weight (H,) bf16, bias (H,) bf16 -> output (T, H) bf16.

bfloat16 without bfloat16: numba has no bfloat16 type, so run() hands the kernel each
bf16 tensor's raw 16 bits, `tensor.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and the kernel converts with bit operations: bf16 -> fp32 is the 16 bits
shifted left by 16 and reinterpreted as float32 (exact); fp32 -> bf16 rounds to
nearest even on the bits (add 0x7FFF plus the lowest kept bit, shift right by 16; a
NaN stays a quiet NaN). Each row is decoded once into a float32 buffer of H elements per chunk
of rows; the mean, then the centred sum of squares, are two sweeps over that buffer
(from L1/L2), the numerically careful two-pass variance at one read of memory.

Speed on a CPU: FASTMATH (LLVM reassoc and contract only) lets both reductions
vectorize; ACCUMULATORS > 1 splits them into independent partial sums by hand;
PARALLEL runs chunks of ROWS_PER_CHUNK rows on numba's threads. The defaults are the
plain serial kernel.
"""

import numba
import numpy as np
import torch

SEED = {
    "op_type": "layernorm",
    "family": "numba_row_buffer",
    "language": "numba",
    "description": (
        "LayerNorm on the CPU: prange over chunks of rows, each row decoded once, mean then centred "
        "variance with split accumulators."
    ),
    "techniques": ["cpu simd", "multiple accumulators", "fastmath", "bf16 bit conversion", "prange"],
    "definitions": ["layernorm_h*"],
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
def _sum(x, partial):
    n = x.shape[0]
    main = n - n % ACCUMULATORS
    for j in range(ACCUMULATORS):
        partial[j] = 0.0
    for i in range(0, main, ACCUMULATORS):
        for j in range(ACCUMULATORS):
            partial[j] += x[i + j]
    total = np.float32(0.0)
    for i in range(main, n):
        total += x[i]
    for j in range(ACCUMULATORS):
        total += partial[j]
    return total


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
def _layernorm(x, w, b, out):  # x, out: (T, H) bf16 bits as uint16; w, b: (H,)
    n_rows, n_cols = x.shape
    w_bits = np.empty(n_cols, np.uint32)
    _bf16_to_f32(w, w_bits)
    w_f32 = w_bits.view(np.float32)
    b_bits = np.empty(n_cols, np.uint32)
    _bf16_to_f32(b, b_bits)
    b_f32 = b_bits.view(np.float32)
    n_chunks = (n_rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK
    for chunk in numba.prange(n_chunks):
        row_bits = np.empty(n_cols, np.uint32)
        row_f32 = row_bits.view(np.float32)
        partial = np.empty(ACCUMULATORS, np.float32)
        for row in range(chunk * ROWS_PER_CHUNK, min(n_rows, (chunk + 1) * ROWS_PER_CHUNK)):
            _bf16_to_f32(x[row], row_bits)
            mean = _sum(row_f32, partial) / np.float32(n_cols)
            for i in range(n_cols):
                row_f32[i] = row_f32[i] - mean
            var = _sum_squares(row_f32, partial) / np.float32(n_cols)
            inv_std = np.float32(1.0) / np.sqrt(var + np.float32(EPS))
            for i in range(n_cols):
                row_f32[i] = row_f32[i] * inv_std * w_f32[i] + b_f32[i]
            _f32_to_bf16(row_bits, out[row])


def _bits(t):
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.view(torch.int16).numpy().view(np.uint16)


def run(hidden_states, weight, bias, output):
    _layernorm(_bits(hidden_states), _bits(weight), _bits(bias), _bits(output))
