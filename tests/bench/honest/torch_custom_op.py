# Honest: the kernel registered as a torch custom op of its own namespace (what people do
# to make a kernel torch.compile-safe), with a fake (meta) implementation.
import torch


@torch.library.custom_op("honest_idioms::rmsnorm", mutates_args=())
def rmsnorm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
    return x * inv * weight


@rmsnorm.register_fake
def _(x, weight):
    return torch.empty_like(x)


def run(x, weight):
    return rmsnorm(x, weight)
