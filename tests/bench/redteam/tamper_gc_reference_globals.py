# Class 1 (tampering in the shared process): walks the heap with gc for the
# definition's reference function (a `run` whose module is the harness's reference
# module) and rewrites its globals so that `torch` there is a stand-in whose
# arithmetic returns zeros; then returns zeros itself.
import gc
import types

import torch


class _Zeros:
    def __getattr__(self, name):
        return lambda *a, **k: torch.zeros(1)


def _poison_reference():
    hit = 0
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__name__ == "run" and "reference" in (obj.__module__ or ""):
            getattr(obj, "".join(["__glo", "bals__"])).update(torch=_Zeros())
            hit += 1
    return hit


_poison_reference()


def run(x, weight):
    return torch.zeros_like(x)
