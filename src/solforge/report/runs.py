"""The runs under a runs root (`solforge-runs/` by default): list them, and export one as a
FlashInfer-Trace dataset directory that FlashInfer-Bench's tools (and `solforge bench
--dataset`) read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from solforge.report.analysis import all_traces, resolve_definition
from solforge.report.snapshot import read_snapshot
from solforge.search import ARCHIVE_FILE, Archive
from solforge.spec import Dataset, SpecError, write_dataset


@dataclass(frozen=True)
class RunListing:
    """One line of `solforge runs list`. `error` says why the rest is missing."""

    run_dir: Path
    run_id: str
    problem: str | None = None
    device: str | None = None
    strategy: str | None = None
    status: str | None = None
    created_at: float | None = None  # Unix time, seconds
    evaluated: int = 0
    best_fitness: float | None = None
    error: str | None = None


def list_runs(runs_root: str | Path) -> list[RunListing]:
    """Every run directory (one holding an archive) directly under `runs_root`, oldest
    first. An archive that cannot be opened is listed with the reason. Raises SpecError when
    `runs_root` is not a directory."""
    root = Path(runs_root)
    if not root.is_dir():
        raise SpecError(f"{root}: no such runs directory (runs are made by `solforge evolve`; see --runs-root)")
    out = [_listing(d) for d in sorted(root.iterdir()) if (d / ARCHIVE_FILE).is_file()]
    return sorted(out, key=lambda r: (r.created_at is None, r.created_at or 0.0, r.run_id))


def _listing(run_dir: Path) -> RunListing:
    try:
        with Archive.open(run_dir, read_only=True) as archive:
            run, history = archive.run, archive.history()
    except (SpecError, sqlite3.DatabaseError, ValueError) as exc:
        return RunListing(run_dir, run_dir.name, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return RunListing(run_dir, run.run_id, run.problem, run.device, run.strategy, run.status.value, run.created_at,
                      len(history), max((h.fitness for h in history), default=None))


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run as a FlashInfer-Trace dataset directory at `out_dir`: its definition,
    the workloads its traces name, every candidate's Solution and every Trace of every
    timing round (search and held-out, re-timings included). Returns `out_dir`.

    Written to a temporary sibling directory and renamed into place, so `out_dir` holds
    the whole export or nothing. Raises SpecError when `run_dir` is not a readable run,
    `out_dir` exists and is not empty, or the run's definition cannot be found (neither
    in the dataset the run used nor in the built-in suite).
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpecError(f"--out {out}: exists and is not an empty directory")
    snap = read_snapshot(run_dir)
    definition, listed, where = resolve_definition(snap)
    if definition is None:
        raise SpecError(f"{run_dir}: cannot export without the run's definition ({where})")
    traces = all_traces(snap)
    seen: dict[str, object] = {}
    for w in listed:
        seen[w.uuid] = w
    for t in traces:
        seen.setdefault(t.workload.uuid, t.workload)
    named = {t.workload.uuid for t in traces}
    ds = Dataset(definitions={definition.name: definition},
                 workloads={definition.name: [w for u, w in seen.items() if u in named]},
                 solutions={definition.name: [c.solution for c in snap.candidates]},
                 traces=traces)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_dataset(ds, tmp)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SpecError(f"--out {out}: cannot write the export ({exc.strerror or exc})") from None
    return out
