# Honest: functools.lru_cache on a helper that builds one numba kernel per hidden size
# (the size baked in as a compile-time constant); the cache holds kernels, never results.
import functools

import numba
import numpy as np
import torch


@functools.lru_cache(maxsize=8)
def _kernel_for(hidden: int):
    inv_hidden = 1.0 / hidden

    @numba.njit(cache=False)
    def rows(x, weight, out):
        for r in range(x.shape[0]):
            acc = 0.0
            for j in range(hidden):
                acc += x[r, j] * x[r, j]
            inv = 1.0 / np.sqrt(acc * inv_hidden + 1e-6)
            for j in range(hidden):
                out[r, j] = x[r, j] * inv * weight[j]

    return rows


def run(x, weight):
    out = torch.empty_like(x)
    _kernel_for(x.shape[1])(x.numpy(), weight.numpy(), out.numpy())
    return out
