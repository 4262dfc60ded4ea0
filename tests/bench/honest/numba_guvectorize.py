# Honest: a numba generalized ufunc (@guvectorize), one row per kernel instance, the
# layout signature "(n),(n)->(n)" broadcasting over the rows.
import numba
import numpy as np
import torch


@numba.guvectorize(["void(float32[:], float32[:], float32[:])"], "(n),(n)->(n)", nopython=True)
def _row(x, weight, out):
    acc = 0.0
    for j in range(x.shape[0]):
        acc += x[j] * x[j]
    inv = 1.0 / np.sqrt(acc / x.shape[0] + 1e-6)
    for j in range(x.shape[0]):
        out[j] = x[j] * inv * weight[j]


def run(x, weight):
    out = torch.empty_like(x)
    _row(x.numpy(), weight.numpy(), out.numpy())
    return out
