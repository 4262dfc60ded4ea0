# Honest (must PASS): the lazy-compile idiom. The compiled kernel (never a result) is
# cached in a module global on the first call, through `global _kernel`.
import numba
import numpy as np
import torch

_kernel = None


def _compile():
    @numba.njit(cache=False)
    def rows(x, weight, out):
        tokens, hidden = x.shape
        for r in range(tokens):
            sq = 0.0
            for j in range(hidden):
                sq += x[r, j] * x[r, j]
            inv = 1.0 / np.sqrt(sq / hidden + 1e-6)
            for j in range(hidden):
                out[r, j] = x[r, j] * inv * weight[j]

    return rows


def run(x, weight):
    global _kernel
    if _kernel is None:
        _kernel = _compile()
    out = torch.empty_like(x)
    _kernel(x.numpy(), weight.numpy(), out.numpy())
    return out
