"""The archive of one evolutionary search run: one SQLite database, `<runs_root>/<run-id>/archive.sqlite`.

It holds the run, its candidates (sources as a FlashInfer Trace Solution, parents, the
diff to the first parent, parameters, map-elites cell), every per-workload Trace of
every timing round, the committed lineage, operators' notes, a resource ledger (GPU
seconds, wall seconds, LLM tokens, USD) and the map-elites elites. The tables, the
typed records and the derived columns (hashes, diff, fitness) are in `archive_schema`.

Crash safety. The database is in WAL mode with `synchronous=FULL`, and every state
change (a candidate with its parents and its proposal cost; a timing round with all its
traces, the candidate's new state and its evaluation cost; a lineage commit; an elite
update) is one `BEGIN IMMEDIATE … COMMIT` transaction. A `kill -9` at any moment
therefore leaves the database as of the last commit: no candidate without its parents,
no round without all its traces, no state ahead of its data. What is lost is only work
in flight: candidates still `proposed` or `evaluating`, which `in_flight()` lists on
resume. A round whose first (non-re-timed) search evaluation already exists is
refused, so nothing is evaluated twice. Not covered: a disk that lies about fsync, and
two writers — `Archive.open` takes an exclusive lock file, so a second writer on the
same run is refused rather than interleaved.

Concurrency. One writer, the controller's main thread: operators return their
candidates, notes and costs to it, and evaluation threads send it their Traces, so no
other thread ever touches the archive. The connection enforces that (sqlite3's
`check_same_thread`): a call from another thread raises `sqlite3.ProgrammingError`.
Other processes may read while it writes (`Archive.open(run_dir, read_only=True)`): WAL
readers see the last committed state and never block the writer.

Held-out evaluations are kept apart: a round is held-out when its workloads are
(`Workload.solforge.held_out`, or the evaluation says so), it never changes the
candidate's fitness, and only `evaluations(..., held_out=True)` and
`failures_by_status(held_out=True)` return anything of it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO

from solforge.search.archive_schema import (
    DDL,
    OLDEST_READABLE_VERSION,
    SCHEMA_VERSION,
    USAGE_SUMS,
    AddOutcome,
    AddResult,
    CandidateRecord,
    CandidateState,
    Cell,
    EliteCell,
    EliteOutcome,
    EvaluationRound,
    HistoryPoint,
    JsonValue,
    LineageEntry,
    NoteKind,
    NoteRecord,
    ResourceTotals,
    ResourceUsage,
    RunBudget,
    RunInfo,
    RunStatus,
    TrialRecord,
    WinnerRecord,
    cell_json,
    insert_cost,
    insert_note,
    is_held_out,
    migrate,
    params_hash,
    read_candidates,
    read_elites,
    read_lineage,
    read_notes,
    read_rounds,
    read_run,
    read_usage,
    solution_diff,
    source_hash,
)
from solforge.search.fitness import Fitness, Verdict, judge, sol_score_of
from solforge.spec import EvaluationStatus, Solution, SpecError, Trace

DEFAULT_RUNS_ROOT = Path("solforge-runs")
ARCHIVE_FILE = "archive.sqlite"
LOCK_FILE = "archive.lock"
# How long a statement waits for a lock held by another connection (a reader's checkpoint).
BUSY_TIMEOUT_S = 10.0

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class StateError(ValueError):
    """A candidate was moved along a transition its state does not allow."""


class NewerSchemaError(SpecError):
    """The archive was written by a newer solforge (its schema version is above ours)."""


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


# -- the archive ------------------------------------------------------------------------

_IN_FLIGHT = (CandidateState.proposed, CandidateState.evaluating)


class Archive:
    """One run's archive. Make one with `Archive.create`, reopen it with `Archive.open`;
    close it (or use it as a context manager) to release the writer lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool, lock: IO[bytes] | None) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only
        self._lock = lock
        self.damaged: str | None = None  # why SQLite refused the file as a whole (a salvaged read)
        self._compile_only: bool | None = None

    @classmethod
    def create(
        cls,
        problem: str,
        *,
        device: str,
        strategy: str,
        operators: Sequence[str],
        seed: int,
        budget: RunBudget | None = None,
        config: Mapping[str, JsonValue] | None = None,
        runs_root: str | Path = DEFAULT_RUNS_ROOT,
        run_id: str | None = None,
    ) -> Archive:
        """Create `<runs_root>/<run_id>/archive.sqlite` for a new run of definition `problem`,
        status `running`. `run_id` defaults to `<problem>-<YYYYmmdd-HHMMSS>-<4 hex>`.
        Raises SpecError when `run_id` is not one directory name or the run exists."""
        if run_id is None:
            stem = re.sub(r"[^A-Za-z0-9._-]", "-", problem).lstrip("._-") or "run"
            run_id = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        if not _RUN_ID.fullmatch(run_id):
            raise SpecError(f"run_id: expected one directory name of letters, digits, '.', '_', '-', got {run_id!r}")
        run_dir = Path(runs_root) / run_id
        path = run_dir / ARCHIVE_FILE
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _take_writer_lock(run_dir)
        try:
            if path.exists():
                raise SpecError(f"{path}: run '{run_id}' already exists (reopen it with Archive.open to resume)")
            conn = _connect(path, read_only=False)
        except BaseException:
            lock.close()
            raise
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file itself
            with _transaction(conn):
                for stmt in DDL:
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                conn.execute(
                    "INSERT INTO runs (id, run_id, problem, device, strategy, operators_json, seed, budget_json,"
                    " config_json, status, created_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, problem, device, strategy, _json(list(operators)), int(seed),
                     _json(asdict(budget or RunBudget())), _json(dict(config or {})),
                     RunStatus.running.value, time.time()),
                )
        except BaseException:
            conn.close()
            lock.close()
            raise
        return cls(conn, path, read_only=False, lock=lock)

    @classmethod
    def open(cls, run_dir: str | Path, *, read_only: bool = False, salvage: bool = False) -> Archive:
        """Open the archive in `run_dir` (`<runs_root>/<run-id>`). As the writer (the
        default) it takes the run's lock file; to resume, `set_status(RunStatus.running)`
        and re-queue `in_flight()`. `read_only=True` is for other processes watching a run
        (and for the report).

        An archive of an older schema version is migrated (`archive_schema.migrate`): in
        place by the writer, on an in-memory copy for a reader (which then sees the file
        as of the moment it opened it). `salvage=True` (read-only only) reads a file that
        SQLite refuses as a whole (cut short by a kill or a full disk, a damaged page) as
        far as it is sound: it is reopened with `PRAGMA writable_schema = ON` on a
        read-only connection, which makes SQLite read the pages that are there rather than
        refuse the file because its header promises more; `damaged` then says why, and
        each read may still raise sqlite3.DatabaseError for a part that is gone.

        Raises NewerSchemaError (a SpecError) for an archive written by a newer
        solforge; SpecError when there is no archive, it is not one, it is unreadable
        (without `salvage`), or another process is writing it.
        """
        if salvage and not read_only:
            raise ValueError("Archive.open: salvage is for reading (read_only=True)")
        path = Path(run_dir) / ARCHIVE_FILE
        if not path.is_file():
            raise SpecError(f"{path}: no such archive (expected a run directory made by Archive.create)")
        lock = None if read_only else _take_writer_lock(Path(run_dir))
        conn, damaged = None, None
        try:
            try:
                conn = _connect(path, read_only=read_only)
                version = _schema_version(conn, path)
            except sqlite3.DatabaseError as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                if not salvage:
                    raise SpecError(f"{path}: not a readable solforge archive ({_first_line(exc)})") from None
                damaged = _first_line(exc)
                conn = _tolerant_connection(path)
                try:
                    version = _schema_version(conn, path)
                except sqlite3.DatabaseError as again:
                    raise SpecError(f"{path}: not a readable solforge archive ({_first_line(again)})") from None
            if version < SCHEMA_VERSION:
                if read_only:
                    conn = _migrated_copy(conn, version, path)
                else:
                    with _transaction(conn):
                        migrate(conn, version)
        except BaseException:
            if conn is not None:
                conn.close()
            if lock is not None:
                lock.close()
            raise
        archive = cls(conn, path, read_only=read_only, lock=lock)
        archive.damaged = damaged
        return archive

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise PermissionError(f"{self.path}: opened read-only")
        with _transaction(self._conn) as c:
            yield c

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One snapshot across several statements while another process writes.
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            self._conn.execute("COMMIT")

    # -- the run ------------------------------------------------------------------------

    @property
    def compile_only(self) -> bool:
        """Whether the run judges candidates on compile reports instead of timings
        (`solforge evolve --compile-only`, kept in the run's config)."""
        if self._compile_only is None:
            self._compile_only = bool((self.run.config.get("search") or {}).get("compile_only"))
        return self._compile_only

    @property
    def run(self) -> RunInfo:
        """The run's record, read afresh (a read-only watcher sees status changes)."""
        return read_run(self._conn)

    def set_status(self, status: RunStatus) -> RunInfo:
        """Mark the run running (on resume; clears finished_at), finished or interrupted
        (sets finished_at to now). Returns the updated run."""
        finished_at = None if status is RunStatus.running else time.time()
        with self._write() as c:
            c.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = 1", (status.value, finished_at))
        return self.run

    # -- candidates ---------------------------------------------------------------------

    def add_candidate(
        self,
        solution: Solution,
        *,
        operator: str,
        family: str,
        parent_ids: Sequence[int] = (),
        parameters: Mapping[str, JsonValue] | None = None,
        island: int = 0,
        cell: Cell | None = None,
        rationale: str = "",
        usage: ResourceUsage | None = None,
        notes: Sequence[tuple[NoteKind, str]] = (),
        normalized_hash: str | None = None,
        artifact_hash: str | None = None,
    ) -> AddResult:
        """Add a proposed candidate, unless it duplicates one already in the run.

        A duplicate has, checked in this order, the same `source_hash` (outcome
        `duplicate_source`); for a candidate with parameters, the same (family,
        parameters) (`duplicate_parameters`); the same `normalized_hash` (the sources with
        local names, comments and docstrings normalized away: `search.dedup`;
        `duplicate_normalized`); the same `artifact_hash` (what it compiles to:
        `duplicate_artifact`). Nothing is inserted but a row of the `duplicates` ledger
        (`dedup_counts`); the result carries the existing candidate, and the caller
        skips evaluation. Pass `parameters` only when the sources are generated from
        (family, parameters) (tune, seed); hand-written sources (agent) leave them empty
        and dedup on their sources alone.

        In the same transaction, a non-empty `rationale` is kept as the candidate's
        rationale note, `notes` ((kind, text) pairs: what the operator's step reported)
        are kept with it, and `usage` (the proposal's LLM tokens, USD, wall seconds) is
        charged to `operator`: to the new candidate, or to no candidate for a duplicate,
        since it was spent and said all the same. Raises ValueError for a solution of another
        definition, more than two, repeated or unknown parents, or parameters or a cell
        that are not JSON.
        """
        problem = self.run.problem
        if solution.definition != problem:
            raise ValueError(f"solution.definition: '{solution.definition}', this run is of '{problem}'")
        if not operator:
            raise ValueError("operator: expected the name of the operator that proposed the candidate")
        parents = [int(p) for p in parent_ids]
        if len(parents) > 2 or len(set(parents)) != len(parents):
            raise ValueError(f"parent_ids: expected zero, one or two distinct ids, got {parents}")
        params = dict(parameters or {})
        p_hash = params_hash(family, params) if params else None
        s_hash = source_hash(solution)
        cell_key = None if cell is None else cell_json(cell)
        now = time.time()
        with self._write() as c:
            outcome, dup = AddOutcome.duplicate_source, _one(c, "source_hash = ?", (s_hash,))
            if dup is None and p_hash is not None:
                outcome, dup = AddOutcome.duplicate_parameters, _one(c, "params_hash = ?", (p_hash,))
            if dup is None and normalized_hash is not None:
                outcome, dup = AddOutcome.duplicate_normalized, _first(c, "normalized_hash = ?", (normalized_hash,))
            if dup is None and artifact_hash is not None:
                outcome, dup = AddOutcome.duplicate_artifact, _first(c, "artifact_hash = ?", (artifact_hash,))
            if dup is not None:
                c.execute("INSERT INTO duplicates (candidate_id, kind, operator, created_at) VALUES (?, ?, ?, ?)",
                          (dup.id, outcome.value, operator, now))
                if usage is not None:
                    insert_cost(c, operator, usage, None, now)
                for kind, text in notes:
                    insert_note(c, kind, text, None, operator, now)
                return AddResult(outcome, dup)
            known = [_one(c, "id = ?", (p,)) for p in parents]
            unknown = [p for p, k in zip(parents, known) if k is None]
            if unknown:
                raise ValueError(f"parent_ids: unknown candidate id(s) {unknown}")
            diff = solution_diff(known[0].solution, solution) if known else ""
            cid = c.execute(
                "INSERT INTO candidates (operator, solution_json, diff, language, parameters_json, family,"
                " source_hash, params_hash, island, cell_json, state, created_at, normalized_hash, artifact_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # The solution in full: exclude_unset would drop defaults that were set in place.
                (operator, solution.model_dump_json(), diff, solution.spec.language.value, _json(params), family,
                 s_hash, p_hash, island, cell_key, CandidateState.proposed.value, now, normalized_hash,
                 artifact_hash),
            ).lastrowid
            c.executemany(
                "INSERT INTO candidate_parents (child_id, position, parent_id) VALUES (?, ?, ?)",
                [(cid, pos, p) for pos, p in enumerate(parents)],
            )
            if rationale:
                insert_note(c, NoteKind.rationale, rationale, cid, operator, now)
            for kind, text in notes:
                insert_note(c, kind, text, cid, operator, now)
            if usage is not None:
                insert_cost(c, operator, usage, cid, now)
            return AddResult(AddOutcome.added, self._candidate(c, cid))

    def start_evaluation(self, candidate_id: int) -> CandidateRecord:
        """proposed → evaluating. Also accepted from evaluating: re-queuing a candidate that
        was in flight when the run died. Raises StateError from any other state, KeyError
        for an unknown id."""
        with self._write() as c:
            self._move(c, candidate_id, _IN_FLIGHT, CandidateState.evaluating)
            return self._candidate(c, candidate_id)

    def drop(self, candidate_id: int, reason: str, *, operator: str | None = None) -> CandidateRecord:
        """proposed | evaluating → dropped (it will never be evaluated), with `reason` kept as
        a failure note in the same transaction. Raises StateError from any other state."""
        with self._write() as c:
            self._move(c, candidate_id, _IN_FLIGHT, CandidateState.dropped)
            insert_note(c, NoteKind.failure, reason, candidate_id, operator, time.time())
            return self._candidate(c, candidate_id)

    def _move(self, c: sqlite3.Connection, cid: int, allowed: tuple[CandidateState, ...], to: CandidateState) -> None:
        state = self._candidate(c, cid).state
        if state not in allowed:
            raise StateError(f"candidate {cid}: cannot go from {state.value} to {to.value}")
        c.execute("UPDATE candidates SET state = ? WHERE id = ?", (to.value, cid))

    def record_evaluation(
        self,
        candidate_id: int,
        traces: Sequence[Trace],
        *,
        retimed: bool = False,
        usage: ResourceUsage | None = None,
        cell: Cell | None = None,
    ) -> EvaluationRound:
        """Store one timing round: every per-workload Trace, the round's fitness and its
        verdict (`fitness.judge`; compile-level in a compile-only run), the SOL score
        vector, and `usage` (GPU and wall seconds) charged to the candidate's operator, all
        in one transaction.

        The round is held-out when its workloads are; a round mixing search and held-out
        workloads is refused. A first search round (`retimed=False`) needs the candidate
        `evaluating` and makes it `evaluated` with this fitness. A re-timing
        (`retimed=True`) needs it `evaluated` and replaces its fitness: the re-timed
        figure is the one a new elite is accepted on; when both rounds are `unstable` the
        candidate keeps the slower figure and becomes sound (confirmed twice, judged
        pessimistically). Held-out rounds need it `evaluated` and never touch its fitness.
        `cell` replaces the candidate's map-elites cell (one known only after evaluation:
        registers and shared memory from its compile report). Raises StateError for a
        round its state does not allow (a second first round among them: nothing is
        evaluated twice), ValueError for traces of another definition or solution, a
        repeated workload, or what `fitness.judge` refuses.
        """
        held = {is_held_out(t) for t in traces}
        if len(held) > 1:
            raise ValueError("traces: search and held-out workloads mixed; record held-out traces in their own round")
        held_out = held == {True}
        judged = judge(traces, compile_only=self.compile_only)
        fitness = judged.value
        uuids = [t.workload.uuid for t in traces]
        if len(set(uuids)) != len(uuids):
            raise ValueError(f"traces: a workload appears twice in one round ({uuids})")
        kind = "held-out" if held_out else "search"
        with self._write() as c:
            cand = self._candidate(c, candidate_id)
            expected = (self.run.problem, cand.solution.name)
            for t in traces:
                if (t.definition, t.solution) != expected:
                    raise ValueError(f"trace for workload {t.workload.uuid}: is of {(t.definition, t.solution)}, "
                                     f"expected {expected}")
            (done,) = c.execute(
                "SELECT count(*) FROM rounds WHERE candidate_id = ? AND held_out = ?", (candidate_id, held_out)
            ).fetchone()
            if retimed != (done > 0):
                raise StateError(
                    f"candidate {candidate_id}: has {done} {kind} round(s); "
                    + ("pass retimed=True to time it again" if done else "re-timing needs a first round")
                )
            needed = CandidateState.evaluated if held_out or retimed else CandidateState.evaluating
            if cand.state is not needed:
                raise StateError(f"candidate {candidate_id}: a {kind} round needs state {needed.value}, "
                                 f"it is {cand.state.value}")
            now = time.time()
            scores = {t.workload.uuid: sol_score_of(t) for t in traces}
            round_id = c.execute(
                "INSERT INTO rounds (candidate_id, held_out, round_index, retimed, fitness, sol_scores_json,"
                " created_at, verdict, reason, penalty) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (candidate_id, held_out, done, done > 0, fitness, json.dumps(scores), now, judged.verdict.value,
                 judged.reason, judged.penalty),
            ).lastrowid
            c.executemany(
                "INSERT INTO evaluations (round_id, workload_uuid, status, latency_ms, sol_fraction, sol_score,"
                " trace_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(round_id, *_trace_columns(t), t.model_dump_json()) for t in traces],
            )
            if not held_out:
                kept, sound = _kept_fitness(cand, judged, retimed)
                c.execute(
                    "UPDATE candidates SET state = ?, fitness = ?, evaluated_at = coalesce(evaluated_at, ?),"
                    " verdict = ?, sound = ?, cell_json = coalesce(?, cell_json) WHERE id = ?",
                    (CandidateState.evaluated.value, kept, now, judged.verdict.value, sound,
                     None if cell is None else cell_json(cell), candidate_id),
                )
            if usage is not None:
                insert_cost(c, cand.operator, usage, candidate_id, now)
            return read_rounds(c, "id = ?", (round_id,))[0]

    # -- resume -------------------------------------------------------------------------

    def in_flight(self) -> list[CandidateRecord]:
        """Candidates proposed or being evaluated, with no search round: the work a crash
        lost, for the controller to re-queue (`start_evaluation` accepts both). By id."""
        with self._read() as c:
            return read_candidates(c, "state IN (?, ?)", tuple(s.value for s in _IN_FLIGHT))

    def evaluated_ids(self) -> set[int]:
        """Ids of the candidates that have a search evaluation."""
        rows = self._conn.execute("SELECT id FROM candidates WHERE state = ?", (CandidateState.evaluated.value,))
        return {r["id"] for r in rows}

    def is_evaluated(self, source_hash: str) -> bool:
        """Whether the candidate with this `source_hash` (see `source_hash()`) has been evaluated."""
        row = self._conn.execute(
            "SELECT 1 FROM candidates WHERE source_hash = ? AND state = ?",
            (source_hash, CandidateState.evaluated.value),
        ).fetchone()
        return row is not None

    # -- queries ------------------------------------------------------------------------

    def candidate(self, candidate_id: int) -> CandidateRecord:
        """One candidate. Raises KeyError for an id not in this run."""
        with self._read() as c:
            return self._candidate(c, candidate_id)

    def _candidate(self, c: sqlite3.Connection, cid: int) -> CandidateRecord:
        found = _one(c, "id = ?", (cid,))
        if found is None:
            raise KeyError(f"candidate {cid}: no such candidate in this run")
        return found

    def candidates(self, state: CandidateState | None = None) -> list[CandidateRecord]:
        """Every candidate (in `state`, when given), by id."""
        with self._read() as c:
            if state is None:
                return read_candidates(c, "1")
            return read_candidates(c, "state = ?", (state.value,))

    def best(self, k: int = 1, *, sound_only: bool = False) -> list[CandidateRecord]:
        """The `k` fittest evaluated candidates by search fitness, fittest first; those
        whose fitness is sound come before those whose figure is not (cut, unstable and
        unconfirmed, unscored), whatever its value, and `sound_only` leaves the latter out.
        A tie goes to the earlier candidate."""
        with self._read() as c:
            ids = c.execute(
                "SELECT id FROM candidates WHERE state = ? AND sound >= ? ORDER BY sound DESC, fitness DESC, id"
                " LIMIT ?",
                (CandidateState.evaluated.value, int(sound_only), k),
            ).fetchall()
            return [self._candidate(c, r["id"]) for r in ids]

    def trials(self, family: str | None = None) -> list[TrialRecord]:
        """Every candidate generated from a seed kernel's parameters (of `family`, when
        given), by id, without its sources: the tuner's history. `fitness` None: not yet
        evaluated (in flight) or dropped (`state` says which)."""
        clauses, params = ["params_hash IS NOT NULL"], []
        if family is not None:
            clauses.append("family = ?")
            params.append(family)
        rows = self._conn.execute(
            f"SELECT id, family, parameters_json, state, fitness, verdict, sound FROM candidates WHERE {' AND '.join(clauses)}"
            " ORDER BY id", tuple(params))
        return [TrialRecord(r["id"], r["family"], json.loads(r["parameters_json"]), CandidateState(r["state"]),
                            r["fitness"], r["verdict"], bool(r["sound"])) for r in rows]

    def dedup_counts(self) -> dict[AddOutcome, int]:
        """Proposals that were not evaluated because they duplicated a kept candidate, by
        kind (every duplicate kind listed, zeros included)."""
        counts = {k: 0 for k in AddOutcome if k is not AddOutcome.added}
        for r in self._conn.execute("SELECT kind, count(*) AS n FROM duplicates GROUP BY kind"):
            counts[AddOutcome(r["kind"])] = r["n"]
        return counts

    # -- facts of the run as a whole ----------------------------------------------------

    def set_fact(self, key: str, value: JsonValue) -> None:
        """Keep a fact about the run under `key` (JSON), replacing any earlier value:
        "winner" (`record_winner`), "device" (the device's identity, datasheet and
        calibrated peaks, so a report drawn on another machine has its roofs),
        "search_workloads" (the uuids searched, so a resume searches the same ones)."""
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO run_facts (key, value_json, updated_at) VALUES (?, ?, ?)",
                      (key, _json(value), time.time()))

    def fact(self, key: str) -> JsonValue:
        """The fact kept under `key`, or None."""
        row = self._conn.execute("SELECT value_json FROM run_facts WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value_json"]) if row is not None else None

    def facts(self) -> dict[str, JsonValue]:
        """Every fact of the run, by key."""
        return {r["key"]: json.loads(r["value_json"]) for r in self._conn.execute("SELECT * FROM run_facts")}

    def record_winner(self, candidate_id: int | None, *, generalizes: bool | None, how: str) -> None:
        """Keep the run's winner (the candidate exported, or None when none passed the
        held-out gate), whether the best candidate generalized, and how it was chosen (one
        line). Raises KeyError for an unknown candidate id."""
        if candidate_id is not None:
            self.candidate(candidate_id)
        self.set_fact("winner", {"candidate_id": candidate_id, "generalizes": generalizes, "how": how})

    def winner(self) -> WinnerRecord | None:
        """The winner as `record_winner` kept it; None when the run never recorded one
        (it has not finished, or it was written by a solforge that did not record it)."""
        fact = self.fact("winner")
        if not isinstance(fact, dict):
            return None
        return WinnerRecord(fact.get("candidate_id"), fact.get("generalizes"), str(fact.get("how", "")))

    def evaluations(self, candidate_id: int, held_out: bool = False) -> list[EvaluationRound]:
        """The candidate's search rounds, first round first; with `held_out=True` only its
        held-out rounds instead. Operators are never given held-out rounds. Raises KeyError
        for an unknown id."""
        with self._read() as c:
            self._candidate(c, candidate_id)
            return read_rounds(c, "candidate_id = ? AND held_out = ?", (candidate_id, held_out))

    def failures_by_status(self, held_out: bool = False) -> dict[EvaluationStatus, int]:
        """How many per-workload evaluations ended in each status, every status listed
        (zeros included), over search rounds (or held-out ones). First rounds only, so a
        re-timed candidate counts once."""
        counts = dict.fromkeys(EvaluationStatus, 0)
        rows = self._conn.execute(
            "SELECT e.status, count(*) AS n FROM evaluations e JOIN rounds r ON r.id = e.round_id"
            " WHERE r.held_out = ? AND r.round_index = 0 GROUP BY e.status",
            (held_out,),
        )
        for r in rows:
            counts[EvaluationStatus(r["status"])] = r["n"]
        return counts

    def history(self) -> list[HistoryPoint]:
        """Fitness over time: each evaluated candidate in the order its first search round
        was recorded, with its current fitness and the best fitness up to it."""
        rows = self._conn.execute(
            "SELECT id, created_at, evaluated_at, fitness FROM candidates WHERE state = ? ORDER BY evaluated_at, id",
            (CandidateState.evaluated.value,),
        )
        out, best = [], -math.inf
        for r in rows:
            best = max(best, r["fitness"])
            out.append(HistoryPoint(r["evaluated_at"], r["created_at"], r["id"], r["fitness"], best))
        return out

    # -- lineage and notes --------------------------------------------------------------

    def commit(self, candidate_id: int, reason: str) -> LineageEntry:
        """Append an evaluated candidate to the lineage as the next version (1, 2, ...) with
        its current fitness. Raises StateError when it is not evaluated or already in it."""
        with self._write() as c:
            cand = self._candidate(c, candidate_id)
            if cand.state is not CandidateState.evaluated:
                raise StateError(f"candidate {candidate_id}: only an evaluated candidate can be committed")
            if c.execute("SELECT 1 FROM lineage WHERE candidate_id = ?", (candidate_id,)).fetchone():
                raise StateError(f"candidate {candidate_id}: already in the lineage")
            (version,) = c.execute("SELECT coalesce(max(version), 0) + 1 FROM lineage").fetchone()
            c.execute(
                "INSERT INTO lineage (version, candidate_id, fitness, reason, committed_at) VALUES (?, ?, ?, ?, ?)",
                (version, candidate_id, cand.fitness, reason, time.time()),
            )
            return read_lineage(c)[-1]

    def lineage(self) -> list[LineageEntry]:
        """The committed versions, oldest first."""
        return read_lineage(self._conn)

    def add_note(
        self, kind: NoteKind, text: str, *, candidate_id: int | None = None, operator: str | None = None
    ) -> NoteRecord:
        """Keep an operator's free text: its rationale, why something failed, or what the
        stall supervisor decided. Raises KeyError for an unknown candidate id."""
        with self._write() as c:
            if candidate_id is not None:
                self._candidate(c, candidate_id)
            note_id = insert_note(c, kind, text, candidate_id, operator, time.time())
            return read_notes(c, "id = ?", (note_id,))[0]

    def notes(self, candidate_id: int | None = None, kind: NoteKind | None = None) -> list[NoteRecord]:
        """Notes, oldest first; only one candidate's and/or one kind's when given."""
        clauses, params = ["1"], []
        if candidate_id is not None:
            clauses.append("candidate_id = ?")
            params.append(candidate_id)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind.value)
        return read_notes(self._conn, " AND ".join(clauses), tuple(params))

    # -- resources ----------------------------------------------------------------------

    def charge(self, operator: str, usage: ResourceUsage, *, candidate_id: int | None = None) -> None:
        """Append one entry to the resource ledger, for costs not charged through
        `add_candidate`, `log_step` or `record_evaluation`."""
        with self._write() as c:
            if candidate_id is not None:
                self._candidate(c, candidate_id)
            insert_cost(c, operator, usage, candidate_id, time.time())

    def log_step(self, operator: str, notes: Sequence[tuple[NoteKind, str]], usage: ResourceUsage) -> None:
        """Keep an operator step that proposed no candidate: its notes ((kind, text) pairs)
        and what it spent, charged to no candidate, in one transaction."""
        now = time.time()
        with self._write() as c:
            for kind, text in notes:
                insert_note(c, kind, text, None, operator, now)
            insert_cost(c, operator, usage, None, now)

    def totals(self) -> ResourceTotals:
        """Run totals, and totals per operator: GPU seconds, wall seconds, LLM tokens, USD."""
        with self._read() as c:
            run = read_usage(c.execute(f"SELECT {USAGE_SUMS} FROM costs").fetchone())
            rows = c.execute(f"SELECT operator, {USAGE_SUMS} FROM costs GROUP BY operator ORDER BY operator")
            return ResourceTotals(run=run, by_operator={r["operator"]: read_usage(r) for r in rows})

    def candidate_usage(self, candidate_id: int) -> ResourceUsage:
        """Everything charged to one candidate: its proposal and every evaluation round."""
        row = self._conn.execute(f"SELECT {USAGE_SUMS} FROM costs WHERE candidate_id = ?", (candidate_id,))
        return read_usage(row.fetchone())

    # -- map-elites ---------------------------------------------------------------------

    def set_elite(self, island: int, cell: Cell, candidate_id: int) -> EliteOutcome:
        """Make an evaluated candidate the elite of (island, cell) when the cell is empty or
        the candidate is strictly fitter than the incumbent, stored with its current
        fitness. Raises StateError when the candidate is not evaluated."""
        key = cell_json(cell)
        with self._write() as c:
            cand = self._candidate(c, candidate_id)
            if cand.fitness is None:
                raise StateError(f"candidate {candidate_id}: only an evaluated candidate can be an elite")
            row = c.execute("SELECT fitness FROM elites WHERE island = ? AND cell_json = ?", (island, key)).fetchone()
            if row is not None and cand.fitness <= row["fitness"]:
                return EliteOutcome.kept
            c.execute(
                "INSERT OR REPLACE INTO elites (island, cell_json, candidate_id, fitness, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (island, key, candidate_id, cand.fitness, time.time()),
            )
            return EliteOutcome.new_cell if row is None else EliteOutcome.replaced

    def elites(self, island: int | None = None) -> list[EliteCell]:
        """The elites of one island (or of all), by island then cell."""
        if island is None:
            return read_elites(self._conn, "1", ())
        return read_elites(self._conn, "island = ?", (island,))


