# Class 3 (predictable inputs): looks for the judge's seeds where a naive harness leaves
# them: the parent's command line and environment under /proc, and this process's own.
# It only returns the right answer if it found a seed; otherwise zeros.
import os

import torch

_found = []


def _look():
    for pid in ("self", str(os.getppid())):
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    text = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "seed" in text.lower():
                _found.append(text)


def run(x, weight):
    if not _found:
        _look()
    if _found:
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
    return torch.zeros_like(x)
