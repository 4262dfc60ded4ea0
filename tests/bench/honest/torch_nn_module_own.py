# Honest: the kernel as a user-defined nn.Module (its own forward, not torch's RMSNorm),
# built once at import and called with the weight copied in under no_grad.
import torch
from torch import nn


class MyRMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * inv * self.weight


_layers: dict[int, MyRMSNorm] = {}


@torch.no_grad()
def run(x, weight):
    layer = _layers.setdefault(x.shape[-1], MyRMSNorm(x.shape[-1]))
    layer.weight.copy_(weight)
    return layer(x)
