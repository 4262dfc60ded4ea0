"""What one harness evaluation costs, request by request: the judge's wall time for each
request it makes of the solution's and the reference process, per evaluation.

Evaluates a shipped numba seed kernel (default numba/rmsnorm_rows) on a built-in
definition's workloads (default rmsnorm_h4096, smoke workloads) `--evaluations` times in
one process with `solforge.bench.evaluate` and the default CPU timing. The first
evaluation of a process also starts the template process. Reported per evaluation: its
wall seconds, the correctness calls' seconds, and the first call's seconds (the first
profiler session of the solution's process, and numba compiling the kernel, or loading
it from `--compile-cache-dir` when an earlier evaluation compiled it there); then the
seconds of each kind of request.

    .venv/bin/python benchmarks/evaluation_cost.py [--problem rmsnorm_h4096] [--seed-kernel numba/rmsnorm_rows]
        [--workloads smoke|auto] [--evaluations 3] [--compile-cache-dir DIR] [--screening]
"""

from __future__ import annotations

import argparse
import collections
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", default="rmsnorm_h4096")
    ap.add_argument("--seed-kernel", default="numba/rmsnorm_rows")
    ap.add_argument("--workloads", default="smoke", choices=("smoke", "auto"))
    ap.add_argument("--evaluations", type=int, default=3)
    ap.add_argument("--compile-cache-dir", default=None,
                    help="BenchConfig.compile_cache_dir (what `solforge evolve` sets unless --no-cache); default none")
    ap.add_argument("--screening", action="store_true",
                    help="time with the screening budget (a search's first timing of a candidate)")
    args = ap.parse_args()

    import solforge.bench.judge as judge
    from solforge.bench import BenchConfig, evaluate
    from solforge.knowledge.seed_kernels import seeds_for
    from solforge.problems.registry import load_problem
    from solforge.search.workloads import choose_workloads

    seconds: dict[str, list[float]] = collections.defaultdict(list)
    ask = judge.WorkloadRun._ask

    def timed_ask(self, child, message, *rest, **kw):  # the judge's wait for each request
        t0 = time.perf_counter()
        try:
            return ask(self, child, message, *rest, **kw)
        finally:
            kind = type(message).__name__ + (" (reference)" if child is self.ref else "")
            seconds[kind].append(time.perf_counter() - t0)

    judge.WorkloadRun._ask = timed_ask
    definition, workloads, root, _ = load_problem(args.problem)
    chosen = choose_workloads(definition, workloads, "cpu", args.workloads).search
    seed = next(s for s in seeds_for(definition, "numba") if s.name == args.seed_kernel)
    config = BenchConfig(device="cpu", dataset_root=root, compile_cache_dir=args.compile_cache_dir)
    if args.screening:
        config = config.screening("cpu")
    print(f"{args.seed_kernel} on {args.problem} ({', '.join(w.label or w.uuid for w in chosen)})")
    print("| evaluation | wall s | correctness calls s | first call s | statuses |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for i in range(args.evaluations):
        seconds.clear()
        t0 = time.perf_counter()
        traces = evaluate(definition, chosen, seed.to_solution(definition, name=f"cost-{i}"), "cpu", config)
        wall = time.perf_counter() - t0
        calls = seconds.get("Call", [])
        statuses = ",".join(sorted({t.evaluation.status.value for t in traces}))
        print(f"| {i + 1} | {wall:.2f} | {sum(calls):.2f} | {calls[0] if calls else float('nan'):.2f} | {statuses} |")
        for kind, values in sorted(seconds.items()):
            print(f"    {kind}: {len(values)} requests, {sum(values):.2f} s")


if __name__ == "__main__":
    main()
