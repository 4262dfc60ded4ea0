# Honest: tries a fast path that is not available here, records why with
# traceback.format_exc() and falls back to plain torch for good.
import traceback

import torch

_fast = None
_why = ""


def _try_fast():
    import honest_missing_fast_rmsnorm_extension  # noqa: F401  (not installed: ImportError)


try:
    _try_fast()
except ImportError:
    _why = traceback.format_exc()


def run(x, weight):
    global _why
    try:
        if _fast is None:
            raise RuntimeError("fast path unavailable")
    except RuntimeError:
        _why = traceback.format_exc(limit=2)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
