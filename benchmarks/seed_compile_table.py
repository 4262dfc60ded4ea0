"""Every Triton seed at its default parameters, cross-compiled on this machine (no GPU) for
sm_90a and sm_100a: registers, spills, shared memory and theoretical occupancy.

    python benchmarks/seed_compile_table.py [--targets sm_90a,sm_100a]

Each seed is compiled at the specialization of every search workload of every built-in
definition it serves (`solforge.bench.crosscompile.cross_compile`), and one markdown row
is printed per (target, seed, kernel), with the range over those specializations:
registers per thread, spill stores/loads (bytes per thread, the largest), shared memory
per block (static + dynamic, bytes), threads per block, theoretical occupancy (active
warps per SM out of 64, and what limits it). The figures are ptxas' (the one bundled with
the installed Triton) and the CUDA occupancy calculator's rules; they change with the
Triton version, and none of them is a GPU measurement.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import time


def _span(values: list[int], unit: str = "") -> str:
    lo, hi = min(values), max(values)
    return f"{lo}{unit}" if lo == hi else f"{lo}-{hi}{unit}"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    return f"{model}, {os.cpu_count()} CPUs"


def _ptxas_version(capability: int) -> str:
    from triton import knobs

    tool = (knobs.nvidia.ptxas_blackwell if capability >= 90 else knobs.nvidia.ptxas).path
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1] if out.strip() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="sm_90a,sm_100a")
    args = parser.parse_args()

    import torch
    import triton

    from solforge.bench.crosscompile import cross_compile, target_by_name
    from solforge.knowledge import seeds_for
    from solforge.problems import builtin_names, load_builtin, select_workloads

    targets = [target_by_name(t) for t in args.targets.split(",")]
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {_cpu()}, no GPU")
    print(f"triton {triton.__version__}, torch {torch.__version__}, ptxas: {_ptxas_version(targets[0].capability)}")
    print()
    print("| target | seed | kernel | definitions | specializations | registers | spill st/ld B | smem B "
          "| threads/block | occupancy (warps/SM of 64) | limited by |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    start = time.perf_counter()
    compiled = 0
    for target in targets:
        rows: dict[tuple[str, str], dict] = {}
        for name in builtin_names():
            definition, workloads = load_builtin(name)
            search = select_workloads(workloads, "search")
            for seed in seeds_for(definition, "triton"):
                reports = cross_compile(seed.to_solution(definition), definition, search, target, isolate=False)
                for r in reports:
                    row = rows.setdefault((seed.name, r.kernel), {"defs": set(), "reports": []})
                    row["defs"].add(name)
                    row["reports"].append(r)
        for (seed, kernel), row in sorted(rows.items()):
            reports = row["reports"]
            distinct = {(r.specialization, r.registers_per_thread) for r in reports}
            compiled += len(distinct)
            limiters = sorted({x for r in reports for x in r.occupancy.limited_by})
            print(f"| {target.name} | {seed} | {kernel} | {len(row['defs'])} | {len(distinct)} "
                  f"| {_span([r.registers_per_thread for r in reports])} "
                  f"| {max(r.spill_store_bytes for r in reports)}/{max(r.spill_load_bytes for r in reports)} "
                  f"| {_span([r.static_shared_memory_bytes + r.dynamic_shared_memory_bytes for r in reports])} "
                  f"| {_span([r.threads_per_block for r in reports])} "
                  f"| {_span([r.occupancy.active_warps_per_sm for r in reports])} "
                  f"({_span([round(100 * r.occupancy.fraction) for r in reports], '%')}) "
                  f"| {', '.join(limiters)} |")  # fmt: skip
    print()
    print(f"{compiled} distinct specializations compiled in {time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
