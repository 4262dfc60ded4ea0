"""NeoX rotary embedding on the CPU with numba: chunks of tokens over threads, every head of a token together.

For token t at position p = positions[t], [cos | sin] = cos_sin_cache[p] (halves of
D/2); every query and key head x is rotated in pairs (x[i], x[i + D/2]):
out[i] = x[i] cos[i] - x[i + D/2] sin[i], out[i + D/2] = x[i + D/2] cos[i] + x[i] sin[i],
in float32, rounded once to bfloat16, as the definition's reference.

bfloat16 without bfloat16: numba has no bfloat16 type, so run() hands the kernel each
bf16 tensor's raw 16 bits, `tensor.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and the kernel converts with bit operations: bf16 -> fp32 is the 16 bits
shifted left by 16 and reinterpreted as float32 (exact); fp32 -> bf16 rounds to
nearest even on the bits (add 0x7FFF plus the lowest kept bit, shift right by 16; a
NaN stays a quiet NaN). One head (D elements) at a time is decoded into a float32 buffer and
its rotation built in a second, so the working set is two heads per thread.

Each token's cache row is gathered once and reused by its Hq + Hk heads (40 for
Llama-3.1-8B). PARALLEL spreads chunks of TOKENS_PER_CHUNK tokens over numba's
threads; FASTMATH (LLVM reassoc and contract only) lets the products fuse into FMAs.
The defaults are the serial kernel.
"""

import numba
import numpy as np
import torch

SEED = {
    "op_type": "rope",
    "family": "numba_token_chunks",
    "language": "numba",
    "description": (
        "NeoX RoPE on the CPU: chunks of tokens over numba threads, the cache row gathered once per token "
        "for all heads."
    ),
    "techniques": ["cpu simd", "bf16 bit conversion", "prange"],
    "definitions": ["rope_neox_*"],
}

PARAMS = {
    "TOKENS_PER_CHUNK": 16,
    "PARALLEL": False,
    "FASTMATH": False,
}

PARAM_SPACE = {
    "TOKENS_PER_CHUNK": [1, 2, 4, 8, 16, 32],
    "PARALLEL": [False, True],
    "FASTMATH": [False, True],
}

TOKENS_PER_CHUNK = PARAMS["TOKENS_PER_CHUNK"]
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
def _rotate(src, dst, cos_sin, half, x_bits, x, y_bits, y):
    _bf16_to_f32(src, x_bits)
    for i in range(half):
        c = cos_sin[i]
        s = cos_sin[half + i]
        y[i] = x[i] * c - x[half + i] * s
        y[half + i] = x[half + i] * c + x[i] * s
    _f32_to_bf16(y_bits, dst)


@numba.njit(parallel=PARAMS["PARALLEL"], fastmath=FASTMATH)
def _rope(positions, q, k, cache, q_out, k_out):  # q: (T, Hq, D), k: (T, Hk, D) bf16 bits; cache: (P, D) f32
    n_tokens, n_q_heads, head_dim = q.shape
    n_k_heads = k.shape[1]
    half = head_dim // 2
    n_chunks = (n_tokens + TOKENS_PER_CHUNK - 1) // TOKENS_PER_CHUNK
    for chunk in numba.prange(n_chunks):
        x_bits = np.empty(head_dim, np.uint32)
        x = x_bits.view(np.float32)
        y_bits = np.empty(head_dim, np.uint32)
        y = y_bits.view(np.float32)
        for t in range(chunk * TOKENS_PER_CHUNK, min(n_tokens, (chunk + 1) * TOKENS_PER_CHUNK)):
            cos_sin = cache[positions[t]]
            for h in range(n_q_heads):
                _rotate(q[t, h], q_out[t, h], cos_sin, half, x_bits, x, y_bits, y)
            for h in range(n_k_heads):
                _rotate(k[t, h], k_out[t, h], cos_sin, half, x_bits, x, y_bits, y)


def _bits(t):
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.view(torch.int16).numpy().view(np.uint16)


def run(positions, query, key, cos_sin_cache, query_out, key_out):
    if cos_sin_cache.dtype != torch.float32:
        raise TypeError(f"expected a float32 cos_sin_cache, got {cos_sin_cache.dtype}")
    _rope(
        positions.numpy(), _bits(query), _bits(key), cos_sin_cache.numpy(), _bits(query_out), _bits(key_out),
    )
