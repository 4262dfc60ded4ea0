"""Cross-entropy over a large vocabulary on the CPU with numba: one read of the logits, block log-sum-exp merged online.

loss[t] = logsumexp(logits[t]) - logits[t, labels[t]] in float32 from bfloat16 logits:
torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none"), including
its ignore_index = -100 (loss 0). Signature: logits (T, V) bf16, labels (T,) int64 ->
loss (T,) float32.

bfloat16 without bfloat16: numba has no bfloat16 type, so run() hands the kernel each
bf16 tensor's raw 16 bits, `tensor.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and the kernel converts with bit operations: bf16 -> fp32 is the 16 bits
shifted left by 16 and reinterpreted as float32 (exact); fp32 -> bf16 rounds to
nearest even on the bits (add 0x7FFF plus the lowest kept bit, shift right by 16; a
NaN stays a quiet NaN). Each job decodes one block of BLOCK_COLS logits into its own float32
buffer.

Jobs are (row, block) pairs over numba's threads: each computes its block's maximum
m_b and d_b = sum exp(x - m_b) (float64 sum); a second, per-row loop merges them,
M = max m_b, D = sum d_b exp(m_b - M) (the online normalizer's merge rule, Milakov &
Gimelshein 2018, arXiv:1805.02867), and subtracts the label's logit from M + log D.
Nothing of size V is written. FASTMATH is LLVM's reassoc and contract only. The
defaults (whole-row blocks, serial) leave the threads idle at small batch sizes.
"""

import numba
import numpy as np
import torch

SEED = {
    "op_type": "cross_entropy",
    "family": "numba_block_lse",
    "language": "numba",
    "description": (
        "Cross-entropy on the CPU: (row, block) log-sum-exp jobs over numba threads, merged with the "
        "online-normalizer rule; one read of the logits."
    ),
    "techniques": ["online softmax", "one pass", "split-K", "bf16 bit conversion", "prange"],
    "definitions": ["cross_entropy_v*"],
    "constants": {"IGNORE_INDEX": "IGNORE_INDEX"},
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

IGNORE_INDEX = -100  # rows with this label get loss 0; the reference's value in a Solution
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
def _cross_entropy(x, labels, loss):  # x: (T, V) bf16 bits as uint16; labels: (T,) int64; loss: (T,) f32
    n_rows, n_cols = x.shape
    n_blocks = (n_cols + BLOCK_COLS - 1) // BLOCK_COLS
    block_max = np.empty((n_rows, n_blocks), np.float32)
    block_sum = np.empty((n_rows, n_blocks), np.float64)
    for job in numba.prange(n_rows * n_blocks):
        row, block = job // n_blocks, job % n_blocks
        start, end = block * BLOCK_COLS, min(n_cols, (block + 1) * BLOCK_COLS)
        tile_bits = np.empty(end - start, np.uint32)
        tile = tile_bits.view(np.float32)
        _bf16_to_f32(x[row, start:end], tile_bits)
        m = -np.inf
        for i in range(tile.shape[0]):
            m = max(m, tile[i])
        total = 0.0
        if m > -np.inf:  # an all -inf block contributes nothing (exp(-inf - -inf) would be NaN)
            m32 = np.float32(m)
            for i in range(tile.shape[0]):
                total += np.exp(tile[i] - m32)
        block_max[row, block] = m
        block_sum[row, block] = total
    label_bits = np.empty(n_rows, np.uint32)
    for row in range(n_rows):
        label_bits[row] = np.uint32(x[row, max(labels[row], 0)]) << np.uint32(16)
    label_logit = label_bits.view(np.float32)
    for row in numba.prange(n_rows):
        row_max = np.float64(block_max[row, 0])
        for k in range(1, n_blocks):
            row_max = max(row_max, np.float64(block_max[row, k]))
        row_sum = 0.0
        for k in range(n_blocks):
            if block_max[row, k] > -np.inf:
                row_sum += block_sum[row, k] * np.exp(np.float64(block_max[row, k]) - row_max)
        if labels[row] == IGNORE_INDEX:
            loss[row] = 0.0
        else:
            loss[row] = np.float32(row_max + np.log(row_sum) - np.float64(label_logit[row]))


def _bits(t):
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.view(torch.int16).numpy().view(np.uint16)


def run(logits, labels, loss):
    if loss.dtype != torch.float32:
        raise TypeError(f"expected a float32 loss, got {loss.dtype}")
    _cross_entropy(_bits(logits), labels.numpy(), loss.numpy())
