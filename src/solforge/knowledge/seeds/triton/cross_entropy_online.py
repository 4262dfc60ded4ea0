"""Cross-entropy over a large vocabulary in one read of the logits, with the online log-sum-exp.

loss[t] = logsumexp(logits[t]) - logits[t, labels[t]] in float32 from bfloat16 logits:
torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none"), including
its ignore_index = -100, whose rows get loss 0. Signature: logits (T, V) bfloat16,
labels (T,) int64 -> loss (T,) float32.

One program per row walks the vocabulary in BLOCK_SIZE chunks keeping, per lane, the
running maximum m and the running sum of exp(x - m), rescaled by exp(m_old - m_new)
when the maximum grows (the online normalizer of Milakov & Gimelshein 2018,
arXiv:1805.02867); the lanes merge once at the end: lse = M + log(sum_l d_l *
exp(m_l - M)). The label's logit is one scalar load. So the logits, T * V * 2 bytes and
the whole cost of the op, are read exactly once; nothing of size V is written (no
probabilities, no log-softmax).
"""

import triton
import triton.language as tl

SEED = {
    "op_type": "cross_entropy",
    "family": "online_lse_one_pass",
    "language": "triton",
    "description": (
        "Cross-entropy: online log-sum-exp in one read of the logits, one program per row, the label "
        "logit by a scalar load."
    ),
    "techniques": ["online softmax", "one pass", "fusion", "coalescing"],
    "definitions": ["cross_entropy_v*"],
    "constants": {"IGNORE_INDEX": "IGNORE_INDEX"},
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

IGNORE_INDEX = -100  # rows with this label get loss 0; the reference's value in a Solution


@triton.jit
def _cross_entropy(
    x_ptr, labels_ptr, loss_ptr, n_cols, x_row_stride, ignore_index, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    m = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    d = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < n_cols, other=float("-inf"), eviction_policy="evict_first")
        x = x.to(tl.float32)
        m_new = tl.maximum(m, x)
        d = tl.where(m_new > float("-inf"), d * tl.exp(m - m_new) + tl.exp(x - m_new), 0.0)
        m = m_new
    row_max = tl.max(m, axis=0)
    row_sum = tl.sum(tl.where(m > float("-inf"), d * tl.exp(m - row_max), 0.0), axis=0)
    lse = row_max + tl.log(row_sum)
    label = tl.load(labels_ptr + row)
    valid = label != ignore_index
    target = tl.load(x_row + tl.where(valid, label, 0)).to(tl.float32)
    tl.store(loss_ptr + row, tl.where(valid, lse - target, 0.0))


def run(logits, labels, loss):
    n_rows, n_cols = logits.shape  # (T, V)
    _cross_entropy[(n_rows,)](
        logits, labels, loss, n_cols, logits.stride(0), IGNORE_INDEX,
        BLOCK=PARAMS["BLOCK_SIZE"], num_warps=PARAMS["num_warps"], num_stages=PARAMS["num_stages"],
    )
