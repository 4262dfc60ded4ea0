"""Harness cost per evaluation on the CPU: candidates/min on rmsnorm_h4096's smoke workloads.

Each candidate is the numba RMSNorm seed (knowledge/seeds/numba/rmsnorm_rows.py) at one
point of its PARAM_SPACE, evaluated through the public `solforge.bench.evaluate` on the
three CPU smoke workloads (t = 1, 7, 64 rows of 4096, bfloat16), exactly as the search
evaluates a candidate. Only the public API is used, so the same script measures any
version of the harness (run it from a checkout of another commit with PYTHONPATH=src).

    python benchmarks/harness_cost.py [--candidates 8]

Prints one line per candidate (seconds, status) and the summary:
candidates/min = 60 * candidates / wall seconds (the first candidate, which pays the
process start-up, included).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=8)
    args = parser.parse_args()

    from solforge.bench import evaluate
    from solforge.knowledge import seeds_for
    from solforge.problems import load_builtin, select_workloads

    definition, all_workloads = load_builtin("rmsnorm_h4096")
    workloads = select_workloads(all_workloads, "smoke")
    seed = next(s for s in seeds_for(definition, "numba") if s.name.endswith("rmsnorm_rows"))
    space = list(itertools.product(*seed.param_space.values()))
    points = [dict(zip(seed.param_space, values)) for values in space][: args.candidates]
    per_candidate_s = []
    overheads_us: list[float] = []
    ratios: list[float] = []  # judge's sample / the solution's own reading of the same call
    start = time.perf_counter()
    for i, params in enumerate(points):
        solution = seed.to_solution(definition, params)
        solution = solution.model_copy(update={"name": f"{solution.name}-{i}"})
        t0 = time.perf_counter()
        traces = evaluate(definition, workloads, solution, "cpu")
        per_candidate_s.append(time.perf_counter() - t0)
        statuses = sorted({t.evaluation.status.value for t in traces})
        for t in traces:
            timing = t.evaluation.solforge.timing
            if timing is None or getattr(timing, "overhead_ms", None) is None:
                continue  # a harness that does not time from the judge's side
            overheads_us.append(timing.overhead_ms * 1e3)
            own = timing.solution_samples_ms
            if len(own) == len(timing.samples_ms):
                ratios += [j / o for j, o in zip(timing.samples_ms, own) if o > 0]
        print(f"candidate {i}: {per_candidate_s[-1]:.2f} s  {','.join(statuses)}  {params}")
    wall_s = time.perf_counter() - start
    print(f"candidates: {len(points)}  wall: {wall_s:.1f} s  candidates/min: {60 * len(points) / wall_s:.1f}  "
          f"median s/candidate: {statistics.median(per_candidate_s):.2f}")
    if overheads_us:
        print(f"handshake overhead subtracted: median {statistics.median(overheads_us):.1f} us "
              f"(min {min(overheads_us):.1f}, max {max(overheads_us):.1f}) over {len(overheads_us)} workload timings")
    if ratios:
        q = statistics.quantiles(ratios, n=4)
        print(f"judge / solution-side sample, same call: median {statistics.median(ratios):.3f} "
              f"(IQR {q[0]:.3f}-{q[2]:.3f}) over {len(ratios)} calls")


if __name__ == "__main__":
    main()
