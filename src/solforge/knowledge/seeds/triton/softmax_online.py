"""Softmax with the online normalizer: the row statistics in one pass, then one pass to write.

probs = exp(x - max(x)) / sum(exp(x - max(x))) in float32 from bfloat16 logits, as the
definition's reference. A vocabulary row (128256 logits) is far too long for registers,
so one program per row walks it in BLOCK_SIZE chunks. The first sweep keeps, per lane,
a running maximum m and a running sum d of exp(x - m), rescaling d by exp(m_old - m_new)
whenever the maximum grows (Milakov & Gimelshein 2018, "Online normalizer calculation
for softmax", arXiv:1805.02867); at the end the lanes are merged with the same rule.
The second sweep writes exp(x - M) / D. Per element that is two reads and one write
(3 memory accesses) instead of the safe softmax's three reads and one write (4).

Lanes are merged only once, at the end of the sweep, so each chunk costs no block-wide
reduction; the price is two exponentials per element in the first sweep, cheap next to
the memory traffic. Lanes that have seen only -inf (masked tail) keep d = 0 rather than
exp(-inf - -inf) = NaN. One program per row leaves most SMs idle at small batch sizes:
`softmax_split_row` splits each row across programs.
"""

import triton
import triton.language as tl

SEED = {
    "op_type": "softmax",
    "family": "online_one_pass",
    "language": "triton",
    "description": (
        "Online softmax: one pass for the running max and sum (Milakov & Gimelshein), one pass to write; "
        "one program per row."
    ),
    "techniques": ["online softmax", "one pass", "coalescing", "vectorized access"],
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
def _softmax_online(x_ptr, out_ptr, n_cols, x_row_stride, out_row_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    m = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    d = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf"), eviction_policy="evict_last")
        x = x.to(tl.float32)
        m_new = tl.maximum(m, x)
        seen = m_new > float("-inf")
        d = tl.where(seen, d * tl.exp(m - m_new) + tl.exp(x - m_new), 0.0)
        m = m_new
    row_max = tl.max(m, axis=0)
    row_sum = tl.sum(tl.where(m > float("-inf"), d * tl.exp(m - row_max), 0.0), axis=0)
    inv_sum = 1.0 / row_sum
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=float("-inf"), eviction_policy="evict_first").to(tl.float32)
        tl.store(out_row + cols, tl.exp(x - row_max) * inv_sum, mask=mask)


def run(logits, probs):
    n_rows, n_cols = logits.shape  # (B, V)
    _softmax_online[(n_rows,)](
        logits, probs, n_cols, logits.stride(0), probs.stride(0),
        BLOCK=PARAMS["BLOCK_SIZE"], num_warps=PARAMS["num_warps"], num_stages=PARAMS["num_stages"],
    )
