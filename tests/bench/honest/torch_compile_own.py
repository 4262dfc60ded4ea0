# Honest: torch.compile of its own RMSNorm function (inductor generates a fused C++ loop
# on the CPU); compiled on the first call, shapes dynamic.
import torch


def _rmsnorm(x, weight):
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
    return x * inv * weight


_compiled = torch.compile(_rmsnorm, dynamic=True)


def run(x, weight):
    return _compiled(x, weight)
