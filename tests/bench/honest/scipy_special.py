# Honest: imports SciPy (BLAS threads, many C extensions) and uses scipy.linalg's row
# norms for the sum of squares.
import numpy as np
import scipy.linalg
import scipy.special  # noqa: F401  (imported as a real module would, for its ufuncs)
import torch


def run(x, weight):
    xs = x.numpy().astype(np.float64)
    norms = scipy.linalg.norm(xs, axis=1)  # (tokens,)
    inv = 1.0 / np.sqrt(norms * norms / xs.shape[1] + 1e-6)
    y = xs * inv[:, None] * weight.numpy().astype(np.float64)[None, :]
    return torch.from_numpy(y.astype(np.float32))
