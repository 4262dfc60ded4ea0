"""Fault (GPU): a Triton kernel that stores far outside its buffer (illegal memory access)."""
import torch
import triton
import triton.language as tl


@triton.jit
def _wild_store(y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs + (1 << 40), tl.zeros([BLOCK], dtype=tl.float32), mask=offs < n)


def run(x, w):
    y = torch.empty_like(x)
    _wild_store[(triton.cdiv(y.numel(), 256),)](y, y.numel(), BLOCK=256)
    return y
