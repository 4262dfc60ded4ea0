"""NeoX-style rotary embedding of queries and keys in one launch, cos/sin read from the cache.

For each token t at position p = positions[t], with [cos | sin] = cos_sin_cache[p] (two
halves of D/2), every head x of query and key is rotated in pairs (x[i], x[i + D/2]):
out[i] = x[i] * cos[i] - x[i + D/2] * sin[i] and out[i + D/2] = x[i + D/2] * cos[i] +
x[i] * sin[i], in float32, rounded once to the output dtype, as the definition's
reference.

The grid is (T, cdiv(Hq, BLOCK_H) + cdiv(Hk, BLOCK_H)): program (t, b) rotates BLOCK_H
heads of the query when b is below the query's block count and of the key otherwise,
so queries and keys share one launch (a decode step is launch-bound). Each program
gathers its token's cache row once (512 bytes of float32 for D = 128) and loads its
heads as a (BLOCK_H, D/2) tile per half, contiguous along the head dimension, so the
loads coalesce and vectorize. Memory-bound: 2 * T * (Hq + Hk) * D * 2 bytes plus the
positions and the gathered cache rows.
"""

import triton
import triton.language as tl

SEED = {
    "op_type": "rope",
    "family": "heads_block_per_token",
    "language": "triton",
    "description": (
        "NeoX RoPE: a (tokens, head blocks) grid over query and key heads in one launch, cos/sin gathered "
        "once per program."
    ),
    "techniques": ["fusion", "coalescing", "vectorized access"],
    "definitions": ["rope_neox_*"],
}

PARAMS = {
    "BLOCK_H": 4,
    "num_warps": 4,
}

PARAM_SPACE = {
    "BLOCK_H": [1, 2, 4, 8, 16],
    "num_warps": [1, 2, 4, 8],
}


@triton.jit
def _rotate_heads(
    x_ptr, out_ptr, token, head_start, n_heads, x_tok_stride, x_head_stride, out_tok_stride, out_head_stride,
    cos, sin, half, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    heads = head_start + tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    mask = (heads[:, None] < n_heads) & (dims[None, :] < half)
    src = x_ptr + token * x_tok_stride + heads[:, None] * x_head_stride + dims[None, :]  # (BLOCK_H, BLOCK_D)
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mask, other=0.0).to(tl.float32)
    dst = out_ptr + token * out_tok_stride + heads[:, None] * out_head_stride + dims[None, :]
    tl.store(dst, (x1 * cos - x2 * sin).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(dst + half, (x2 * cos + x1 * sin).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_neox(
    pos_ptr, q_ptr, k_ptr, cache_ptr, q_out_ptr, k_out_ptr, n_q_heads, n_k_heads, half,
    q_tok_stride, q_head_stride, k_tok_stride, k_head_stride,
    q_out_tok_stride, q_out_head_stride, k_out_tok_stride, k_out_head_stride, cache_row_stride,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    head_block = tl.program_id(1)
    pos = tl.load(pos_ptr + token).to(tl.int64)
    dims = tl.arange(0, BLOCK_D)
    cache_row = cache_ptr + pos * cache_row_stride
    cos = tl.load(cache_row + dims, mask=dims < half, other=0.0).to(tl.float32)[None, :]  # (1, BLOCK_D)
    sin = tl.load(cache_row + half + dims, mask=dims < half, other=0.0).to(tl.float32)[None, :]
    q_blocks = tl.cdiv(n_q_heads, BLOCK_H)
    if head_block < q_blocks:
        _rotate_heads(
            q_ptr, q_out_ptr, token, head_block * BLOCK_H, n_q_heads, q_tok_stride, q_head_stride,
            q_out_tok_stride, q_out_head_stride, cos, sin, half, BLOCK_H, BLOCK_D,
        )
    else:
        _rotate_heads(
            k_ptr, k_out_ptr, token, (head_block - q_blocks) * BLOCK_H, n_k_heads, k_tok_stride, k_head_stride,
            k_out_tok_stride, k_out_head_stride, cos, sin, half, BLOCK_H, BLOCK_D,
        )


def run(positions, query, key, cos_sin_cache, query_out, key_out):
    n_tokens, n_q_heads, head_dim = query.shape  # (T, Hq, D)
    n_k_heads = key.shape[1]  # key: (T, Hk, D)
    half = head_dim // 2
    block_h = PARAMS["BLOCK_H"]
    grid = (n_tokens, triton.cdiv(n_q_heads, block_h) + triton.cdiv(n_k_heads, block_h))
    _rope_neox[grid](
        positions, query, key, cos_sin_cache, query_out, key_out, n_q_heads, n_k_heads, half,
        query.stride(0), query.stride(1), key.stride(0), key.stride(1),
        query_out.stride(0), query_out.stride(1), key_out.stride(0), key_out.stride(1), cos_sin_cache.stride(0),
        BLOCK_H=block_h, BLOCK_D=triton.next_power_of_2(half), num_warps=PARAMS["num_warps"],
    )
