# Honest (must PASS): a plain numba kernel, one row per outer iteration, no threads.
import numba
import numpy as np
import torch


@numba.njit(cache=False)
def _rows(x, weight, out):
    tokens, hidden = x.shape
    for r in range(tokens):
        sq = 0.0
        for j in range(hidden):
            sq += x[r, j] * x[r, j]
        inv = 1.0 / np.sqrt(sq / hidden + 1e-6)
        for j in range(hidden):
            out[r, j] = x[r, j] * inv * weight[j]


def run(x, weight):
    out = torch.empty_like(x)
    _rows(x.numpy(), weight.numpy(), out.numpy())
    return out
