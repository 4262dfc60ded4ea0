"""Is the scheduler in the CPU timings? Side by side, on the CPU, four ways of timing:
- the defaults: the judge's torch work on one thread while it times
  (`BenchConfig.judge_threads=1`), and the solution's process waiting for GO asleep when
  its threads fill the CPUs (`go_wait="auto"`, `timing.wake_for`);
- GO always spun on (`go_wait="spin"`, before the second change), and GO always waited
  for asleep (`go_wait="wake"`: for a serial kernel, what the wake-up adds to a figure);
- and the judge on the caller's threads as well (`judge_threads=None`: torch's default,
  every core; before both changes).

For each numba seed point asked for, `--evaluations` harness evaluations per variant
(`solforge.bench.evaluate`, the default CPU timing, the search workloads `solforge
evolve` picks on this CPU), the variants alternating so that a slow spell of the
machine falls on each alike. Reported per point, variant and workload: how GO was waited
for (`TimingStats.go_wait`), the median over the
evaluations of the timing's median (ms), the range of those medians, and the timed calls
the judge saw contended (`TimingStats.contended_calls`: the solution's threads waited for
a CPU over a quarter of the call and 1 ms; `run_queue_wait_ms` per call), summed over
the evaluations.

    .venv/bin/python benchmarks/timing_contention.py [--evaluations 5]
        [--points 'numba/silu_and_mul:{"PARALLEL": false}' ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

DEFAULT_POINTS = ('numba/silu_and_mul:{"PARALLEL": false}', 'numba/silu_and_mul:{"PARALLEL": true}',
                  'numba/rmsnorm_rows:{}')
VARIANTS = {"defaults (GO: auto)": {}, "GO spun on": {"go_wait": "spin"}, "GO asleep": {"go_wait": "wake"},
            "GO spun on, judge on the caller's threads": {"go_wait": "spin", "judge_threads": None}}


def _point(text: str):
    """(seed, definition, workloads, params) of 'seed:params-json': the first built-in
    definition (by name) the seed applies to, as benchmarks/tuner_efficiency.py picks."""
    from solforge.knowledge import load_seeds
    from solforge.problems import builtin_names, load_builtin

    name, _, params = text.partition(":")
    seed = next((s for s in load_seeds("numba") if s.name == name), None)
    if seed is None:
        raise SystemExit(f"--points: no numba seed named {name!r}")
    for problem in builtin_names():
        definition, workloads = load_builtin(problem)
        if seed.applies_to(definition):
            return seed, definition, workloads, dict(seed.params, **json.loads(params or "{}"))
    raise SystemExit(f"--points: no built-in definition for {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=5)
    parser.add_argument("--points", nargs="*", default=list(DEFAULT_POINTS),
                        help="seed:params-json, e.g. 'numba/silu_and_mul:{\"PARALLEL\": true}'")
    args = parser.parse_args()

    import torch

    from solforge.bench import BenchConfig, evaluate
    from solforge.search.workloads import choose_workloads

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} UTC; torch threads of this process: {torch.get_num_threads()}")
    print("| point | variant | workload | GO | median of medians ms | range ms | contended calls |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    for text in args.points:
        seed, definition, workloads, params = _point(text)
        chosen = choose_workloads(definition, workloads, "cpu").search
        medians = {v: {w.uuid: [] for w in chosen} for v in VARIANTS}
        contended = {v: {w.uuid: [0, 0] for w in chosen} for v in VARIANTS}
        waits = {v: {w.uuid: set() for w in chosen} for v in VARIANTS}
        for _ in range(args.evaluations):
            for variant, options in VARIANTS.items():
                config = BenchConfig(device="cpu", **options)
                for trace in evaluate(definition, chosen, seed.to_solution(definition, params), "cpu", config):
                    timing = trace.evaluation.solforge.timing
                    if timing is None:
                        raise SystemExit(f"{text}: {trace.evaluation.status.value}: {trace.evaluation.log[:300]}")
                    medians[variant][trace.workload.uuid].append(timing.median_ms)
                    contended[variant][trace.workload.uuid][0] += timing.contended_calls
                    contended[variant][trace.workload.uuid][1] += timing.count
                    waits[variant][trace.workload.uuid].add(timing.go_wait or "-")
        for variant in VARIANTS:
            for w in chosen:
                m = medians[variant][w.uuid]
                hit, total = contended[variant][w.uuid]
                go = "/".join(sorted(waits[variant][w.uuid]))
                print(f"| {text} | {variant} | {w.label or w.uuid} | {go} | {statistics.median(m):.4g} | "
                      f"{min(m):.4g}-{max(m):.4g} | {hit} of {total} |", flush=True)


if __name__ == "__main__":
    main()
