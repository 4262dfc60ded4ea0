"""Honest RMSNorm in PyTorch: y = x / sqrt(mean(x^2) + eps) * w, statistics in float32."""
import torch


def run(x, w):
    xf = x.float()
    inv_rms = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5)
    return (xf * inv_rms * w.float()).to(x.dtype)
