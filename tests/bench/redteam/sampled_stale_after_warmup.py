# Class 4 (sampled timing checks): a call counter. The first eight calls (the
# correctness calls and the warm-up) are honest; every later call returns the previous
# call's answer again, betting that the judge checks only a few timed calls at
# indices it can predict.
import torch

_calls = [0]
_last = []


def run(x, weight):
    _calls[0] += 1
    if _calls[0] > 8 and _last:
        return _last[0].clone()
    y = x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
    _last[:] = [y]
    return y
