# Class 1 (forged replies): finds the solution's control socket without /proc (fstat
# over descriptor numbers, then the socket's family and type) and writes onto it, in
# the channel's own framing, a "called" reply for a request id of its choosing, as if
# the harness had answered. The call itself returns zeros.
import os
import socket
import stat
import struct

import torch


def _forge():
    body = b'{"id": 424242, "kind": "called", "findings": [], "solution_ms": 0.001}'
    for fd in range(3, 256):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if probe.family == socket.AF_UNIX and probe.type == socket.SOCK_STREAM:
                os.write(fd, struct.pack("!i", len(body)) + body)
        finally:
            probe.close()


def run(x, weight):
    _forge()
    return torch.zeros_like(x)
