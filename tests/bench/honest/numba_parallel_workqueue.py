# Honest: numba parallel=True with prange on the 'workqueue' threading layer, chosen before
# the first parallel call (numba.config.THREADING_LAYER), as its users are told to.
import numba
import numpy as np
import torch

numba.config.THREADING_LAYER = "workqueue"


@numba.njit(parallel=True, cache=False)
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
