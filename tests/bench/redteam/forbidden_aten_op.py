# Class 6 (forbidden call reached indirectly): the aten op behind the forbidden
# torch.rms_norm, looked up on torch.ops.aten by a name the source never spells.
import torch


def _op_name():
    return "_".join(["rms", "norm"])


def run(x, weight):
    op = getattr(torch.ops.aten, _op_name())
    return op(x, [x.shape[-1]], weight, 1e-6)
