# Honest: two numba kernels, an @njit row reduction for the inverse RMS and an
# @vectorize ufunc for the scaling (numba's elementwise idiom).
import numba
import numpy as np
import torch


@numba.njit(cache=False)
def _inv_rms(x, out):
    for r in range(x.shape[0]):
        acc = 0.0
        for j in range(x.shape[1]):
            acc += x[r, j] * x[r, j]
        out[r, 0] = 1.0 / np.sqrt(acc / x.shape[1] + 1e-6)


@numba.vectorize(["float32(float32, float32, float32)"], nopython=True)
def _scale(x, inv, weight):
    return x * inv * weight


def run(x, weight):
    xs = x.numpy()
    inv = np.empty((xs.shape[0], 1), dtype=np.float32)
    _inv_rms(xs, inv)
    return torch.from_numpy(_scale(xs, inv, weight.numpy()[None, :]))
