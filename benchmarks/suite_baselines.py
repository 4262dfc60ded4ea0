"""The baseline table: every built-in definition's search workloads, eager and
torch.compile latency, SOL time, SOL fraction of both baselines, binding term.

Usage: python benchmarks/suite_baselines.py [--device cuda] [--problems a,b,...] [--out traces.jsonl]
Prints one markdown table for docs/measurements.md.
"""

from __future__ import annotations

import argparse
import sys

from solforge.bench import BenchConfig, run_bench
from solforge.problems import builtin_names, load_builtin, select_workloads
from solforge.spec import write_jsonl


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--problems", default=None)
    ap.add_argument("--workloads", default="search")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    names = args.problems.split(",") if args.problems else builtin_names()
    print("| definition | workload | eager_ms | compile_ms | SOL_ms | SOL frac eager | SOL frac compile | binding |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    all_traces = []
    for name in names:
        definition, workloads = load_builtin(name)
        selected = select_workloads(workloads, args.workloads)
        result = run_bench(definition, selected, [], args.device, ("eager", "compile"), BenchConfig(device=args.device))
        eager = {t.workload.uuid: t for t in result.baselines["eager"]}
        compiled = {t.workload.uuid: t for t in result.baselines.get("compile", [])}
        for wl in selected:
            e, c = eager[wl.uuid].evaluation, compiled[wl.uuid].evaluation if wl.uuid in compiled else None
            sol = e.solforge.sol
            sol_ms = None if sol is None else (sol.sol_time_calibrated_ms or sol.sol_time_ms)

            def cell(ev, key):
                if ev is None or ev.status.value != "PASSED" or ev.performance is None:
                    return ev.status.value if ev is not None else "-"
                return f"{ev.performance.latency_ms:.4f}" if key == "ms" else (
                    f"{ev.solforge.sol.sol_fraction:.3f}" if ev.solforge.sol else "-")

            print(f"| {name} | {wl.label} | {cell(e, 'ms')} | {cell(c, 'ms')} | "
                  f"{'-' if sol_ms is None else f'{sol_ms:.4f}'} | {cell(e, 'frac')} | {cell(c, 'frac')} | "
                  f"{sol.binding if sol else '-'} |", flush=True)
        all_traces += result.baselines["eager"] + result.baselines.get("compile", [])
    if args.out:
        write_jsonl(args.out, all_traces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
