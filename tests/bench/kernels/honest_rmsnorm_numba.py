"""Honest RMSNorm with numba: one row per prange iteration."""
import numba
import numpy as np
import torch


@numba.njit(parallel=True, cache=False)
def _rmsnorm(x, w, y, eps):
    rows, cols = x.shape
    for r in numba.prange(rows):
        acc = 0.0
        for c in range(cols):
            acc += x[r, c] * x[r, c]
        inv = 1.0 / np.sqrt(acc / cols + eps)
        for c in range(cols):
            y[r, c] = x[r, c] * inv * w[c]


def run(x, w):
    y = torch.empty_like(x)
    _rmsnorm(x.numpy(), w.numpy(), y.numpy(), 1e-5)
    return y
