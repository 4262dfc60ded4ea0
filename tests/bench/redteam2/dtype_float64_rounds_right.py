# dtype game (want INCORRECT_DTYPE): returns the float64 result, whose values round to
# the float32 reference exactly, instead of float32.
import torch


def run(x, weight):
    x64 = x.double()
    return x64 * torch.rsqrt(x64.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight.double()
