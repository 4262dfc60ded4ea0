# Class 6 (forbidden call reached indirectly): the forbidden function is taken out of the
# namespace of torch.nn.functional by a key the source never spells.
import torch.nn.functional as F


def _key():
    return "_".join(["rms", "norm"])


def run(x, weight):
    fn = vars(F)[_key()]
    return fn(x, (x.shape[-1],), weight, 1e-6)
