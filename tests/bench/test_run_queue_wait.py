"""The judge's reading of how long a solution's threads waited for a CPU (Linux schedstat),
and which timed calls it calls contended."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from solforge.bench.processes import run_queue_wait_ns
from solforge.bench.timing import CONTENDED_MIN_MS, contended_calls

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc/<pid>/task/*/schedstat")
_SPIN = "import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\nend = time.time() + float(sys.argv[2])\n" \
        "while time.time() < end:\n    pass\n"


def _spinner(cpu: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu), str(seconds)])


@linux_only
def test_a_process_sharing_its_cpu_with_a_spinner_is_seen_waiting():
    cpu = min(os.sched_getaffinity(0))
    measured, *rivals = [_spinner(cpu, 3.0) for _ in range(4)]
    try:
        time.sleep(0.5)  # all started and pinned
        first, t0 = run_queue_wait_ns(measured.pid), time.monotonic()
        time.sleep(0.8)
        second, seconds = run_queue_wait_ns(measured.pid), time.monotonic() - t0
    finally:
        for p in (measured, *rivals):
            p.kill()
            p.wait()
    assert first is not None and second is not None
    # four busy processes on one CPU: each runs about a quarter of the time and waits the rest
    # (its run time, the schedstat's first field, would be about a quarter)
    assert (second - first) / 1e9 > 0.5 * seconds


@linux_only
def test_an_idle_process_waits_for_nothing_and_a_gone_one_reads_none():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)  # past its start-up
        first = run_queue_wait_ns(sleeper.pid)
        time.sleep(0.5)
        assert run_queue_wait_ns(sleeper.pid) == first  # asleep, so never runnable
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_queue_wait_ns(sleeper.pid) is None


def test_a_call_is_contended_when_its_threads_waited_a_quarter_of_it_and_a_tick():
    raw_ms = [4.5, 1.8, 0.6, 14.7, 12.8, 0.9, 2.0]
    waited_ms = [3.7, 0.8, 0.37, 4.0, 2.9, None, 1.1]
    # contended: 3.7 of 4.5, 4.0 of 14.7 (over a quarter), 1.1 of 2.0 (over a quarter and the 1 ms minimum);
    # not: 0.8 of 1.8 and 0.37 of 0.6 (under the minimum), 2.9 of 12.8 (under a quarter), no reading
    assert contended_calls(raw_ms, waited_ms) == 3
    assert CONTENDED_MIN_MS == 1.0 and contended_calls([0.5], [0.5]) == 0  # the whole call, but under a tick
    assert contended_calls([], []) == 0


@linux_only
def test_a_timing_on_a_machine_busy_with_spinners_counts_its_contended_calls():
    from test_bench_evaluate import CONFIG, WORKLOADS, run  # this folder is on sys.path (pytest prepends it)

    cpus = sorted(os.sched_getaffinity(0))
    spinners = [_spinner(cpu, 60.0) for cpu in cpus for _ in range(2)]  # two busy processes on every CPU
    try:
        time.sleep(0.3)
        ev = run("honest_rmsnorm.py", workloads=WORKLOADS[:1], config=CONFIG)[0]
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    timing = ev.solforge.timing
    assert timing.contended_calls >= 1, timing.run_queue_wait_ms
    warned = [w for w in ev.solforge.warnings if w.startswith("contended: ")]
    assert bool(warned) == (timing.contended_calls > 0.25 * timing.count)
