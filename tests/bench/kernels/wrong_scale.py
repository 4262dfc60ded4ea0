"""Faulty: forgets the weight (multiplies by 1 instead of w)."""
import torch


def run(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5)).to(x.dtype)
