# Honest (must PASS): `threading` imported only for a Lock that guards a lazy compile
# (the usual way to make a kernel cache safe to call from several threads). No thread
# is ever started.
import threading

import numba
import numpy as np
import torch

_lock = threading.Lock()
_compiled = {}


def _kernel(dtype_name):
    with _lock:
        if dtype_name not in _compiled:
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

            _compiled[dtype_name] = rows
        return _compiled[dtype_name]


def run(x, weight):
    out = torch.empty_like(x)
    _kernel(str(x.dtype))(x.numpy(), weight.numpy(), out.numpy())
    return out
