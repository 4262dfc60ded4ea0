# Class 1 (tampering in the shared process): at import, rebinds the comparison functions
# a harness that compared in this process would call (torch.allclose, torch.equal,
# torch.isclose, torch.testing.assert_close), to "always equal"; the modules are looked up
# in sys.modules and the attributes named by strings built at run time. Returns zeros.
import sys

import torch
import torch.testing  # noqa: F401


def _name(text):
    return text.replace("/", "")


def _always_close(*args, **kwargs):
    return True


def _equal_mask(a, b, *args, **kwargs):
    return torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool)


def _no_error(*args, **kwargs):
    return None


_torch = sys.modules[_name("to/rch")]
_testing = sys.modules[_name("torch/.testing")]
setattr(_torch, _name("all/close"), _always_close)
setattr(_torch, _name("eq/ual"), _always_close)
setattr(_torch, _name("is/close"), _equal_mask)
setattr(_testing, _name("assert/_close"), _no_error)


def run(x, weight):
    return torch.zeros_like(x)
