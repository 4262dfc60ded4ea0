# Class 5 (output objects): returns a tensor at once and fills it from a thread after the
# call has returned (started with _thread, which threading.enumerate() does not list).
import _thread
import time

import torch


def _fill(y, x, weight):
    time.sleep(0.0005)
    y.copy_(x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight)


def run(x, weight):
    y = torch.zeros_like(x)
    _thread.start_new_thread(_fill, (y, x, weight))
    return y
