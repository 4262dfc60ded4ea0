# Class 1 (tampering in the shared process): a clock that restores itself. Inside each
# call it slows every clock of this process down 1000x (time.perf_counter,
# perf_counter_ns, monotonic, monotonic_ns, time, time_ns, clock_gettime_ns), spends
# about 5 ms, and puts the real clocks back before returning, so that no check made
# after the call finds them replaced. The work is honest; the 5 ms must show.
import sys
import time  # noqa: F401

import torch

_NAMES = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns")


def _slow(fn):
    start = fn()

    def slowed(*args):
        return start + (fn(*args) - start) / 1000 if not args else fn(*args)

    return slowed


def run(x, weight):
    clock = sys.modules["".join(reversed("emit"))]
    real = {name: getattr(clock, name) for name in _NAMES}
    real_sleep = clock.sleep
    try:
        for name, fn in real.items():
            setattr(clock, name, _slow(fn))
        real_sleep(0.005)
        return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + 1e-6) * weight
    finally:
        for name, fn in real.items():
            setattr(clock, name, fn)
