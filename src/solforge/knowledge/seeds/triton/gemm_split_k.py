"""bfloat16 GEMM C = A @ B^T with the K loop split across SPLIT_K programs: for decode-sized M.

A is (M, K), B is (N, K) (nn.Linear's weight layout), C is (M, N); float32 accumulation,
one rounding to bfloat16, as the definition's reference.

At decode (M = 1 to 32 tokens) C has few tiles: N = 4096 in 128-wide tiles is 32
programs for an H100's 132 SMs, and each walks all of K = 4096 or 14336 alone. Split-K
gives each tile SPLIT_K programs, each over a contiguous share of K's blocks, so that
tiles * SPLIT_K programs stream the weight B (the dominant bytes: N * K * 2) in
parallel. Each program writes its float32 partial tile to a (SPLIT_K, M, N) workspace
and a second kernel sums the partials in a fixed order (deterministic, unlike atomic
adds) and rounds once to bfloat16. The price is 8 * SPLIT_K * M * N bytes of extra
traffic and a second launch, negligible when M is small and ruinous when it is large:
with SPLIT_K = 1 the kernel stores C directly and is a plain tiled GEMM.
"""

import torch
import triton
import triton.language as tl

SEED = {
    "op_type": "gemm",
    "family": "split_k",
    "language": "triton",
    "description": (
        "Split-K bf16 GEMM (A @ B^T): SPLIT_K programs per output tile over shares of K, float32 partials "
        "summed deterministically."
    ),
    "techniques": ["split-K", "tiling", "software pipelining", "tensor cores", "occupancy"],
    "definitions": ["gemm_bf16_*"],
}

PARAMS = {
    "SPLIT_K": 4,
    "BLOCK_M": 32,
    "BLOCK_N": 64,
    "BLOCK_K": 128,
    "num_warps": 4,
    "num_stages": 4,
}

PARAM_SPACE = {
    "SPLIT_K": [1, 2, 4, 8, 16],
    "BLOCK_M": [16, 32, 64],
    "BLOCK_N": [32, 64, 128],
    "BLOCK_K": [32, 64, 128],
    "num_warps": [4, 8],
    "num_stages": [2, 3, 4, 5],
}

REDUCE_BLOCK = 1024  # elements of C per program of the partial-sum kernel


@triton.jit
def _gemm_split_k(
    a_ptr, b_ptr, out_ptr, M, N, K, k_blocks_per_split,
    stride_am, stride_ak, stride_bn, stride_bk, stride_om, stride_on, stride_os,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr,
):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    tiles_m = tl.cdiv(M, BLOCK_M)
    pid_m = pid % tiles_m  # consecutive programs share the B tile of one column
    pid_n = pid // tiles_m
    k_begin = split * k_blocks_per_split
    k_end = tl.minimum(k_begin + k_blocks_per_split, tl.cdiv(K, BLOCK_K))

    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = k_begin * BLOCK_K + tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak  # (BLOCK_M, BLOCK_K)
    b_ptrs = b_ptr + offs_n[:, None] * stride_bn + offs_k[None, :] * stride_bk  # (BLOCK_N, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(k_begin, k_end):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=tl.arange(0, BLOCK_K)[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=tl.arange(0, BLOCK_K)[None, :] < k_left, other=0.0)
        acc = tl.dot(a, tl.trans(b), acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    out_ptrs = out_ptr + split.to(tl.int64) * stride_os + rows[:, None] * stride_om + cols[None, :] * stride_on
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))


@triton.jit
def _sum_splits(ws_ptr, c_ptr, M, N, stride_cm, stride_cn, SPLITS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M * N
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for s in tl.static_range(SPLITS):  # a fixed order: the same sum on every call
        acc += tl.load(ws_ptr + s * M * N + offs, mask=mask, other=0.0)
    tl.store(c_ptr + (offs // N) * stride_cm + (offs % N) * stride_cn, acc.to(c_ptr.dtype.element_ty), mask=mask)


def _stages(a, block_m, block_n, block_k, wanted):
    """`wanted` pipeline stages, fewer if their tiles would overflow shared memory."""
    if a.is_cuda:
        index = a.device.index if a.device.index is not None else torch.cuda.current_device()
        props = triton.runtime.driver.active.utils.get_device_properties(index)
    else:
        # no GPU tensor: a cross-compile's stand-in driver knows the target's shared memory
        # (solforge compile); the interpreter has no driver and nothing to fit
        try:
            props = triton.runtime.driver.active.utils.get_device_properties(0)
        except Exception:
            return wanted
    stage_bytes = (block_m + block_n) * block_k * a.element_size()
    return max(1, min(wanted, props["max_shared_mem"] // stage_bytes))


def run(A, B, C):
    M, K = A.shape  # A: (M, K)
    N = B.shape[0]  # B: (N, K)
    bm, bn, bk = PARAMS["BLOCK_M"], PARAMS["BLOCK_N"], PARAMS["BLOCK_K"]
    k_blocks = triton.cdiv(K, bk)
    per_split = triton.cdiv(k_blocks, min(PARAMS["SPLIT_K"], k_blocks))
    splits = triton.cdiv(k_blocks, per_split)  # no empty split
    if splits == 1:
        out, strides = C, (C.stride(0), C.stride(1), 0)
    else:
        out = torch.empty((splits, M, N), dtype=torch.float32, device=A.device)  # float32 partial tiles
        strides = (out.stride(1), out.stride(2), out.stride(0))
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn), splits)
    _gemm_split_k[grid](
        A, B, out, M, N, K, per_split, A.stride(0), A.stride(1), B.stride(0), B.stride(1), *strides,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, EVEN_K=K % bk == 0,
        num_warps=PARAMS["num_warps"], num_stages=_stages(A, bm, bn, bk, PARAMS["num_stages"]),
    )
    if splits > 1:
        _sum_splits[(triton.cdiv(M * N, REDUCE_BLOCK),)](
            out, C, M, N, C.stride(0), C.stride(1), SPLITS=splits, BLOCK=REDUCE_BLOCK, num_warps=4,
        )
