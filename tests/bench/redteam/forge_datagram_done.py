# Class 1 (forged replies on the timing channel): in its first timed-loop call it finds
# the handshake's datagram socket (fstat over descriptor numbers, a Unix SOCK_DGRAM) and
# sends the DONE frame the judge expects for that round (the iteration numbers of the
# loop are predictable) before doing any work, so the judge's clock would stop at once.
import os
import socket
import stat
import struct

import torch

_calls = [0]
_DONE = 3
_FIRST_WARMUP_ITERATION = 10_000_000


def _send_done(iteration):
    for fd in range(3, 256):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if probe.family == socket.AF_UNIX and probe.type == socket.SOCK_DGRAM:
                os.write(fd, struct.pack("<III", _DONE, iteration, 0))
        finally:
            probe.close()


def run(x, weight):
    _calls[0] += 1
    if _calls[0] == 8:
        _send_done(_FIRST_WARMUP_ITERATION)
    return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
