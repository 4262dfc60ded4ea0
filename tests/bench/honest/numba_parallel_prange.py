# Honest: numba parallel=True over rows with prange, numba's default threading layer,
# two threads.
import numba
import numpy as np
import torch

numba.set_num_threads(2)


@numba.njit(parallel=True, fastmath=False, cache=False)
def _rows(x, weight, out):
    tokens, hidden = x.shape
    for r in numba.prange(tokens):
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
