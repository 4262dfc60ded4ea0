# Class 7 (decoy): declared triton. Each call launches one token Triton kernel (copies
# the weight) and does all the RMSNorm math in torch.
import torch
import triton
import triton.language as tl


@triton.jit
def _copy(src, dst, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)


def run(x, weight):
    w = torch.empty_like(weight)
    _copy[(1,)](weight, w, weight.numel(), BLOCK=64)
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * w
