# Honest: destination-passing style with numba: the kernel writes the preallocated `y`
# through its NumPy view.
import numba
import numpy as np


@numba.njit(cache=False)
def _rows(x, weight, out):
    tokens, hidden = x.shape
    for r in range(tokens):
        acc = 0.0
        for j in range(hidden):
            acc += x[r, j] * x[r, j]
        inv = 1.0 / np.sqrt(acc / hidden + 1e-6)
        for j in range(hidden):
            out[r, j] = x[r, j] * inv * weight[j]


def run(x, weight, y):
    _rows(x.numpy(), weight.numpy(), y.numpy())
