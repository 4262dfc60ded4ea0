"""SwiGLU's silu(gate) * up on the CPU with numba: (row, column block) jobs over numba's threads.

output = gate / (1 + exp(-gate)) * up in float32, rounded once to bfloat16, as the
definition's reference (gate < -88 overflows exp(-gate) to inf and gives -0, its
limit). gate_up is (T, 2I), [gate | up] along the last dimension; output is (T, I).

bfloat16 without bfloat16: numba has no bfloat16 type, so run() hands the kernel each
bf16 tensor's raw 16 bits, `tensor.view(torch.int16).numpy().view(np.uint16)`
(zero-copy), and the kernel converts with bit operations: bf16 -> fp32 is the 16 bits
shifted left by 16 and reinterpreted as float32 (exact); fp32 -> bf16 rounds to
nearest even on the bits (add 0x7FFF plus the lowest kept bit, shift right by 16; a
NaN stays a quiet NaN). Each job decodes BLOCK_COLS gate values and the matching up values into
two float32 buffers, computes, and encodes its block of output.

Jobs are (row, block) pairs, so a single decode token (T = 1, I = 14336) still spreads
over all threads when BLOCK_COLS is small; each job pays for its two small buffers,
so too small a block costs more than it spreads. The exponential is a scalar libm
call per element (LLVM does not vectorize it without a vector math library);
FASTMATH is LLVM's reassoc and contract only. The defaults are the serial kernel.
"""

import numba
import numpy as np
import torch

SEED = {
    "op_type": "activation",
    "family": "numba_blocked_elementwise",
    "language": "numba",
    "description": (
        "silu(gate) * up on the CPU: (row, column block) jobs over numba threads, bf16 decoded per block, "
        "float32 math."
    ),
    "techniques": ["fusion", "cpu simd", "bf16 bit conversion", "prange"],
    "definitions": ["silu_and_mul_i*"],
}

PARAMS = {
    "BLOCK_COLS": 16384,
    "PARALLEL": False,
    "FASTMATH": False,
}

PARAM_SPACE = {
    "BLOCK_COLS": [512, 1024, 4096, 16384],
    "PARALLEL": [False, True],
    "FASTMATH": [False, True],
}

BLOCK_COLS = PARAMS["BLOCK_COLS"]
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


@numba.njit(parallel=PARAMS["PARALLEL"], fastmath=FASTMATH)
def _silu_and_mul(gate_up, out):  # gate_up: (T, 2I), out: (T, I), bf16 bits as uint16
    n_rows, n_inter = out.shape
    n_blocks = (n_inter + BLOCK_COLS - 1) // BLOCK_COLS
    for job in numba.prange(n_rows * n_blocks):
        row, block = job // n_blocks, job % n_blocks
        start, end = block * BLOCK_COLS, min(n_inter, (block + 1) * BLOCK_COLS)
        n = end - start
        gate_bits = np.empty(n, np.uint32)
        gate = gate_bits.view(np.float32)
        up_bits = np.empty(n, np.uint32)
        up = up_bits.view(np.float32)
        _bf16_to_f32(gate_up[row, start:end], gate_bits)
        _bf16_to_f32(gate_up[row, n_inter + start:n_inter + end], up_bits)
        for i in range(n):
            g = gate[i]
            gate[i] = g / (np.float32(1.0) + np.exp(-g)) * up[i]
        _f32_to_bf16(gate_bits, out[row, start:end])


def _bits(t):
    if t.dtype != torch.bfloat16:
        raise TypeError(f"expected a bfloat16 tensor, got {t.dtype}")
    return t.view(torch.int16).numpy().view(np.uint16)


def run(gate_up, output):
    _silu_and_mul(_bits(gate_up), _bits(output))
