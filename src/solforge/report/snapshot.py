"""Reading one run's archive for the report, as far as it is sound.

`read_snapshot(run_dir)` opens `<run_dir>/archive.sqlite` read-only through
`solforge.search.Archive` and reads everything the report shows through its public
methods, each part on its own: a part that fails to read (a damaged page, a row that no
longer parses) is left out and named in `RunSnapshot.unreadable`, and the rest is kept.

Damage. A file cut short (a copy interrupted, a disk filled up) is the common case:
SQLite then refuses even the pages that are intact, because the header promises more
pages than the file holds. The archive's salvaging read (`Archive.open(run_dir,
read_only=True, salvage=True)`) reads the pages that are there instead of refusing the
whole file, and the report reads candidates one by one when the candidate list as a
whole cannot be read.

Bad input raises SpecError, one line: a directory without an archive, a file that is
not a solforge archive, an archive of a newer schema than this solforge reads, or one
damaged past its run record.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from solforge.search import ARCHIVE_FILE, Archive, HistoryPoint
from solforge.spec import SpecError

if TYPE_CHECKING:
    from solforge.search import (
        CandidateRecord,
        EvaluationRound,
        LineageEntry,
        ResourceTotals,
        RunInfo,
        WinnerRecord,
    )
    from solforge.search.archive_schema import NoteRecord

T = TypeVar("T")

# When the candidate list is unreadable, ids are tried one by one (they are dense,
# 1, 2, 3, ...); this many failures in a row end the probe.
PROBE_GIVE_UP_AFTER = 32


@dataclass
class RunSnapshot:
    """Everything the report shows of one run, read once. Lists are in the archive's order
    (candidates by id, rounds first round first)."""

    run_dir: Path
    run: RunInfo | None  # None when the run record could not be read
    candidates: list[CandidateRecord] = field(default_factory=list)
    search_rounds: dict[int, list[EvaluationRound]] = field(default_factory=dict)  # candidate id -> rounds
    held_out_rounds: dict[int, list[EvaluationRound]] = field(default_factory=dict)
    history: list[HistoryPoint] = field(default_factory=list)  # evaluated candidates in evaluation order
    lineage: list[LineageEntry] = field(default_factory=list)
    notes: list[NoteRecord] = field(default_factory=list)
    totals: ResourceTotals | None = None
    winner: WinnerRecord | None = None  # as `solforge evolve` recorded it; None before it finished (or older runs)
    device: dict | None = None  # the run's device: identity, datasheet and calibrated peaks (`Archive.fact("device")`)
    duplicates: dict[str, int] = field(default_factory=dict)  # dedup hits by kind
    damaged: str | None = None  # why SQLite refused the file as a whole, when it did
    unreadable: list[str] = field(default_factory=list)  # one line per part that could not be read

    def candidate(self, candidate_id: int) -> CandidateRecord | None:
        return next((c for c in self.candidates if c.id == candidate_id), None)


def resolve_run_dir(run: str | Path, runs_root: str | Path) -> Path:
    """The run directory of `run`: a path to a run directory, or a run id under `runs_root`.
    Raises SpecError when neither names a directory holding an archive."""
    given = Path(run)
    candidates = [given] if given.is_dir() else [Path(runs_root) / str(run)]
    run_dir = candidates[0]
    if not run_dir.is_dir():
        raise SpecError(f"{run}: no such run (not a directory, and no run '{run}' in {runs_root})")
    if not (run_dir / ARCHIVE_FILE).is_file():
        raise SpecError(f"{run_dir}: not a run directory (no {ARCHIVE_FILE}; runs are made by `solforge evolve`)")
    return run_dir


def read_snapshot(run_dir: str | Path) -> RunSnapshot:
    """Read the run in `run_dir` (see the module docstring). Raises SpecError for a
    directory that is not a run, an archive of a newer schema, or one damaged past its run
    record."""
    run_dir = Path(run_dir)
    archive, damaged = _open_archive(run_dir)
    snap = RunSnapshot(run_dir=run_dir, run=None, damaged=damaged)
    with archive:
        snap.run = _attempt(snap, "the run record", lambda: archive.run)
        if snap.run is None:
            raise SpecError(f"{archive.path}: damaged past its run record ({snap.unreadable[-1]})")
        listed = _attempt(snap, "the candidate list", archive.candidates)
        snap.candidates = listed if listed is not None else _probe_candidates(archive, snap)
        for c in snap.candidates:
            snap.search_rounds[c.id] = _attempt(
                snap, f"candidate {c.id}: its search rounds", lambda c=c: archive.evaluations(c.id)) or []
            snap.held_out_rounds[c.id] = _attempt(
                snap, f"candidate {c.id}: its held-out rounds",
                lambda c=c: archive.evaluations(c.id, held_out=True)) or []
        history = _attempt(snap, "the fitness history", archive.history)
        snap.history = history if history is not None else _history_from(snap.candidates)
        snap.lineage = _attempt(snap, "the lineage", archive.lineage) or []
        snap.notes = _attempt(snap, "the notes", archive.notes) or []
        snap.totals = _attempt(snap, "the cost ledger", archive.totals)
        snap.winner = _attempt(snap, "the winner record", archive.winner)
        device = _attempt(snap, "the device record", lambda: archive.fact("device"))
        snap.device = device if isinstance(device, dict) else None
        counts = _attempt(snap, "the dedup counts", archive.dedup_counts) or {}
        snap.duplicates = {k.value: v for k, v in counts.items()}
    return snap


def _attempt(snap: RunSnapshot, what: str, read: Callable[[], T]) -> T | None:
    """`read()`, or None with a line in `snap.unreadable` when the archive cannot give it:
    sqlite3.DatabaseError for a damaged page, ValueError (pydantic, json) for a row that
    does not parse."""
    try:
        return read()
    except (sqlite3.DatabaseError, ValueError) as exc:
        snap.unreadable.append(f"{what}: {_first_line(exc)}")
        return None


def _probe_candidates(archive: Archive, snap: RunSnapshot) -> list[CandidateRecord]:
    found: list[CandidateRecord] = []
    failed_ids: list[int] = []
    candidate_id, misses = 1, 0
    while misses < PROBE_GIVE_UP_AFTER:
        try:
            found.append(archive.candidate(candidate_id))
            misses = 0
        except KeyError:
            break  # the table's b-tree is sound here and has no such row: the end
        except (sqlite3.DatabaseError, ValueError):
            failed_ids.append(candidate_id)
            misses += 1
        candidate_id += 1
    # Ids past the last readable one may simply not exist; only gaps are known losses.
    last = found[-1].id if found else 0
    lost = [i for i in failed_ids if i < last]
    if lost:
        snap.unreadable.append(f"candidates {_ranges(lost)}: their records")
    if failed_ids and failed_ids[-1] > last:
        snap.unreadable.append(f"candidates from #{last + 1} on: their records (there may be none)")
    return found


def _history_from(candidates: list[CandidateRecord]) -> list[HistoryPoint]:
    """The fitness history from the candidate records, as `Archive.history` orders it."""
    evaluated = sorted((c for c in candidates if c.fitness is not None and c.evaluated_at is not None),
                       key=lambda c: (c.evaluated_at, c.id))
    out, best = [], -math.inf
    for c in evaluated:
        best = max(best, c.fitness)
        out.append(HistoryPoint(c.evaluated_at, c.created_at, c.id, c.fitness, best))
    return out


def _open_archive(run_dir: Path) -> tuple[Archive, str | None]:
    """The archive, read-only and salvaged as far as it is sound (`Archive.open(...,
    salvage=True)`), and why SQLite refused it as a whole (None when it did not). A newer
    schema raises `NewerSchemaError`, a one-line SpecError."""
    path = run_dir / ARCHIVE_FILE
    if not run_dir.is_dir() or not path.is_file():
        raise SpecError(f"{run_dir}: not a run directory (no {ARCHIVE_FILE}; runs are made by `solforge evolve`)")
    archive = Archive.open(run_dir, read_only=True, salvage=True)
    return archive, archive.damaged


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _ranges(ids: list[int]) -> str:
    """'1-3, 7' for [1, 2, 3, 7]."""
    out, start = [], None
    for i, n in enumerate(ids):
        if start is None:
            start = n
        if i + 1 == len(ids) or ids[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out)
