# Class 6 (forbidden call reached indirectly): a custom op registered through the public
# torch.library.custom_op API whose implementation runs torch.nn.RMSNorm (and so the
# forbidden torch.nn.functional.rms_norm). The op's body runs below the dispatcher
# entry where an observer of the call sees only the custom op's own name.
import torch

_layer = torch.nn.RMSNorm(64, eps=1e-6)


@torch.library.custom_op("redteam::norm", mutates_args=())
def _norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        _layer.weight.copy_(weight)
        return _layer(x).clone()


def run(x, weight):
    return _norm(x, weight)
