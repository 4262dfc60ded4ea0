"""SwiGLU's silu(gate) * up over a fused [gate | up] row: one read of each half, one write.

output = gate / (1 + exp(-gate)) * up in float32, rounded once to the output dtype, as
the definition's reference (for gate < -88, exp(-gate) overflows to inf and silu gives
-0, its limit). The grid is (T, cdiv(I, BLOCK_SIZE)): each program reads BLOCK_SIZE
contiguous gate values and the BLOCK_SIZE up values I columns further along the same
row, both coalesced, and writes BLOCK_SIZE outputs. Purely memory-bound: 3 * T * I * 2
bytes for bfloat16 (6 bytes per output), one exponential per output.

The intermediate size I = 14336 is divisible by 16, which Triton's integer
specialization sees, so the up half's loads stay 128-bit aligned and vectorized.
BLOCK_SIZE / (32 * num_warps) elements per thread: 8 bfloat16 fill a 128-bit load.
"""

import triton
import triton.language as tl

SEED = {
    "op_type": "activation",
    "family": "elementwise_2d_grid",
    "language": "triton",
    "description": (
        "silu(gate) * up on a (rows, column blocks) grid, float32 math, one read and one write per "
        "element."
    ),
    "techniques": ["fusion", "vectorized access", "coalescing"],
    "definitions": ["silu_and_mul_i*"],
}

PARAMS = {
    "BLOCK_SIZE": 1024,
    "num_warps": 4,
}

PARAM_SPACE = {
    "BLOCK_SIZE": [256, 512, 1024, 2048, 4096],
    "num_warps": [1, 2, 4, 8, 16],
}


@triton.jit
def _silu_and_mul(gu_ptr, out_ptr, n_inter, gu_row_stride, out_row_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_inter
    gu_row = gu_ptr + row * gu_row_stride
    gate = tl.load(gu_row + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    up = tl.load(gu_row + n_inter + cols, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def run(gate_up, output):
    n_rows, n_inter = output.shape  # (T, I); gate_up is (T, 2I)
    block = PARAMS["BLOCK_SIZE"]
    _silu_and_mul[(n_rows, triton.cdiv(n_inter, block))](
        gate_up, output, n_inter, gate_up.stride(0), output.stride(0), BLOCK=block, num_warps=PARAMS["num_warps"],
    )
