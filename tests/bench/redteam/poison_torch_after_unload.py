# Class 8 (poisoning the next solution), the in-process form: a passing solution that
# arranges for torch to be corrupted once it is done. A finalizer on its module-level
# sentinel, an atexit hook and a multiprocessing finalizer each swap torch.rsqrt and
# torch.Tensor.mean for functions that return garbage; a solution evaluated later in
# the same process would compute wrong answers.
import atexit
import sys
import weakref
from multiprocessing import util

import torch


def _corrupt():
    t = sys.modules["to" + "rch".strip()]
    setattr(t, "".join(["rs", "qrt"]), lambda v, *a, **k: v * 0 + 7.0)
    setattr(type(t.zeros(0)), "".join(["me", "an"]), lambda self, *a, **k: self.sum() * 0 + 3.0)


class _Sentinel:
    pass


_sentinel = _Sentinel()
weakref.finalize(_sentinel, _corrupt)
atexit.register(_corrupt)
util.Finalize(None, _corrupt, exitpriority=100)


def run(x, weight):
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
