"""Exploit: returns while a thread of its own is still computing the output (the runtime
watch sees it start; a thread joined before the return would have worked on the clock,
and is honest)."""
import threading
import time

import torch


def run(x, w):
    y = torch.empty_like(x)

    def work():
        time.sleep(0.001)  # still working when the call returns
        y.copy_(x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w)

    threading.Thread(target=work, daemon=True).start()
    return y
