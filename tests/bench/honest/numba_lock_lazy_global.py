# Honest: a module-level threading.Lock guards the lazy compile of a global kernel
# (double-checked: `global _kernel`), the idiom of thread-safe library code.
import threading

import numba
import numpy as np
import torch

_lock = threading.Lock()
_kernel = None


def _build():
    @numba.njit(cache=False)
    def rows(x, weight, out):
        tokens, hidden = x.shape
        for r in range(tokens):
            acc = 0.0
            for j in range(hidden):
                acc += x[r, j] * x[r, j]
            inv = 1.0 / np.sqrt(acc / hidden + 1e-6)
            for j in range(hidden):
                out[r, j] = x[r, j] * inv * weight[j]

    return rows


def _get_kernel():
    global _kernel
    if _kernel is None:
        with _lock:
            if _kernel is None:
                _kernel = _build()
    return _kernel


def run(x, weight):
    out = torch.empty_like(x)
    _get_kernel()(x.numpy(), weight.numpy(), out.numpy())
    return out
