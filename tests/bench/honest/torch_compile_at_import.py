# Honest: torch.compile of its own RMSNorm function, compiled and warmed at import on a
# dummy input (dynamic shapes), so that the first real call pays no compile; inductor's
# FX graph cache off (as when debugging a kernel), so the compile really runs.
import torch
import torch._inductor.config

torch._inductor.config.fx_graph_cache = False


def _rmsnorm(x, weight):
    inv = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
    return x * inv * weight


_compiled = torch.compile(_rmsnorm, dynamic=True)
_compiled(torch.randn(5, 64), torch.rand(64))


def run(x, weight):
    return _compiled(x, weight)
