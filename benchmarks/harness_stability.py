"""Harness stability and overhead on the device machine (issue 2's GPU figures).

1. Spread: one kernel timed `--repeats` times in one run (the persistent worker, a fresh
   timing run each time); the figure is (max median - min median) / min median.
   Target: within 1%.
2. Overhead: wall time of one `evaluate()` of one workload with a warm worker, minus the
   kernel time it measured (sum of the timed samples); correctness trials, input
   regeneration, cache flushes and IPC are all overhead. Target: under 1 s.

Usage: python benchmarks/harness_stability.py [--problem rmsnorm_h4096] [--device cuda]
Prints a markdown table for docs/measurements.md and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from solforge.bench import BenchConfig, evaluate
from solforge.bench.build import eager_solution
from solforge.knowledge import seeds_for
from solforge.problems import load_builtin, select_workloads


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problem", default="rmsnorm_h4096")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workload", default=None, help="uuid; default: the largest search workload")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    definition, workloads = load_builtin(args.problem)
    search = select_workloads(workloads, "search" if args.device != "cpu" else "smoke")
    wl = next((w for w in search if w.uuid == args.workload), None) or search[-1]
    language = "triton" if args.device != "cpu" else "numba"
    seeds = seeds_for(definition, language)
    solution = seeds[0].to_solution(definition) if seeds else eager_solution(definition)
    config = BenchConfig(device=args.device)

    evaluate(definition, [wl], solution, args.device, config)  # warm the worker and the build
    medians, overheads = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        (trace,) = evaluate(definition, [wl], solution, args.device, config)
        wall_s = time.perf_counter() - t0
        ev = trace.evaluation
        if ev.status.value != "PASSED":
            print(f"{solution.name} on {wl.label}: {ev.status.value}\n{ev.log[-2000:]}")
            return 1
        timing = ev.solforge.timing
        medians.append(timing.median_ms)
        overheads.append(wall_s - sum(timing.samples_ms) / 1e3)
    spread_pct = (max(medians) - min(medians)) / min(medians) * 100
    print(f"\n{solution.name} on {wl.label} ({args.device}), {args.repeats} evaluations in one run\n")
    print("| run | median_ms | overhead_s |\n| --- | --- | --- |")
    for i, (m, o) in enumerate(zip(medians, overheads), 1):
        print(f"| {i} | {m:.5f} | {o:.3f} |")
    print(f"\nspread of medians: {spread_pct:.2f}% (target < 1%)")
    print(f"overhead per evaluation: median {statistics.median(overheads):.3f} s (target < 1 s)")
    return 0 if spread_pct < 1.0 and statistics.median(overheads) < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
