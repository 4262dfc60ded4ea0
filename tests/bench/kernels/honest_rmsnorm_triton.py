"""Honest RMSNorm in Triton: one program per row, the whole row in one block."""
import torch
import triton
import triton.language as tl


@triton.jit
def _rmsnorm_kernel(x_ptr, w_ptr, y_ptr, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    inv_rms = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    tl.store(y_ptr + row * n_cols + cols, x * inv_rms * w, mask=mask)


def run(x, w):
    y = torch.empty_like(x)
    rows, cols = x.shape
    _rmsnorm_kernel[(rows,)](x, w, y, cols, 1e-5, BLOCK=triton.next_power_of_2(cols))
    return y
