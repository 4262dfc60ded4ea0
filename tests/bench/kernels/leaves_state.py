"""Honest RMSNorm that leaves a mark in a library it imported (numpy), and a torch setting."""
import numpy
import torch

numpy.solforge_left_by_a_solution = True
torch.set_default_dtype(torch.float64)


def run(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w.float()).to(x.dtype)
