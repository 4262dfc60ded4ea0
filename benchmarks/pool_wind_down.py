"""How long does a thread pool keep a CPU busy after a parallel region? The judge allows a
thread pool's winding down between timed calls (`bench.timing.WIND_DOWN_MS`); this
measures it on this machine for numba's threading layer (GNU OpenMP's workers spin
GOMP_SPINCOUNT rounds before they sleep).

A numba `parallel=True` reduction over 2^20 doubles runs once, then the main thread
sleeps in 0.5 ms steps for 60 ms while reading the CPU time of the process's other
threads (the process CPU clock less the main thread's own). Reported per region: when
that CPU time last grew (ms after the region ended) and how much it was.

    .venv/bin/python benchmarks/pool_wind_down.py [--regions 20]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=20)
    args = parser.parse_args()
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def region(x):
        s = 0.0
        for i in numba.prange(x.shape[0]):
            s += x[i] * 2
        return s

    x = np.ones(1 << 20)
    region(x)
    print(f"threading layer {numba.threading_layer()}, {numba.get_num_threads()} threads")

    def others_ns() -> int:
        return time.process_time_ns() - time.thread_time_ns()

    ends, used = [], []
    for _ in range(args.regions):
        region(x)
        t0, c0 = time.perf_counter(), others_ns()
        last_ns, last_ms = 0, 0.0
        while time.perf_counter() - t0 < 0.06:
            time.sleep(0.0005)
            c = others_ns() - c0
            if c > last_ns + 100_000:  # grew by more than 0.1 ms since the last reading
                last_ns, last_ms = c, (time.perf_counter() - t0) * 1e3
        ends.append(last_ms)
        used.append(last_ns / 1e6)
    print("| | min | median | max |\n| --- | ---: | ---: | ---: |")
    print(f"| busy until, ms after the region | {min(ends):.1f} | {statistics.median(ends):.1f} | {max(ends):.1f} |")
    print(f"| CPU of the other threads, ms | {min(used):.1f} | {statistics.median(used):.1f} | {max(used):.1f} |")


if __name__ == "__main__":
    main()
