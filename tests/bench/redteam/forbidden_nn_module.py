# Class 6 (forbidden call reached indirectly): torch.nn.RMSNorm, whose forward calls the
# forbidden torch.nn.functional.rms_norm; no forbidden name appears in this source.
import torch

_layers = {}


def run(x, weight):
    hidden = x.shape[-1]
    layer = _layers.get(hidden)
    if layer is None:
        layer = _layers[hidden] = torch.nn.RMSNorm(hidden, eps=1e-6)
    with torch.no_grad():
        layer.weight.copy_(weight)
        return layer(x)