# -- connections, transactions, the writer lock -----------------------------------------


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and committed here, explicitly, never
    # implicitly by the sqlite3 module.
    target, uri = (path.resolve().as_uri() + "?mode=ro", True) if read_only else (str(path), False)
    conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    if not read_only:
        # FULL: a commit is on disk before it returns. Commits are seconds apart; fsync is cheap.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front, so a transaction never fails half-way on a
    # lock upgrade.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also when COMMIT itself failed
            conn.execute("ROLLBACK")
        raise


def _take_writer_lock(run_dir: Path) -> IO[bytes]:
    """An exclusive flock on `<run_dir>/archive.lock`, held until closed; the kernel drops it
    when the process dies, so a killed run never leaves a stale lock."""
    import fcntl  # POSIX only, and only the writer needs it

    f = (run_dir / LOCK_FILE).open("ab")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise SpecError(f"{run_dir}: another process is writing this run (open it read_only=True to watch)") from None
    return f


def _first(c: sqlite3.Connection, where: str, params: tuple) -> CandidateRecord | None:
    """The earliest candidate matching `where` (these keys are not unique: two kept
    candidates may share one when the first was kept under --no-cache)."""
    row = c.execute(f"SELECT id FROM candidates WHERE {where} ORDER BY id LIMIT 1", params).fetchone()
    return _one(c, "id = ?", (row["id"],)) if row is not None else None


