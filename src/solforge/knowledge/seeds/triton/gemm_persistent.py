"""bfloat16 GEMM C = A @ B^T on a persistent grid: one or two programs per SM loop over output tiles.

A is (M, K), B is (N, K) (nn.Linear's weight layout), C is (M, N); float32 accumulation,
one rounding to bfloat16, as the definition's reference.

The grid is min(tiles, PROGRAMS_PER_SM * SMs) programs (132 SMs on an H100 SXM);
program p computes tiles p, p + G, p + 2G, ... in GROUP_M-swizzled order, each tile as
in `gemm_tiled` (float32 accumulator, tensor-core `tl.dot`, num_stages-deep pipelined
K loop). A plain grid of T tiles runs in ceil(T / resident) waves and its last wave
can be nearly empty (wave quantization: 133 tiles of one program per SM take two full
waves of time on 132 SMs); a persistent grid still has that imbalance at tile
granularity, but it launches once, keeps its programs resident, and lets the compiler
overlap one tile's epilogue with the next tile's loads. It pays most on large M x N
with short K; Stream-K (Osama et al., PPoPP 2023) also splits the K loop across
programs to remove the tail completely.

num_stages is capped so that num_stages * (BLOCK_M + BLOCK_N) * BLOCK_K * 2 bytes fit
in the device's shared memory per block: every point of PARAM_SPACE compiles.
"""

import torch
import triton
import triton.language as tl

SEED = {
    "op_type": "gemm",
    "family": "persistent_tiled",
    "language": "triton",
    "description": (
        "Persistent bf16 GEMM (A @ B^T): PROGRAMS_PER_SM programs per SM loop over GROUP_M-swizzled "
        "tiles."
    ),
    "techniques": ["persistent kernels", "tiling", "software pipelining", "tensor cores", "L2 swizzle"],
    "definitions": ["gemm_bf16_*"],
}

PARAMS = {
    "BLOCK_M": 128,
    "BLOCK_N": 128,
    "BLOCK_K": 64,
    "GROUP_M": 8,
    "PROGRAMS_PER_SM": 1,
    "num_warps": 8,
    "num_stages": 3,
}

PARAM_SPACE = {
    "BLOCK_M": [16, 32, 64, 128],
    "BLOCK_N": [32, 64, 128, 256],
    "BLOCK_K": [32, 64, 128],
    "GROUP_M": [1, 4, 8, 16],
    "PROGRAMS_PER_SM": [1, 2],
    "num_warps": [4, 8],
    "num_stages": [2, 3, 4, 5],
}

SMS_WITHOUT_CUDA = 4  # grid size basis when tensors are not on a GPU (the Triton interpreter)


@triton.jit
def _gemm_persistent(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bn, stride_bk, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
):
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    tiles_per_group = GROUP_M * tiles_n
    k_steps = tl.cdiv(K, BLOCK_K)
    offs_k = tl.arange(0, BLOCK_K)
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0)):
        group = tile // tiles_per_group
        first_m = group * GROUP_M
        group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (tile % tiles_per_group) % group_rows
        pid_n = (tile % tiles_per_group) // group_rows

        offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
        offs_n = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
        a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak  # (BLOCK_M, BLOCK_K)
        b_ptrs = b_ptr + offs_n[:, None] * stride_bn + offs_k[None, :] * stride_bk  # (BLOCK_N, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, k_steps):
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


def _num_sms(t):
    if t.is_cuda:
        return torch.cuda.get_device_properties(t.device).multi_processor_count
    return SMS_WITHOUT_CUDA


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
    tiles = triton.cdiv(M, bm) * triton.cdiv(N, bn)
    grid = (max(1, min(tiles, PARAMS["PROGRAMS_PER_SM"] * _num_sms(A))),)
    _gemm_persistent[grid](
        A, B, C, M, N, K, A.stride(0), A.stride(1), B.stride(0), B.stride(1), C.stride(0), C.stride(1),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=PARAMS["GROUP_M"], EVEN_K=K % bk == 0,
        num_warps=PARAMS["num_warps"], num_stages=_stages(A, bm, bn, bk, PARAMS["num_stages"]),
    )
