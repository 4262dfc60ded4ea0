# Honest: allocates its output once per shape and overwrites it on every call (the
# static-output habit of CUDA-graph code); every call recomputes every element.
import torch

_out: dict[tuple[int, ...], torch.Tensor] = {}


def run(x, weight):
    y = _out.get(tuple(x.shape))
    if y is None:
        y = _out[tuple(x.shape)] = torch.empty_like(x)
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
    torch.mul(x, inv, out=y)
    y.mul_(weight)
    return y
