"""KernelBench level 1 through solforge on the CPU: import all 100 problems, then bench the
eager reference of each on its derived smoke and search workloads.

Usage:
    python benchmarks/kernelbench_level1.py KERNELBENCH/level1 --work /tmp/kb_l1 \\
        [--problem-timeout 300] [--timeout 60] [--only 1,23,40]

KERNELBENCH/level1 is a checkout of github.com/ScalingIntelligence/KernelBench's
`KernelBench/level1` (read in place, never copied into this repository). For each
imported problem a child process runs, as a user would,

    solforge bench NAME --dataset WORK/dataset --device cpu --baselines eager \\
        --workloads smoke,search --timeout T --out WORK/traces/NAME.jsonl

(`--workloads smoke,search`: both sets in one run, so the harness starts once per
problem), under a hard wall-clock limit per problem (`--problem-timeout`; the child and
the processes it started are killed past it). The eager
baseline is the definition's own reference run as a solution, so its PASSED verdict is
"the reference passes its own correctness check". Counted per workload set: PASSED,
TIMEOUT, skipped for memory (the harness's `evaluation.solforge.skipped == "memory"`),
other failures; per problem: tracebacks (an exception out of the CLI, or a Python
traceback in what it printed) and wall time. Prints a markdown summary and writes
WORK/summary.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

SETS = ("smoke", "search")
_NUMBER = re.compile(r"_(\d+)_")


def _number(name: str) -> int:
    m = _NUMBER.search(name + "_")
    return int(m.group(1)) if m else 0


def run_one(name: str, dataset: Path, traces: Path, timeout_s: float) -> dict:
    """In the child: `solforge bench` on both sets, in this process; what happened, as JSON."""
    from solforge.cli import main

    argv = ["bench", name, "--dataset", str(dataset), "--device", "cpu", "--baselines", "eager",
            "--workloads", ",".join(SETS), "--timeout", str(timeout_s), "--out", str(traces / f"{name}.jsonl")]
    printed = io.StringIO()
    start = time.perf_counter()
    escaped = None
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        try:
            rc = main(argv)
        except BaseException:  # noqa: BLE001 - an exception out of the CLI is what we count
            rc, escaped = None, traceback.format_exc()
    text = printed.getvalue()
    print(f"== solforge {' '.join(argv)}\n{text}{escaped or ''}", flush=True)
    return {"name": name, "rc": rc, "bench_s": time.perf_counter() - start, "traceback": escaped,
            "printed_traceback": "Traceback (most recent call last)" in text,
            "last_line": text.strip().splitlines()[-1][:300] if text.strip() else ""}


def classify(trace: dict) -> str:
    ev = trace.get("evaluation") or {}
    if (ev.get("solforge") or {}).get("skipped") == "memory":
        return "skipped-for-memory"
    return ev.get("status", "NO_VERDICT")


def harness_commit(repo: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h", "--", "src/solforge/bench"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("level1", type=Path, nargs="?")
    ap.add_argument("--work", type=Path, required=True, help="A new directory for the dataset, traces and logs.")
    ap.add_argument("--problem-timeout", type=float, default=300.0, help="Wall-clock limit per problem, seconds.")
    ap.add_argument("--timeout", type=float, default=60.0, help="solforge bench --timeout, seconds.")
    ap.add_argument("--only", default=None, help="Comma-separated problem numbers (default: all).")
    ap.add_argument("--harness-commit", default=None,
                    help="Record this commit (when running from an export of the repository, which has no .git).")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child's mode
    args = ap.parse_args()
    dataset, traces, logs = args.work / "dataset", args.work / "traces", args.work / "logs"
    if args.one:
        result = run_one(args.one, dataset, traces, args.timeout)
        (logs / f"{args.one}.result.json").write_text(json.dumps(result, indent=2))
        return 0

    from solforge.spec.importers.kernelbench import import_kernelbench

    if args.level1 is None or not args.level1.is_dir():
        ap.error("give the KernelBench level1 directory")
    traces.mkdir(parents=True)
    logs.mkdir(parents=True)
    start = time.perf_counter()
    report = import_kernelbench([args.level1], dataset)
    import_s = time.perf_counter() - start
    names = sorted((i.name for i in report.imported if i.kind.value == "definition"), key=_number)
    imported = len(names)
    files = sorted(args.level1.glob("*.py"))
    if args.only:
        wanted = {int(n) for n in args.only.split(",")}
        names = [n for n in names if _number(n) in wanted]
    print(f"imported {imported} of {len(files)} files in {import_s:.1f} s ({len(names)} to bench); skipped: "
          f"{[(Path(s.path).name, s.reason) for s in report.skipped]}", flush=True)

    problems = []
    for name in names:
        log = logs / f"{name}.log"
        cmd = [sys.executable, __file__, "--work", str(args.work), "--timeout", str(args.timeout), "--one", name]
        start = time.perf_counter()
        with log.open("w") as sink:
            child = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                child.wait(timeout=args.problem_timeout)
                killed = False
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # the child and the harness processes it started
                child.wait()
                killed = True
        wall_s = time.perf_counter() - start
        result_file = logs / f"{name}.result.json"
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        entry = {"name": name, "wall_s": wall_s, "killed": killed, "child_rc": child.returncode, **result,
                 "sets": {w: {"verdicts": []} for w in SETS}}
        lines = traces / f"{name}.jsonl"
        for line in lines.read_text().splitlines() if lines.is_file() else ():
            trace = json.loads(line)
            smoke = (trace["workload"].get("solforge") or {}).get("smoke", False)
            entry["sets"]["smoke" if smoke else "search"]["verdicts"].append(classify(trace))
        problems.append(entry)
        print(f"{name}: {wall_s:.1f} s{' (killed)' if killed else ''} "
              + " ".join(f"{w}={entry['sets'][w]['verdicts']}" for w in SETS), flush=True)

    summary = summarize(problems, len(files), imported, report, import_s)
    summary["harness_commit"] = args.harness_commit or harness_commit(Path(__file__).resolve().parents[1])
    summary["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    summary["problems"] = problems
    (args.work / "summary.json").write_text(json.dumps(summary, indent=2))
    print_markdown(summary)
    return 0


def summarize(problems: list[dict], files: int, imported: int, report, import_s: float) -> dict:
    out: dict = {"files": files, "imported": imported, "import_s": import_s,
                 "skipped": [(Path(s.path).name, s.reason) for s in report.skipped], "sets": {}}
    for which in SETS:
        counts: dict[str, int] = {}
        for p in problems:
            for v in p["sets"][which]["verdicts"]:
                counts[v] = counts.get(v, 0) + 1
        with_set = [p for p in problems if p["sets"][which]["verdicts"]]
        out["sets"][which] = {
            "workload_verdicts": counts,
            "problems_with_workloads": len(with_set),
            "reference_passes": sum(1 for p in with_set if all(v == "PASSED" for v in p["sets"][which]["verdicts"])),
        }
    out["tracebacks"] = sum(1 for p in problems if p.get("traceback") or p.get("printed_traceback"))
    out["cli_rc"] = {str(rc): sum(1 for p in problems if p.get("rc") == rc) for rc in {p.get("rc") for p in problems}}
    out["killed"] = [p["name"] for p in problems if p["killed"]]
    walls = [p["wall_s"] for p in problems]
    if walls:
        out["wall_s"] = {"total": sum(walls), "median": statistics.median(walls), "mean": statistics.fmean(walls),
                         "max": max(walls), "max_problem": max(problems, key=lambda p: p["wall_s"])["name"]}
    return out


def print_markdown(s: dict) -> None:
    print(f"\nimported: {s['imported']} of {s['files']} files ({s['import_s']:.1f} s); skipped: {s['skipped'] or 'none'}")
    print("| set | problems with such workloads | reference passes on all of them | workload verdicts |")
    print("| --- | --- | --- | --- |")
    for which, row in s["sets"].items():
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(row["workload_verdicts"].items()))
        print(f"| {which} | {row['problems_with_workloads']} | {row['reference_passes']} | {verdicts} |")
    if "wall_s" in s:
        w = s["wall_s"]
        print(f"\nwall time per problem (smoke and search in one bench run, child start-up included): "
              f"median {w['median']:.1f} s, "
              f"mean {w['mean']:.1f} s, max {w['max']:.1f} s ({w['max_problem']}); total {w['total'] / 60:.1f} min")
    print(f"tracebacks: {s['tracebacks']}; bench exit codes: {s['cli_rc']}; "
          f"problems killed at the limit: {s['killed'] or 'none'}; "
          f"harness commit {s.get('harness_commit', 'unknown')}")


if __name__ == "__main__":
    sys.exit(main())
