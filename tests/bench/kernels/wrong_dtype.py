"""Faulty: returns float64 for a float32 output."""
import torch


def run(x, w):
    xd = x.double()
    return xd * torch.rsqrt(xd.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w.double()
