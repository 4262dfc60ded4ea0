"""The spread of a calibration figure (re-run when unstable) and the load a measurement ran under."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from solforge.hardware.load import MAX_OTHER_CPU_FRACTION, cpu_ticks, judge_load, watch_load
from solforge.hardware.measure import MAX_RELATIVE_IQR, spread_of, timed_rounds

STABLE = [10.0, 10.1, 10.2, 10.0, 10.1, 10.3, 10.2]
UNSTABLE = [10.0, 30.0, 11.0, 25.0, 10.5, 40.0, 12.0]
WORSE = [10.0, 80.0, 11.0, 60.0, 10.5, 90.0, 12.0]


def test_spread_matches_numpys_quartiles_and_the_stability_rule():
    spread = spread_of(UNSTABLE)
    q1, median, q3 = np.percentile(UNSTABLE, [25, 50, 75])
    assert spread.median_ms == pytest.approx(median) and spread.iqr_ms == pytest.approx(q3 - q1)
    assert spread.min_ms == 10.0 and spread.count == 7 and not spread.stable
    assert spread_of(STABLE).stable and spread_of(STABLE).relative_iqr <= MAX_RELATIVE_IQR
    assert not spread_of(STABLE[:4]).stable  # too few samples, however tight
    with pytest.raises(ValueError):
        spread_of([])


def rounds(*results):
    calls = []

    def round_ms():
        calls.append(len(calls))
        return list(results[len(calls) - 1])

    return round_ms, calls


def test_a_stable_first_round_is_kept_without_a_rerun():
    round_ms, calls = rounds(STABLE, UNSTABLE)
    samples, spread = timed_rounds(round_ms, attempts=2)
    assert samples == STABLE and spread.stable and spread.attempts == 1 and len(calls) == 1


def test_an_unstable_round_is_run_again_and_the_stable_rerun_kept():
    round_ms, calls = rounds(UNSTABLE, STABLE)
    samples, spread = timed_rounds(round_ms, attempts=3)
    assert samples == STABLE and spread.stable and spread.attempts == 2 and len(calls) == 2


def test_a_figure_unstable_in_every_round_keeps_the_tightest_and_is_marked():
    round_ms, calls = rounds(WORSE, UNSTABLE)
    samples, spread = timed_rounds(round_ms, attempts=2)
    assert samples == UNSTABLE and not spread.stable and spread.attempts == 2 and len(calls) == 2


STAT = """cpu  300 0 100 1000 10 0 0 0 0 0
cpu0 100 5 50 400 5 1 2 3 0 0
cpu1 200 0 50 600 5 0 0 0 0 0
intr 1 2 3
"""


def test_cpu_ticks_sum_busy_and_total_of_the_watched_cpus():
    # cpu0: busy 100+5+50+1+2+3 = 161, total 161+400+5 = 566
    assert cpu_ticks(STAT, [0]) == (161, 566)
    assert cpu_ticks(STAT, [0, 1]) == (161 + 250, 566 + 855)
    assert cpu_ticks(STAT, [2]) is None  # a CPU without a line
    assert cpu_ticks("cpu0 1 2 x 4\n", [0]) is None


def test_load_is_judged_by_other_processes_cpu_time_where_it_can_be_read():
    assert judge_load(MAX_OTHER_CPU_FRACTION + 0.01, 0.0, have_cpu_ticks=True)
    assert not judge_load(0.0, 9.0, have_cpu_ticks=True)  # the load average counts our own work: not used
    assert not judge_load(None, 9.0, have_cpu_ticks=True)  # too short a window: nothing seen
    assert judge_load(None, 0.9, have_cpu_ticks=False) and not judge_load(None, 0.1, have_cpu_ticks=False)


def test_watch_load_sees_other_processes_busy_and_not_this_one():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with watch_load() as watch:
            time.sleep(1.0)
    finally:
        burner.kill()
        burner.wait()
    # One child spinning on one of our CPUs: at least a share of 1 / cpus, minus start-up.
    assert watch.reading.other_cpu_fraction >= 0.5 / len(os.sched_getaffinity(0)) - 0.1
    assert watch.reading.under_load and "under load" in watch.reading.summary()


def test_watch_load_does_not_count_this_process_own_work():
    # On one CPU, this thread spins: whatever share it gets is its own, and the rest
    # of the CPU's time is what others took. Counting our own ticks as other processes'
    # would read close to 100% whatever the machine's load.
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        own_before = sum(os.times()[:2])
        with watch_load() as own:
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                pass
        own_share = (sum(os.times()[:2]) - own_before) / own.reading.wall_s
    finally:
        os.sched_setaffinity(0, saved)
    assert own.reading.cpus == 1 and own_share > 0.1
    assert own.reading.other_cpu_fraction <= 1 - own_share + 0.05  # clock ticks are 10 ms
