"""Exploit: declared triton, computes with torch (no kernel of its own)."""
import torch


def run(x, w):
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w
