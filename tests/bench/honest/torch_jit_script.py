# Honest: the kernel as a TorchScript function (torch.jit.script of its own math), the
# style of code written before torch.compile.
import torch


@torch.jit.script
def _rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return x * inv * weight


def run(x, weight):
    return _rmsnorm(x, weight, 1e-6)
