"""Faulty: normalizes `x` in place and returns it (the output is right, the input is gone)."""
import torch


def run(x, w):
    x.mul_(torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5)).mul_(w)
    return x.clone()