def _one(c: sqlite3.Connection, where: str, params: tuple) -> CandidateRecord | None:
    found = read_candidates(c, where, params)
    return found[0] if found else None


def _trace_columns(t: Trace) -> tuple[str, str, float | None, float | None, float | None]:
    ev = t.evaluation
    assert ev is not None  # fitness_of refused workload-only traces
    sol = ev.solforge.sol
    latency_ms = ev.performance.latency_ms if ev.performance is not None else None
    return (t.workload.uuid, ev.status.value, latency_ms, sol and sol.sol_fraction, sol and sol.sol_score)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _schema_version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version. Raises NewerSchemaError above ours, SpecError for a file
    that is not an archive or too old; sqlite3.DatabaseError for a damaged file."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"schema_version", "runs"} <= tables:
        raise SpecError(f"{path}: not a solforge archive (no schema_version table)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None or not isinstance(row[0], int):
        raise SpecError(f"{path}: not a solforge archive (schema_version: {row[0] if row else 'no row'})")
    version = row[0]
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(f"{path}: schema_version: {version} is newer than this solforge reads "
                               f"({SCHEMA_VERSION}); upgrade solforge to read this run")
    if version < OLDEST_READABLE_VERSION:
        raise SpecError(f"{path}: schema_version: {version}, this solforge reads versions "
                        f"{OLDEST_READABLE_VERSION} to {SCHEMA_VERSION}")
    return version


def _tolerant_connection(path: Path) -> sqlite3.Connection:
    # mode=ro: nothing is written. writable_schema: SQLite then reads the pages a truncated
    # file still has instead of refusing the file because its header promises more.
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                           isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA writable_schema = ON")
    return conn


def _migrated_copy(conn: sqlite3.Connection, version: int, path: Path) -> sqlite3.Connection:
    """An in-memory copy of `conn`'s database brought to SCHEMA_VERSION (for a reader of an
    older file, which must not write it). Closes `conn`."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    memory.row_factory = sqlite3.Row
    try:
        conn.backup(memory)
    except sqlite3.DatabaseError as exc:
        memory.close()
        raise SpecError(f"{path}: a damaged archive of schema version {version}, which this solforge reads "
                        f"only when whole ({_first_line(exc)})") from None
    finally:
        conn.close()
    memory.execute("PRAGMA foreign_keys = ON")
    with _transaction(memory):
        migrate(memory, version)
    return memory


def _kept_fitness(cand: CandidateRecord, judged: Fitness, retimed: bool) -> tuple[float, bool]:
    """(the candidate's fitness, whether it is sound) after a search round judged `judged`."""
    if judged.verdict.selectable:
        return judged.value, True
    if retimed and judged.verdict is Verdict.unstable and cand.verdict == Verdict.unstable.value:
        # unstable twice: confirmed, at the slower of the two figures
        return min(judged.value, cand.fitness if cand.fitness is not None else judged.value), judged.value > 0
    return judged.value, False
