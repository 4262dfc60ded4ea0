# Class 1 (tampering in the shared process): registers CPU kernels for existing aten ops
# (sub, abs, isclose, eq) through torch.library under a library name assembled at run
# time, so that every comparison made in this process sees no difference; then returns
# zeros.
import torch


def _ns():
    return "".join(reversed("neta"))


_lib = torch.library.Library(_ns(), "IMPL")


def _sub(a, b, *, alpha=1):
    return torch.zeros(torch.broadcast_shapes(a.shape, b.shape), dtype=a.dtype)


def _abs(a):
    return torch.zeros(a.shape, dtype=a.dtype)


def _isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    return torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)


_lib.impl("sub.Tensor", _sub, "CPU")
_lib.impl("abs", _abs, "CPU")
_lib.impl("isclose", _isclose, "CPU")


def run(x, weight):
    return torch.zeros_like(x)
