"""Softmax on the CPU with numba: rows cut into BLOCK_COLS blocks, block statistics merged online.

probs = exp(x - max(x)) / sum(exp(x - max(x))) in float32 from bfloat16 logits, as the
definition's reference.

bfloat16 without bfloat16: numba has no bfloat16 type, so run() hands the kernel each
bf16 tensor's raw 16 bits, `tensor.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and the kernel converts with bit operations: bf16 -> fp32 is the 16 bits
shifted left by 16 and reinterpreted as float32 (exact); fp32 -> bf16 rounds to
nearest even on the bits (add 0x7FFF plus the lowest kept bit, shift right by 16; a
NaN stays a quiet NaN). The logits decode straight into the float32 output, which then serves as
the working buffer: no scratch of size V.

Two parallel sweeps over (row, block) jobs, so that even one row of 128256 logits
spreads over every thread: the first decodes a block, takes its maximum m_b, replaces
each x by exp(x - m_b) and sums them into d_b; the second merges the row's blocks,
M = max m_b and D = sum d_b * exp(m_b - M) (the online normalizer's merge rule,
Milakov & Gimelshein 2018, arXiv:1805.02867), and scales its block by
exp(m_b - M) / D. One exponential per element. Block sums accumulate in float64:
128256 float32 additions in sequence drift by about sqrt(n) * 2^-24 = 2e-5 relative, a
fifth of the float32 tolerance. FASTMATH is LLVM's reassoc and contract only.
The defaults (whole-row blocks, serial) leave the threads idle at small batch sizes.
"""

import numba
import numpy as np
import torch

SEED = {
    "op_type": "softmax",
    "family": "numba_split_row_online",
    "language": "numba",
    "description": (
        "Softmax on the CPU: (row, block) jobs over numba threads, per-block max and sum merged with the "
        "online-normalizer rule."
    ),
    "techniques": ["online softmax", "split-K", "cpu simd", "bf16 bit conversion", "prange"],
    "definitions": ["softmax_v*"],
}

PARAMS = {
    "BLOCK_COLS": 131072,
    "PARALLEL": False,
    "FASTMATH": False,
}

PARAM_SPACE = {
    "BLOCK_COLS": [2048, 8192, 32768, 131072],
    "PARALLEL": [False, True],
    "FASTMATH": [False, True],
}

BLOCK_COLS = PARAMS["BLOCK_COLS"]
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


@numba.njit(parallel=PARAMS["PARALLEL"], fastmath=FASTMATH)
def _softmax(x, out):  # x: (B, V) bf16 bits as uint16; out: (B, V) float32
    n_rows, n_cols = x.shape
    n_blocks = (n_cols + BLOCK_COLS - 1) // BLOCK_COLS
    block_max = np.empty((n_rows, n_blocks), np.float32)
    block_sum = np.empty((n_rows, n_blocks), np.float64)
    out_bits = out.view(np.uint32)
    for job in numba.prange(n_rows * n_blocks):
        row, block = job // n_blocks, job % n_blocks
        start, end = block * BLOCK_COLS, min(n_cols, (block + 1) * BLOCK_COLS)
        _bf16_to_f32(x[row, start:end], out_bits[row, start:end])
        m = -np.inf
        for i in range(start, end):
            m = max(m, out[row, i])
        total = 0.0
        if m == -np.inf:  # an all -inf block contributes nothing (exp(-inf - -inf) would be NaN)
            for i in range(start, end):
                out[row, i] = 0.0
        else:
            m32 = np.float32(m)
            for i in range(start, end):
                e = np.exp(out[row, i] - m32)
                out[row, i] = e
                total += e
        block_max[row, block] = m
        block_sum[row, block] = total
    for job in numba.prange(n_rows * n_blocks):
        row, block = job // n_blocks, job % n_blocks
        start, end = block * BLOCK_COLS, min(n_cols, (block + 1) * BLOCK_COLS)
        row_max = block_max[row, 0]
        for k in range(1, n_blocks):
            row_max = max(row_max, block_max[row, k])
        row_sum = 0.0
        for k in range(n_blocks):
            if block_max[row, k] > -np.inf:
                row_sum += block_sum[row, k] * np.exp(np.float64(block_max[row, k]) - row_max)
        scale = np.float32(np.exp(np.float64(block_max[row, block]) - row_max) / row_sum)
        for i in range(start, end):
            out[row, i] = out[row, i] * scale


def _bits(t):
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.view(torch.int16).numpy().view(np.uint16)


def run(logits, probs):
    if probs.dtype != torch.float32:
        raise TypeError(f"expected float32 probs, got {probs.dtype}")
    _softmax(_bits(logits), probs.numpy())
