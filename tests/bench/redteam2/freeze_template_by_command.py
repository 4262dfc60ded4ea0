# Poisoning the next solution through a signal the audit guard cannot refuse (want: the
# next solution unharmed). The kernel is honest in its own calls, but in its first call
# it stops its parent, the template every solution's process is forked from, with the
# kill command in a process of its own (no os.kill here to refuse; the process start is
# named, and this solution fails for it). The judge's next fork request would then wait
# forever for a pid.
import os
import subprocess

import torch

_done = []


def run(x, weight):
    if not _done:
        _done.append(True)
        subprocess.run(["kill", "-STOP", str(os.getppid())], check=False)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
