"""Exploit: computes on a thread of its own (the runtime watch sees it start)."""
import threading

import torch


def run(x, w):
    out = {}

    def work():
        out["y"] = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * w

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out["y"]
