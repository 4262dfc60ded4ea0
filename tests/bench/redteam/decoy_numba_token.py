# Class 7 (decoy): declared numba. Each call makes one token @njit call (a checksum of
# the weight) and does all the RMSNorm math in torch.
import numba
import torch


@numba.njit(cache=False)
def _checksum(w):
    s = 0.0
    for v in w:
        s += v
    return s


def run(x, weight):
    _checksum(weight.numpy())
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
