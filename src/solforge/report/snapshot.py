"""Reading one run's archive for the report, as far as it is sound.

`read_snapshot(run_dir)` opens `<run_dir>/archive.sqlite` read-only through
`solforge.search.Archive` and reads everything the report shows through its public
methods, each part on its own: a part that fails to read (a damaged page, a row that no
longer parses) is left out and named in `RunSnapshot.unreadable`, and the rest is kept.

Damage. `Archive.open` refuses a file that SQLite calls malformed. A file cut short
(a copy interrupted, a disk filled up) is the common case: SQLite then refuses even the
pages that are intact, because the header promises more pages than the file holds. The
report reopens such a file with `PRAGMA writable_schema = ON` on a read-only connection,
which makes SQLite read the pages that are there instead of refusing the whole file
(it writes nothing: the connection is opened `mode=ro`), and reads candidates one by one
when the candidate list as a whole cannot be read.

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
from solforge.search.archive_schema import SCHEMA_VERSION
from solforge.spec import SpecError

if TYPE_CHECKING:
    from solforge.search import CandidateRecord, EvaluationRound, LineageEntry, ResourceTotals, RunInfo
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
    """The archive, read-only, and why SQLite refused it as a whole (None when it did not)."""
    path = run_dir / ARCHIVE_FILE
    if not run_dir.is_dir() or not path.is_file():
        raise SpecError(f"{run_dir}: not a run directory (no {ARCHIVE_FILE}; runs are made by `solforge evolve`)")
    try:
        return Archive.open(run_dir, read_only=True), None
    except SpecError as exc:
        version = stored_schema_version(path)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise SpecError(f"{path}: schema_version: {version} is newer than this solforge reads "
                            f"({SCHEMA_VERSION}); upgrade solforge to read this run") from None
        raise SpecError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        damaged = _first_line(exc)
    version = stored_schema_version(path)
    if not isinstance(version, int):
        raise SpecError(f"{path}: not a readable solforge archive ({damaged}; {version})")
    if version != SCHEMA_VERSION:
        newer = " is newer than this solforge reads" if version > SCHEMA_VERSION else ", this solforge reads"
        raise SpecError(f"{path}: schema_version: {version}{newer} ({SCHEMA_VERSION})")
    return Archive(_tolerant_connection(path), path, read_only=True, lock=None), damaged


def stored_schema_version(path: Path) -> int | str:
    """The archive's `schema_version` row, read straight from SQLite on a tolerant read-only
    connection; a one-line reason (str) when it cannot be read. Exists because
    `Archive.open` refuses other versions and damaged files without saying which."""
    try:
        conn = _tolerant_connection(path)
    except sqlite3.Error as exc:
        return _first_line(exc)
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row is not None else "schema_version: no row"
    except (sqlite3.Error, TypeError, ValueError) as exc:
        return f"schema_version: {_first_line(exc)}"
    finally:
        conn.close()


def _tolerant_connection(path: Path) -> sqlite3.Connection:
    # mode=ro: nothing is written. writable_schema: SQLite then reads the pages a truncated
    # file still has instead of refusing the file because its header promises more.
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA writable_schema = ON")
    return conn


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
