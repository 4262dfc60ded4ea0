# Honest: warns once about a slow path and logs each call at debug level, as library code does.
import logging
import warnings

import torch

log = logging.getLogger("honest_rmsnorm")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(funcName)s:%(lineno)d %(message)s")
_warned = False


def run(x, weight):
    global _warned
    if not _warned:
        warnings.warn("honest_rmsnorm: no vectorized path for hidden=%d; using torch" % x.shape[-1],
                      RuntimeWarning, stacklevel=2)
        log.info("first call: tokens=%d hidden=%d", x.shape[0], x.shape[1])
        _warned = True
    log.debug("call with %s", tuple(x.shape))
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
