# Honest (must PASS): plain PyTorch, a fresh output every call.
import torch


def run(x, weight):
    inv_rms = torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6)  # (tokens, 1)
    return x * inv_rms * weight
