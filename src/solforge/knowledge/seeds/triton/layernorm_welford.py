"""LayerNorm that streams rows in chunks and merges chunk statistics with Welford's update.

y = (x - mean) / sqrt(var + eps) * weight + bias, biased variance, the reference's eps, float32
statistics, one rounding to the output dtype: torch.nn.functional.layer_norm's
semantics. Signature: hidden_states (T, H), weight (H,), bias (H,) -> output (T, H).

One program per row. The first sweep reads BLOCK_SIZE elements at a time, takes the
chunk's count n_b, mean and centred sum of squares M2_b, and folds them into the
running (n, mean, M2) with the pairwise form of Welford's update (Welford 1962,
Technometrics 4(3); the merge of Chan, Golub & LeVeque 1983): delta = mean_b - mean,
mean += delta * n_b / n', M2 += M2_b + delta^2 * n * n_b / n'. Unlike sum and sum of
squares, this never subtracts two large nearly equal numbers, so rows with a large
mean keep their variance. The second sweep normalizes (x is kept in L2 by the first
sweep's evict_last). Register use does not grow with the row length.
"""

import triton
import triton.language as tl

SEED = {
    "op_type": "layernorm",
    "family": "looped_welford",
    "language": "triton",
    "description": (
        "LayerNorm, one program per row, chunk statistics merged with Welford's update, then a "
        "normalizing sweep."
    ),
    "techniques": ["welford", "coalescing", "register pressure"],
    "definitions": ["layernorm_h*"],
    "constants": {"EPS": "eps"},
}

PARAMS = {
    "BLOCK_SIZE": 1024,
    "num_warps": 4,
}

PARAM_SPACE = {
    "BLOCK_SIZE": [256, 512, 1024, 2048, 4096],
    "num_warps": [1, 2, 4, 8, 16],
}

EPS = 1e-5  # replaced by the reference's `eps` in a Solution (SEED["constants"])


@triton.jit
def _layernorm_welford(
    x_ptr, w_ptr, b_ptr, out_ptr, n_cols, x_row_stride, out_row_stride, eps, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    count = 0.0
    mean = 0.0
    m2 = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
        n_b = tl.minimum(n_cols - start, BLOCK).to(tl.float32)
        mean_b = tl.sum(x, axis=0) / n_b
        centred = tl.where(mask, x - mean_b, 0.0)
        m2_b = tl.sum(centred * centred, axis=0)
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta * delta * (count * n_b / total)
        count = total
    inv_std = 1.0 / tl.sqrt(m2 / n_cols + eps)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
        b = tl.load(b_ptr + cols, mask=mask, other=0.0, eviction_policy="evict_last").to(tl.float32)
        tl.store(out_row + cols, ((x - mean) * inv_std * w + b).to(out_ptr.dtype.element_ty), mask=mask)


def run(hidden_states, weight, bias, output):
    n_rows, n_cols = hidden_states.shape  # (T, H)
    _layernorm_welford[(n_rows,)](
        hidden_states, weight, bias, output, n_cols, hidden_states.stride(0), output.stride(0), EPS,
        BLOCK=PARAMS["BLOCK_SIZE"], num_warps=PARAMS["num_warps"],
    )
