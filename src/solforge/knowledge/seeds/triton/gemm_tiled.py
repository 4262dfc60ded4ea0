"""bfloat16 GEMM C = A @ B^T, one output tile per program, tiles ordered in GROUP_M swizzled groups.

A is (M, K), B is (N, K) (nn.Linear's weight layout), C is (M, N); products accumulate
in float32 on the tensor cores and C is rounded once to bfloat16, as the definition's
reference (a bfloat16 matmul with float32 accumulation).

Each program computes a BLOCK_M x BLOCK_N tile of C, stepping along K by BLOCK_K: per
step it loads (BLOCK_M + BLOCK_N) * BLOCK_K * 2 bytes and performs
2 * BLOCK_M * BLOCK_N * BLOCK_K FLOPs, so larger tiles raise the arithmetic intensity
seen by L2 and shared memory (128 x 128 tiles: 64 FLOP per byte). `tl.dot` compiles to
the tensor-core MMA of the target (warpgroup MMA, wgmma, on Hopper when num_warps is a
multiple of 4), and `num_stages` buffers let the loads of step k + 1 fly while step k
multiplies (software pipelining; cp.async on Ampere, TMA-backed on Hopper when Triton
chooses to). Program ids are remapped so that GROUP_M consecutive programs cover a
column of tiles: they share B tiles in L2 while it is hot (the L2 swizzle of Triton's
matmul tutorial). Rows and columns past M and N wrap (offsets modulo M and N) so that
loads need no mask, and the store is masked; K is masked only when BLOCK_K does not
divide it (EVEN_K).

num_stages is capped so that the stages' tiles, num_stages * (BLOCK_M + BLOCK_N) *
BLOCK_K * 2 bytes, fit in the device's shared memory per block (227 KB on an H100):
every point of PARAM_SPACE compiles.
"""

import torch
import triton
import triton.language as tl

SEED = {
    "op_type": "gemm",
    "family": "tiled_grouped",
    "language": "triton",
    "description": (
        "Tiled bf16 GEMM (A @ B^T), float32 accumulation, GROUP_M L2 swizzle, software-pipelined K loop."
    ),
    "techniques": ["tiling", "software pipelining", "tensor cores", "L2 swizzle"],
    "definitions": ["gemm_bf16_*"],
}

PARAMS = {
    "BLOCK_M": 128,
    "BLOCK_N": 128,
    "BLOCK_K": 64,
    "GROUP_M": 8,
    "num_warps": 8,
    "num_stages": 3,
}

PARAM_SPACE = {
    "BLOCK_M": [16, 32, 64, 128],
    "BLOCK_N": [32, 64, 128, 256],
    "BLOCK_K": [32, 64, 128],
    "GROUP_M": [1, 4, 8, 16],
    "num_warps": [4, 8],
    "num_stages": [2, 3, 4, 5],
}


@triton.jit
def _gemm_tiled(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bn, stride_bk, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
):
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    # GROUP_M rows of tiles are walked column by column, so neighbours share B tiles in L2
    tiles_per_group = GROUP_M * tiles_n
    group = pid // tiles_per_group
    first_m = group * GROUP_M
    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % tiles_per_group) % group_rows
    pid_n = (pid % tiles_per_group) // group_rows

    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak  # (BLOCK_M, BLOCK_K)
    b_ptrs = b_ptr + offs_n[:, None] * stride_bn + offs_k[None, :] * stride_bk  # (BLOCK_N, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        acc = tl.dot(a, tl.trans(b), acc)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))


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
    grid = (triton.cdiv(M, bm) * triton.cdiv(N, bn),)
    _gemm_tiled[grid](
        A, B, C, M, N, K, A.stride(0), A.stride(1), B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=PARAMS["GROUP_M"], EVEN_K=K % bk == 0,
        num_warps=PARAMS["num_warps"], num_stages=_stages(A, bm, bn, bk, PARAMS["num_stages"]),
    )
