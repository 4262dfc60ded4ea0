# Honest: code generation with exec. The kernel's source is generated per hidden size
# (the row loop unrolled by 4) and exec'd into a fresh namespace, then jitted with numba.
import numba
import numpy as np
import torch

_TEMPLATE = '''
def rows(x, weight, out):
    for r in range(x.shape[0]):
        acc0 = 0.0
        acc1 = 0.0
        acc2 = 0.0
        acc3 = 0.0
        for j in range(0, {hidden}, 4):
            acc0 += x[r, j] * x[r, j]
            acc1 += x[r, j + 1] * x[r, j + 1]
            acc2 += x[r, j + 2] * x[r, j + 2]
            acc3 += x[r, j + 3] * x[r, j + 3]
        inv = 1.0 / np.sqrt((acc0 + acc1 + acc2 + acc3) / {hidden} + 1e-6)
        for j in range({hidden}):
            out[r, j] = x[r, j] * inv * weight[j]
'''
_kernels = {}


def _kernel(hidden):
    if hidden not in _kernels:
        namespace = {"np": np}
        exec(_TEMPLATE.format(hidden=hidden), namespace)
        _kernels[hidden] = numba.njit(cache=False)(namespace["rows"])
    return _kernels[hidden]


def run(x, weight):
    out = torch.empty_like(x)
    _kernel(x.shape[1])(x.numpy(), weight.numpy(), out.numpy())
    return out
