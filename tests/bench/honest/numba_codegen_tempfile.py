# Honest: code generation. The kernel's source is generated per hidden size (the row loop
# unrolled by 4), written to a temporary directory and imported, then jitted with numba.
import importlib.util
import os
import tempfile

import torch

_TEMPLATE = '''
import numba
import numpy as np


@numba.njit(cache=False)
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
_dir = tempfile.mkdtemp(prefix="honest-codegen-")


def _kernel(hidden):
    if hidden not in _kernels:
        assert hidden % 4 == 0
        path = os.path.join(_dir, f"rmsnorm_h{hidden}.py")
        with open(path, "w") as f:
            f.write(_TEMPLATE.format(hidden=hidden))
        spec = importlib.util.spec_from_file_location(f"honest_codegen_h{hidden}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _kernels[hidden] = module.rows
    return _kernels[hidden]


def run(x, weight):
    out = torch.empty_like(x)
    _kernel(x.shape[1])(x.numpy(), weight.numpy(), out.numpy())
    return out
