# Honest: @njit(cache=True), so numba writes its compiled code next to the source
# (__pycache__) and a second process loads it instead of compiling.
import numba
import numpy as np
import torch


@numba.njit(cache=True)
def _rows(x, weight, out):
    tokens, hidden = x.shape
    for r in range(tokens):
        acc = 0.0
        for j in range(hidden):
            acc += x[r, j] * x[r, j]
        inv = 1.0 / np.sqrt(acc / hidden + 1e-6)
        for j in range(hidden):
            out[r, j] = x[r, j] * inv * weight[j]


def run(x, weight):
    out = torch.empty_like(x)
    _rows(x.numpy(), weight.numpy(), out.numpy())
    return out
