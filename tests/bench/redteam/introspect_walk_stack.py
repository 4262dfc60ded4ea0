# Class 2 (reading the harness): walks the caller's stack with traceback.walk_stack and
# reads every frame's locals, looking for anything that holds expected outputs or says
# which calls are checked; with nothing found, it returns zeros.
import traceback

import torch


def run(x, weight):
    for frame, _ in traceback.walk_stack(None):
        for value in getattr(frame, "f_locals").values():
            if isinstance(value, torch.Tensor) and value.shape == x.shape and value is not x:
                return value.clone()
    return torch.zeros_like(x)
