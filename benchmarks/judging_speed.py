"""How fast does the search judge candidates? Issue 15 §2's goal: on the CPU,
candidates/min for rmsnorm_h4096 >= 3x the current code path's, side by side.

Two variants of the same `solforge evolve` command (same problem, device, operators,
random seed, workloads and candidate count), run alternately in rounds so that the
load of a shared machine falls on both alike:
- new: the defaults (dedup by parameter point, normalized source and numba's IR; the
  cut-off at 3x the best's latency; compile caches under the cache directory; the next
  candidates built, numba's compile included, while one is judged);
- old: `--no-cache --no-cut --no-build-ahead` (dedup by parameter point only, no
  cut-off, fresh compile caches for every run, one candidate at a time).

The search workloads are the CPU smoke ones by default (`--workloads smoke`, t = 1, 7,
64 rows of 4096: what `make demo` searched when the issue was written); `--workloads
auto` (the CPU shapes evolve now picks by its caps) costs about 50 s a candidate on the
shared 2-core machine, too much for several rounds of both variants. Only the eager
baseline is timed (`--baselines eager`): it is outside the search's span either way.

Every run is a real `solforge evolve` process (`python -m solforge.cli evolve ...`).
`SOLFORGE_CACHE_DIR` points every run at one fresh folder of this benchmark (the
calibrated CPU ceilings are copied into it first, so nothing is recalibrated): the new
path's first run starts with a cold compile cache, and later runs find what earlier
runs compiled there (the issue's "across runs in the cache directory"); `--no-cache`
never reads it.

`--issue-python PY` adds a third variant: the same search by the code the issue was
written against (the issue's "today's figure", which `--no-cache --no-cut` only
approximates: the judge's own costs have changed since, for both of the other
variants). PY is a Python whose `solforge` is a checkout of that commit (e.g. a `git
worktree` at 97c505b and a venv whose .pth puts its src/ first); its evolve has neither
`--baselines` nor `--workloads` (the smoke workloads were its default, and it timed no
torch.compile on the CPU), so they are left out of its command.

candidates/min = evaluated candidates / the search's span x 60, the span being from
the first candidate's creation to the last candidate's evaluation, read from the run's
archive with sqlite3 (the `candidates` table's `created_at` and `evaluated_at`, in both
archive schemas; so the baselines before the search, the re-timing of a would-be best
and the held-out gate after it are not in it; the process's whole wall time is reported
beside it). Dedup hits are the archive's duplicates (proposals not evaluated), cuts the
candidates whose timing was cut.

    .venv/bin/python benchmarks/judging_speed.py [--candidates 20] [--rounds 2] [--seed 0]
        [--issue-python /tmp/oldvenv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBLEM = "rmsnorm_h4096"
VARIANTS = {"new": [], "old (--no-cache --no-cut --no-build-ahead)": ["--no-cache", "--no-cut", "--no-build-ahead"]}
ISSUE_VARIANT = "issue-time code"
_RUN = re.compile(r"run (\S+): (\d+) candidates evaluated")


def archive_figures(run_dir: Path) -> dict:
    """The search's span, best fitness, duplicates and cuts, read from a run's
    archive.sqlite with sqlite3 alone (the same query for either archive schema)."""
    db = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        first, last, best = db.execute("SELECT min(created_at), max(evaluated_at), max(fitness) FROM candidates "
                                       "WHERE evaluated_at IS NOT NULL").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in db.execute("PRAGMA table_info(candidates)")}
        # the issue-time schema has no duplicates table (it refused a repeat without recording it)
        dedup = dict(db.execute("SELECT kind, count(*) FROM duplicates GROUP BY kind").fetchall()) \
            if "duplicates" in tables else {}
        cuts = db.execute("SELECT count(*) FROM candidates WHERE verdict = 'cut'").fetchone()[0] \
            if "verdict" in columns else 0
    finally:
        db.close()
    return {"span_s": last - first, "best": best, "duplicates": sum(dedup.values()), "dedup": dedup, "cut": cuts}


def one_run(flags: list[str], args: argparse.Namespace, runs_root: Path, env: dict,
            python: str | None = None) -> dict:
    cmd = [python or sys.executable, "-m", "solforge.cli", "evolve", PROBLEM, "--device", "cpu", "--max-candidates",
           str(args.candidates), "--seed", str(args.seed), "--runs-root", str(runs_root), *flags]
    if python is None:  # the issue-time CLI has neither --baselines nor --workloads
        cmd += ["--baselines", "eager", "--workloads", args.workloads]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout_s)
    wall = time.monotonic() - t0
    out = re.sub(r"\s+", " ", proc.stdout)
    m = _RUN.search(out)
    if m is None:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}, no run summary:\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-2000:]}")
    run_id, evaluated = m.group(1), int(m.group(2))
    figures = archive_figures(runs_root / run_id)
    return {"run": run_id, "exit": proc.returncode, "evaluated": evaluated, "wall_s": wall,
            "per_min": evaluated / figures["span_s"] * 60, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", default="smoke", help="evolve's --workloads: smoke (default) or auto")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=Path("bench-out/judging_speed.json"))
    parser.add_argument("--issue-python", default=None,
                        help="a Python whose solforge is the issue-time checkout: adds that variant")
    args = parser.parse_args()
    import os

    from solforge.cache import cache_root

    if args.issue_python:  # the other code, or the comparison is of this code with itself
        theirs = subprocess.run([args.issue_python, "-c", "import solforge; print(solforge.__file__)"],
                                capture_output=True, text=True).stdout.strip()
        ours = str(Path(__file__).resolve().parents[1] / "src")
        if not theirs or theirs.startswith(ours):
            raise SystemExit(f"--issue-python {args.issue_python}: its solforge is {theirs or 'not importable'}, "
                             f"this checkout's; expected another checkout's (e.g. a git worktree at 97c505b)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="solforge-judging-") as tmp:
        cache = Path(tmp) / "cache"
        ceilings = cache_root() / "ceilings"
        if ceilings.is_dir():
            shutil.copytree(ceilings, cache / "ceilings")
        env = dict(os.environ, SOLFORGE_CACHE_DIR=str(cache))
        variants: list[tuple[str, list[str], str | None]] = [(n, f, None) for n, f in VARIANTS.items()]
        if args.issue_python:
            variants.append((ISSUE_VARIANT, [], args.issue_python))
        for round_index in range(args.rounds):
            k = round_index % len(variants)  # each variant goes first in turn
            order = variants[k:] + variants[:k]
            for name, flags, python in order:
                r = one_run(flags, args, Path(tmp) / "runs", env, python)
                r.update(variant=name, round=round_index + 1)
                rows.append(r)
                print(json.dumps(r), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print("| round | variant | evaluated | dedup hits | cut | search span s | candidates/min | process wall s "
          "| best fitness |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        hits = f"{r['duplicates']}" + (f" ({', '.join(f'{k} {v}' for k, v in r['dedup'].items())})"
                                       if r["dedup"] else "")
        print(f"| {r['round']} | {r['variant']} | {r['evaluated']} | {hits} | {r['cut']} | {r['span_s']:.1f} | "
              f"{r['per_min']:.2f} | {r['wall_s']:.1f} | {r['best']:.4f} |")
    print()
    others = [n for n in [*VARIANTS, ISSUE_VARIANT] if n != "new" and any(r["variant"] == n for r in rows)]
    print("| round | " + " | ".join(f"new / {n} candidates/min" for n in others) + " |")
    print("| ---: |" + " ---: |" * len(others))
    ratios: dict[str, list[float]] = {n: [] for n in others}
    for i in range(1, args.rounds + 1):
        new = next(r for r in rows if r["round"] == i and r["variant"] == "new")
        for n in others:
            other = next(r for r in rows if r["round"] == i and r["variant"] == n)
            ratios[n].append(new["per_min"] / other["per_min"])
        print(f"| {i} | " + " | ".join(f"{ratios[n][-1]:.2f}" for n in others) + " |")
    for n in others:
        print(f"\nmedian ratio new / {n} over rounds: {statistics.median(ratios[n]):.2f} (goal >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
