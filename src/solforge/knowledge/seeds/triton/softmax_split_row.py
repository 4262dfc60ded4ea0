"""Softmax with each row split across SPLITS programs: the whole GPU busy at batch size 1.

probs = exp(x - max(x)) / sum(exp(x - max(x))) in float32 from bfloat16 logits, as the
definition's reference. At decode batch sizes (1 to 256 rows) one program per row
leaves most of an H100's 132 SMs idle, and one SM cannot pull a 256 KB row at the
DRAM's rate. Here a (B, SPLITS) grid gives each program a contiguous slice of a row:

1. `_partial_stats`: each program computes its slice's maximum m_s and sum
   d_s = sum(exp(x - m_s)) with the online normalizer (Milakov & Gimelshein 2018,
   arXiv:1805.02867), into a (B, SPLITS, 2) float32 workspace.
2. `_normalize`: each program merges its row's SPLITS pairs, M = max m_s and
   D = sum d_s * exp(m_s - M) (the merge is associative, so the order does not
   matter), then writes exp(x - M) / D over its slice.

Two launches and two reads of the logits (the second usually from L2), plus 8 * B *
SPLITS bytes of workspace: the same split as split-K in GEMMs and Flash-Decoding in
attention, applied to a reduction over the vocabulary.
"""

import torch
import triton
import triton.language as tl

SEED = {
    "op_type": "softmax",
    "family": "split_row",
    "language": "triton",
    "description": (
        "Softmax with each row split over SPLITS programs: partial online (max, sum) per slice, then a "
        "merge-and-write kernel."
    ),
    "techniques": ["online softmax", "split-K", "occupancy", "coalescing"],
    "definitions": ["softmax_v*"],
}

PARAMS = {
    "SPLITS": 32,
    "BLOCK_SIZE": 1024,
    "num_warps": 4,
}

PARAM_SPACE = {
    "SPLITS": [4, 8, 16, 32, 64, 128],
    "BLOCK_SIZE": [256, 512, 1024, 2048, 4096],
    "num_warps": [1, 2, 4, 8],
}


@triton.jit
def _partial_stats(x_ptr, ws_ptr, n_cols, x_row_stride, cols_per_split, SPLITS: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    x_row = x_ptr + row * x_row_stride
    start = split * cols_per_split
    end = tl.minimum(start + cols_per_split, n_cols)
    m = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    d = tl.zeros([BLOCK], dtype=tl.float32)
    for offset in range(start, end, BLOCK):
        cols = offset + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < end, other=float("-inf"), eviction_policy="evict_last")
        x = x.to(tl.float32)
        m_new = tl.maximum(m, x)
        d = tl.where(m_new > float("-inf"), d * tl.exp(m - m_new) + tl.exp(x - m_new), 0.0)
        m = m_new
    split_max = tl.max(m, axis=0)
    split_sum = tl.sum(tl.where(m > float("-inf"), d * tl.exp(m - split_max), 0.0), axis=0)
    ws = ws_ptr + (row * SPLITS + split) * 2
    tl.store(ws, split_max)
    tl.store(ws + 1, split_sum)


@triton.jit
def _normalize(
    x_ptr, out_ptr, ws_ptr, n_cols, x_row_stride, out_row_stride, cols_per_split,
    SPLITS: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    parts = tl.arange(0, SPLITS)
    ws = ws_ptr + (row * SPLITS + parts) * 2
    part_max = tl.load(ws)
    part_sum = tl.load(ws + 1)
    row_max = tl.max(part_max, axis=0)
    row_sum = tl.sum(tl.where(part_max > float("-inf"), part_sum * tl.exp(part_max - row_max), 0.0), axis=0)
    inv_sum = 1.0 / row_sum
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    start = split * cols_per_split
    end = tl.minimum(start + cols_per_split, n_cols)
    for offset in range(start, end, BLOCK):
        cols = offset + tl.arange(0, BLOCK)
        mask = cols < end
        x = tl.load(x_row + cols, mask=mask, other=float("-inf"), eviction_policy="evict_first").to(tl.float32)
        tl.store(out_row + cols, tl.exp(x - row_max) * inv_sum, mask=mask)


def run(logits, probs):
    n_rows, n_cols = logits.shape  # (B, V)
    splits, block = PARAMS["SPLITS"], PARAMS["BLOCK_SIZE"]
    # slices are whole multiples of BLOCK_SIZE so that every chunk but the row's last is full
    cols_per_split = triton.cdiv(triton.cdiv(n_cols, splits), block) * block
    ws = torch.empty((n_rows, splits, 2), dtype=torch.float32, device=logits.device)  # (B, SPLITS, [max, sum])
    grid = (n_rows, splits)
    _partial_stats[grid](
        logits, ws, n_cols, logits.stride(0), cols_per_split, SPLITS=splits, BLOCK=block, num_warps=PARAMS["num_warps"],
    )
    _normalize[grid](
        logits, probs, ws, n_cols, logits.stride(0), probs.stride(0), cols_per_split,
        SPLITS=splits, BLOCK=block, num_warps=PARAMS["num_warps"],
    )
