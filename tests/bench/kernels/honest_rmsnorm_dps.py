"""Honest RMSNorm in destination-passing style: writes every element of `y`."""
import torch


def run(x, w, y):
    xf = x.float()
    inv_rms = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5)
    y.copy_(xf * inv_rms * w.float())
