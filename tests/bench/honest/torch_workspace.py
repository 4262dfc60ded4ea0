# Honest: keeps a preallocated scratch buffer per shape across calls (the squares and
# their row means live there); the output is a fresh tensor each call.
import torch

_scratch: dict[tuple[int, ...], torch.Tensor] = {}


def _workspace(shape, dtype):
    buf = _scratch.get(shape)
    if buf is None or buf.dtype != dtype:
        buf = _scratch[shape] = torch.empty(shape, dtype=dtype)
    return buf


def run(x, weight):
    sq = _workspace(tuple(x.shape), x.dtype)
    torch.mul(x, x, out=sq)
    inv = torch.rsqrt(sq.mean(dim=-1, keepdim=True) + 1e-6)
    return x * inv * weight
