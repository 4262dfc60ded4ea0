"""Faulty: returns the output transposed."""
import torch


def run(x, w):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w
    return y.t().contiguous()
