"""Safe softmax in three sweeps: the row maximum, then the sum of exponentials, then the write.

probs = exp(x - max(x)) / sum(exp(x - max(x))) in float32 from bfloat16 logits, as the
definition's reference. One program per row walks the row in BLOCK_SIZE chunks three
times: max, sum of exp(x - max), and exp(x - max) / sum. That is three reads and one
write per element (the "safe softmax" of Milakov & Gimelshein 2018, arXiv:1805.02867,
which the online normalizer cuts to two reads); each sweep needs one exponential per
element at most and no rescaling, so it is the simplest baseline of the family, and
when a row's bfloat16 logits (256 KB for 128256 of them) stay in L2 between sweeps
the extra read costs L2 bandwidth, not DRAM bandwidth.
"""

import triton
import triton.language as tl

SEED = {
    "op_type": "softmax",
    "family": "safe_three_pass",
    "language": "triton",
    "description": "Safe softmax in three sweeps over the row (max, sum of exp, write); one program per row.",
    "techniques": ["coalescing", "vectorized access"],
    "definitions": ["softmax_v*"],
}

PARAMS = {
    "BLOCK_SIZE": 2048,
    "num_warps": 8,
    "num_stages": 2,
}

PARAM_SPACE = {
    "BLOCK_SIZE": [512, 1024, 2048, 4096, 8192],
    "num_warps": [2, 4, 8, 16],
    "num_stages": [1, 2, 3],
}


@triton.jit
def _softmax_three_pass(x_ptr, out_ptr, n_cols, x_row_stride, out_row_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    lane_max = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf"), eviction_policy="evict_last")
        lane_max = tl.maximum(lane_max, x.to(tl.float32))
    row_max = tl.max(lane_max, axis=0)
    lane_sum = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf"), eviction_policy="evict_last")
        lane_sum += tl.exp(x.to(tl.float32) - row_max)
    inv_sum = 1.0 / tl.sum(lane_sum, axis=0)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=float("-inf"), eviction_policy="evict_first").to(tl.float32)
        tl.store(out_row + cols, tl.exp(x - row_max) * inv_sum, mask=mask)


def run(logits, probs):
    n_rows, n_cols = logits.shape  # (B, V)
    _softmax_three_pass[(n_rows,)](
        logits, probs, n_cols, logits.stride(0), probs.stride(0),
        BLOCK=PARAMS["BLOCK_SIZE"], num_warps=PARAMS["num_warps"], num_stages=PARAMS["num_stages"],
    )
