"""The judge's check of CPU work between timed calls (`timing.gap_limit_ms`,
`timing.busy_after_calls_ms`): an honest thread pool winding down after each call is not
work outside the call, however long the judge's own work between calls takes; a process
that is still busy once every pool has gone to sleep is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from solforge.bench.processes import Child
from solforge.bench.timing import IDLE_BUSY_SHARE, CpuRun, busy_after_calls_ms, gap_limit_ms

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads a process's CPU clock")


def _process(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.3)  # started, and in its loop or its sleep
    return proc


@linux_only
def test_a_process_busy_after_the_calls_is_seen_and_a_sleeping_one_is_not():
    for code, busy in (("while True: pass", True), ("import time; time.sleep(60)", False)):
        proc = _process(code)
        try:
            used_ms, window_ms = busy_after_calls_ms(SimpleNamespace(cpu_ns=lambda p=proc: Child.cpu_ns(
                SimpleNamespace(process=p))))
        finally:
            proc.kill()
            proc.wait()
        assert window_ms > 0
        assert (used_ms > IDLE_BUSY_SHARE * window_ms) is busy, (code, used_ms, window_ms)


def test_the_gap_allowance_grows_with_the_pools_wind_down_and_not_without_a_pool():
    quiet = CpuRun(raw_ns=[1_000_000] * 10, inside_ms=10.0)
    pool = CpuRun(raw_ns=[1_000_000] * 10, inside_ms=10.0, gap_wait_ms=100.0)
    assert gap_limit_ms(pool, 3) == pytest.approx(gap_limit_ms(quiet, 3) + 100.0)
    assert gap_limit_ms(quiet, 1) == pytest.approx(5.0 * 10 + 10.0)


# -- through the judge ---------------------------------------------------------------------------

TOKENS = 16384  # 16384 x 64 float32: ~10 ms of the judge's own work between calls on the developer machine


@linux_only
def test_an_honest_parallel_kernel_passes_where_the_judges_gaps_outlast_its_pools_spin():
    # numba's OpenMP workers spin 4-8 ms after each call on the developer machine; with
    # ~10 ms gaps that was 9 ms of CPU per gap against 7.5 allowed, and the kernel was
    # called a reward hack (fused_add_rmsnorm_rows PARALLEL, decode b=256, 2026-12-04)
    from exploits import RMSNORM, solution

    from solforge.bench import BenchConfig, TimingBudget, evaluate
    from solforge.spec import EvaluationStatus, Workload

    workload = Workload.model_validate({"uuid": "gap-guard", "axes": {"tokens": TOKENS},
                                        "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}}})
    config = BenchConfig(trials=3, timing=TimingBudget(warmup_s=0.05, max_time_s=0.5, max_iters=30, min_iters=10))
    ev = evaluate(RMSNORM, [workload], solution("honest_numba_prange", "numba"), "cpu", config)[0].evaluation
    assert ev.status is EvaluationStatus.PASSED, (ev.status.value, ev.log[-2000:])
    assert ev.solforge.guard_findings == []
