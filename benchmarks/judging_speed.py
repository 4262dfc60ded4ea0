"""How fast does the search judge candidates? Issue 15 §2's goal: on the CPU,
candidates/min for rmsnorm_h4096 >= 3x the current code path's, side by side.

Two variants of the same `solforge evolve` command (same problem, device, operators,
random seed, workloads and candidate count), run alternately in rounds so that the
load of a shared machine falls on both alike:
- new: the defaults (dedup by parameter point, normalized source and numba's IR; the
  cut-off at 3x the best's latency; compile caches under the cache directory);
- old: `--no-cache --no-cut` (dedup by parameter point only, no cut-off, fresh compile
  caches for every run).

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

candidates/min = evaluated candidates / the search's span x 60, the span being from
the first candidate's creation to the last first-round evaluation, read from the run's
archive (so the baselines before the search and the held-out gate after it are not
in it; the process's whole wall time is reported beside it). Dedup hits are the
archive's duplicates (proposals not evaluated), cuts the evaluations whose timing was
cut.

    .venv/bin/python benchmarks/judging_speed.py [--candidates 20] [--rounds 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBLEM = "rmsnorm_h4096"
VARIANTS = {"new": [], "old (--no-cache --no-cut)": ["--no-cache", "--no-cut"]}
_RUN = re.compile(r"run (\S+): (\d+) candidates evaluated; not evaluated as duplicates: (\d+).*?"
                  r"timings cut at [\d.]+x the best: (\d+)", re.S)


def one_run(flags: list[str], args: argparse.Namespace, runs_root: Path, env: dict) -> dict:
    from solforge.search import Archive

    cmd = [sys.executable, "-m", "solforge.cli", "evolve", PROBLEM, "--device", "cpu", "--max-candidates",
           str(args.candidates), "--seed", str(args.seed), "--baselines", "eager", "--workloads", args.workloads,
           "--runs-root", str(runs_root), *flags]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout_s)
    wall = time.monotonic() - t0
    out = re.sub(r"\s+", " ", proc.stdout)
    m = _RUN.search(out)
    if m is None:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}, no run summary:\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-2000:]}")
    run_id, evaluated, dups, cuts = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    archive = Archive.open(runs_root / run_id, read_only=True)
    try:
        history = archive.history()
        span = max(h.evaluated_at for h in history) - min(c.created_at for c in archive.candidates())
        best = max(h.fitness for h in history)
        dedup = {k.value: v for k, v in archive.dedup_counts().items() if v}
    finally:
        archive.close()
    return {"run": run_id, "exit": proc.returncode, "evaluated": evaluated, "duplicates": dups, "dedup": dedup,
            "cut": cuts, "span_s": span, "wall_s": wall, "per_min": evaluated / span * 60, "best": best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", default="smoke", help="evolve's --workloads: smoke (default) or auto")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=Path("bench-out/judging_speed.json"))
    args = parser.parse_args()
    import os

    from solforge.cache import cache_root

    rows = []
    with tempfile.TemporaryDirectory(prefix="solforge-judging-") as tmp:
        cache = Path(tmp) / "cache"
        ceilings = cache_root() / "ceilings"
        if ceilings.is_dir():
            shutil.copytree(ceilings, cache / "ceilings")
        env = dict(os.environ, SOLFORGE_CACHE_DIR=str(cache))
        for round_index in range(args.rounds):
            order = list(VARIANTS.items())
            if round_index % 2:  # alternate which goes first
                order.reverse()
            for name, flags in order:
                r = one_run(flags, args, Path(tmp) / "runs", env)
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
    print("| round | new / old candidates/min |")
    print("| ---: | ---: |")
    ratios = []
    for i in range(1, args.rounds + 1):
        new = next(r for r in rows if r["round"] == i and r["variant"] == "new")
        old = next(r for r in rows if r["round"] == i and r["variant"] != "new")
        ratios.append(new["per_min"] / old["per_min"])
        print(f"| {i} | {ratios[-1]:.2f} |")
    print(f"\nmedian ratio over rounds: {statistics.median(ratios):.2f} (goal >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
