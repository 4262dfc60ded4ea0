"""Honest RMSNorm that fails loudly if it can see a secret of the parent's environment."""
import os

import torch


def run(x, w):
    leaked = [k for k in os.environ if "API_KEY" in k]
    with open("/proc/self/environ", "rb") as f:
        if b"API_KEY" in f.read():
            leaked.append("/proc/self/environ")
    if leaked:
        raise RuntimeError(f"leaked: {leaked}")
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w.float()).to(x.dtype)
