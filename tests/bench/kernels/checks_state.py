"""Honest RMSNorm that fails if an earlier solution's state reached its process."""
import numpy
import torch


def run(x, w):
    if getattr(numpy, "solforge_left_by_a_solution", False) or torch.get_default_dtype() != torch.float32:
        raise RuntimeError("state of an earlier solution is visible here")
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w.float()).to(x.dtype)
