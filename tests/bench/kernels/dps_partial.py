"""Faulty, destination-passing: writes only the first half of the rows."""
import torch


def run(x, w, y):
    half = max(1, x.shape[0] // 2)
    xf = x[:half].float()
    y[:half].copy_(xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w)
