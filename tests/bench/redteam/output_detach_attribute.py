# Class 5 (output objects): returns an uninitialized tensor whose instance attributes
# `detach`, `clone`, `cpu`, `contiguous` and `numpy` do the real work, so that a harness
# that reads the output through one of them would run the work after its clock stopped.
import torch


def _norm(x, weight):
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight


def run(x, weight):
    y = torch.empty_like(x)

    def later(*args, **kwargs):
        return _norm(x, weight)

    for name in ("detach", "clone", "cpu", "contiguous", "numpy", "float", "to"):
        setattr(y, name, later)
    return y
