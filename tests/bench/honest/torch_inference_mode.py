# Honest: a frozen dataclass config, the entry point under @torch.inference_mode(), the
# signature checked once with inspect (as wrapper libraries do), a print on first call.
import dataclasses
import inspect

import torch


@dataclasses.dataclass(frozen=True)
class RMSNormConfig:
    eps: float = 1e-6
    upcast: bool = True


CONFIG = RMSNormConfig()
_printed = []


@torch.inference_mode()
def run(x, weight):
    if not _printed:
        print(f"rmsnorm: signature {inspect.signature(run)}, config {CONFIG}")
        _printed.append(True)
    xf = x.double() if CONFIG.upcast else x
    inv = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + CONFIG.eps)
    return (xf * inv * weight.to(xf.dtype)).to(x.dtype)
