# Honest: the math in NumPy (einsum for the row sums of squares), on zero-copy views of
# the tensors.
import numpy as np
import torch


def run(x, weight):
    xs, ws = x.numpy(), weight.numpy()
    ms = np.einsum("th,th->t", xs, xs, dtype=np.float64) / xs.shape[1]  # (tokens,)
    inv = (1.0 / np.sqrt(ms + 1e-6)).astype(np.float32)
    y = np.empty_like(xs)
    np.multiply(xs, inv[:, None], out=y)
    np.multiply(y, ws[None, :], out=y)
    return torch.from_numpy(y)
