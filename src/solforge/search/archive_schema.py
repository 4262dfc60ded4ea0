"""What the archive stores: the SQLite tables of one search run, the typed records read
back from them, and how the derived columns are computed (the source and parameter
hashes that dedup keys on, the diff to the first parent). A round's fitness is
`solforge.search.fitness.fitness_of`.

One database holds one run, so `runs` has exactly one row and the other tables need no
run column. Every timestamp is Unix time in seconds (`time.time()`), stored as REAL so
that fitness-over-time plots need no parsing. Enums are stored as their values, and
CHECK constraints keep a hand-edited or half-understood database from drifting out of
the states the code knows.

Two choices worth knowing:

- Parents live in a join table (`candidate_parents`, position 0 or 1) rather than a
  JSON list: the foreign keys then guarantee every parent exists, "children of X" is an
  indexed query for the lineage tree in the report, and position 0 names the parent
  that the stored diff is taken against.
- A candidate's `fitness` is copied from its latest search round in the same
  transaction that writes the round. The rounds keep the full history; the copy lets
  `best(k)` read one index in order and lets a CHECK tie "evaluated" to "has a fitness".
  Its `verdict` (`search.fitness.Verdict`) says what the figure is worth, and `sound`
  whether a strategy may select on it (scored; compiled in a compile-only run; unstable
  only once a re-timing confirmed it, at the slower of its rounds).

Versions. Version 2 added the verdicts, the dedup keys (`normalized_hash`,
`artifact_hash`), the `duplicates` ledger and `run_facts` (the winner, the device's
peaks, the search workloads). `migrate(conn, 1)` brings a version-1 file up to date in
one transaction: the writer does it in place; a read-only reader does it on an
in-memory copy (`Archive.open`).
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Union

from solforge.spec import EvaluationStatus, Language, Solution, Trace

SCHEMA_VERSION = 2
OLDEST_READABLE_VERSION = 1  # older files are migrated (see `migrate`)

JsonValue = Union[str, int, float, bool, None, list["JsonValue"], dict[str, "JsonValue"]]
# A map-elites descriptor cell: one bin (or label, e.g. the kernel family) per descriptor.
Cell = tuple[Union[str, int, float, bool], ...]


class RunStatus(str, enum.Enum):
    """`running` also after a crash: a run killed with -9 had no chance to say otherwise."""

    running = "running"
    finished = "finished"
    interrupted = "interrupted"


class CandidateState(str, enum.Enum):
    """proposed → evaluating → evaluated | dropped."""

    proposed = "proposed"
    evaluating = "evaluating"
    evaluated = "evaluated"
    dropped = "dropped"


class NoteKind(str, enum.Enum):
    rationale = "rationale"
    failure = "failure"
    supervisor = "supervisor"


class AddOutcome(str, enum.Enum):
    """What `Archive.add_candidate` did. On a duplicate nothing was inserted and the caller
    skips evaluation."""

    added = "added"
    duplicate_source = "duplicate_source"  # same sources, language and entry point
    duplicate_parameters = "duplicate_parameters"  # same kernel family and parameter values
    duplicate_normalized = "duplicate_normalized"  # same source once names of locals, comments and docstrings are gone
    duplicate_artifact = "duplicate_artifact"  # same compiled artifact (numba's LLVM IR, Triton's PTX)


class EliteOutcome(str, enum.Enum):
    """What `Archive.set_elite` did with a cell."""

    new_cell = "new_cell"
    replaced = "replaced"
    kept = "kept"  # the incumbent is at least as fit; ties keep the incumbent


@dataclass(frozen=True)
class RunBudget:
    """Limits of a run; None means no limit on that resource. The controller enforces each
    one, and `--resume` restores them."""

    max_candidates: int | None = None  # evaluated candidates over the whole run
    max_wall_seconds: float | None = None  # wall-clock time of one invocation (a resume starts it afresh)
    max_cost_usd: float | None = None  # LLM cost over the whole run, US dollars

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RunBudget:
        """The budget stored in `runs.budget_json`. Keys this version does not know are
        left out: archives written before `max_gpu_seconds` was removed (it was never
        enforced) still open."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    problem: str  # the definition's name
    device: str  # e.g. "cuda:0"
    strategy: str  # e.g. "lineage", "map-elites"
    operators: tuple[str, ...]
    seed: int
    budget: RunBudget
    config: dict[str, JsonValue]  # the run's full configuration, as the controller wrote it
    status: RunStatus
    created_at: float  # Unix time, seconds
    finished_at: float | None  # set by finished / interrupted, cleared on resume


@dataclass(frozen=True)
class CandidateRecord:
    id: int
    parent_ids: tuple[int, ...]  # () seed, (p,) mutation, (p0, p1) crossover; the diff is against p0
    operator: str
    solution: Solution
    diff: str  # unified diff from the first parent's sources; "" without a parent
    parameters: dict[str, JsonValue]  # values the sources were generated from; {} for hand-written sources
    family: str  # kernel family, e.g. the seed kernel it descends from
    source_hash: str  # sha256 of sources, language and entry point (see source_hash())
    params_hash: str | None  # sha256 of (family, parameters); None when parameters is empty
    island: int
    cell: Cell | None  # map-elites descriptor cell
    state: CandidateState
    fitness: float | None  # of the latest search round; None until evaluated
    created_at: float  # Unix time, seconds
    evaluated_at: float | None  # when the first search round was recorded
    verdict: str | None = None  # `search.fitness.Verdict` value of its fitness; None until evaluated
    sound: bool = False  # whether strategies may select on its fitness (see the module docstring)
    normalized_hash: str | None = None  # sha256 of its normalized sources (`search.dedup`)
    artifact_hash: str | None = None  # sha256 of its compiled artifact, where one was computed

    @property
    def language(self) -> Language:
        return self.solution.spec.language


@dataclass(frozen=True)
class AddResult:
    outcome: AddOutcome
    candidate: CandidateRecord  # the new candidate, or the existing one it duplicates

    @property
    def is_duplicate(self) -> bool:
        return self.outcome is not AddOutcome.added


@dataclass(frozen=True)
class WorkloadEvaluation:
    """One per-workload Trace, with the columns queries filter on pulled out of it."""

    workload_uuid: str
    status: EvaluationStatus
    latency_ms: float | None  # median latency; None when the workload failed before timing
    sol_fraction: float | None  # T_SOL / T_k
    sol_score: float | None  # SOL-ExecBench score, 0.5 at the baseline, 1 at SOL
    trace: Trace


@dataclass(frozen=True)
class EvaluationRound:
    """One timing round of one candidate over all the workloads of one kind (search or
    held-out). Round 0 is the first evaluation; later rounds are re-timings."""

    id: int
    candidate_id: int
    round_index: int
    held_out: bool
    fitness: float  # 0 when any workload failed, else the geometric mean SOL score
    sol_scores: dict[str, float | None]  # workload uuid → SOL score; None where the workload failed
    workloads: tuple[WorkloadEvaluation, ...]
    created_at: float  # Unix time, seconds
    verdict: str = "scored"  # `search.fitness.Verdict` value: what `fitness` is worth
    reason: str = ""  # why the verdict is not "scored", one line
    penalty: float = 1.0  # what selection multiplies the fitness by (register spills)

    @property
    def retimed(self) -> bool:
        return self.round_index > 0


@dataclass(frozen=True)
class LineageEntry:
    version: int  # 1, 2, ... in commit order
    candidate_id: int
    fitness: float  # the candidate's fitness when committed
    reason: str
    committed_at: float  # Unix time, seconds


@dataclass(frozen=True)
class NoteRecord:
    """A note as stored: an operator's rationale, why something failed, or what the stall
    supervisor decided."""

    id: int
    kind: NoteKind
    text: str
    candidate_id: int | None
    operator: str | None
    created_at: float  # Unix time, seconds


@dataclass(frozen=True)
class ResourceUsage:
    """Resources spent; one ledger entry, or a sum of them."""

    gpu_seconds: float = 0.0  # device time held by evaluation workers
    wall_seconds: float = 0.0  # wall-clock time of the step (proposal or evaluation)
    llm_input_tokens: int = 0
    llm_output_tokens: int = 0
    cost_usd: float = 0.0  # LLM cost in US dollars, at the provider's published prices

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"ResourceUsage.{f.name}: expected >= 0, got {getattr(self, f.name)}")

    def __add__(self, other: ResourceUsage) -> ResourceUsage:
        return ResourceUsage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class ResourceTotals:
    run: ResourceUsage
    by_operator: dict[str, ResourceUsage] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialRecord:
    """One parameter point of a seed kernel family, as the tuner's history sees it."""

    candidate_id: int
    family: str
    parameters: dict[str, JsonValue]
    state: CandidateState
    fitness: float | None  # None until evaluated
    verdict: str | None  # `search.fitness.Verdict` value; None until evaluated
    sound: bool = False  # whether a strategy may select on `fitness` (the candidate's `sound`)


@dataclass(frozen=True)
class WinnerRecord:
    """The run's winner as the held-out gate decided it."""

    candidate_id: int | None  # None: no candidate passed the gate
    generalizes: bool | None  # the best candidate passed held-out (None: there were no held-out workloads)
    how: str  # one line: how it was chosen


@dataclass(frozen=True)
class EliteCell:
    island: int
    cell: Cell
    candidate_id: int
    fitness: float
    updated_at: float  # Unix time, seconds


@dataclass(frozen=True)
class HistoryPoint:
    """One evaluated candidate on the fitness-over-time curve, in evaluation order."""

    evaluated_at: float  # Unix time, seconds
    created_at: float
    candidate_id: int
    fitness: float
    best_so_far: float


# -- derived columns: hashes and diff --------------------------------------------


def source_hash(solution: Solution) -> str:
    """sha256 (hex) of what runs: every source file (path and content, in path order), the
    language, the entry point and the calling convention. Name, author and description
    are left out, so renaming a kernel does not make it new."""
    h = hashlib.sha256()
    spec = solution.spec
    parts = [spec.language.value, spec.entry_point, str(spec.destination_passing_style)]
    for src in sorted(solution.sources, key=lambda s: s.path):
        parts += [src.path, src.content]
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: no two part lists collide
        h.update(data)
    return h.hexdigest()


def params_hash(family: str, parameters: Mapping[str, JsonValue]) -> str:
    """sha256 (hex) of (family, parameters) as canonical JSON (sorted keys). Raises ValueError
    when the parameters are not JSON (NaN, infinity, objects)."""
    payload = json.dumps([family, dict(parameters)], sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _diff_lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def solution_diff(parent: Solution, child: Solution) -> str:
    """Unified diff (difflib, 3 lines of context) from `parent`'s sources to `child`'s, file by
    file in path order; an added or removed file diffs against /dev/null. "" when the
    sources are identical."""
    old = {s.path: s.content for s in parent.sources}
    new = {s.path: s.content for s in child.sources}
    out: list[str] = []
    for path in sorted(old.keys() | new.keys()):
        out += difflib.unified_diff(
            _diff_lines(old.get(path, "")),
            _diff_lines(new.get(path, "")),
            fromfile=f"a/{path}" if path in old else "/dev/null",
            tofile=f"b/{path}" if path in new else "/dev/null",
        )
    return "".join(out)


def is_held_out(trace: Trace) -> bool:
    """Whether the trace is of a held-out workload (by the workload or the evaluation)."""
    return trace.workload.held_out or (trace.evaluation is not None and trace.evaluation.solforge.held_out)


def cell_json(cell: Sequence[str | int | float | bool]) -> str:
    """A descriptor cell as the JSON key it is stored under. Raises ValueError for anything
    but a sequence of str, int, float or bool."""
    if not all(isinstance(v, (str, int, float, bool)) for v in cell):
        raise ValueError(f"cell: expected a tuple of bins (str, int, float or bool), got {tuple(cell)!r}")
    return json.dumps(list(cell), separators=(",", ":"), allow_nan=False)


_STATES = ", ".join(f"'{s.value}'" for s in CandidateState)
# `search.fitness.Verdict`'s values (the schema spells them out: a CHECK cannot import)
VERDICTS = ("scored", "failed", "cut", "unstable", "unscored", "compiled")
_VERDICTS = ", ".join(f"'{v}'" for v in VERDICTS)
_DUPLICATE_KINDS = ", ".join(f"'{k.value}'" for k in AddOutcome if k is not AddOutcome.added)

# What version 2 added beyond new columns: made by `DDL` for a new file, by `migrate` for an old one.
_V2_INDEXES = (
    "CREATE INDEX candidates_normalized ON candidates (normalized_hash) WHERE normalized_hash IS NOT NULL",
    "CREATE INDEX candidates_artifact ON candidates (artifact_hash) WHERE artifact_hash IS NOT NULL",
)
_V2_TABLES = (
    # One row per proposal that duplicated a kept candidate (it was not evaluated): the
    # dedup hits, by kind, for the summary and the report.
    f"""CREATE TABLE duplicates (
        id INTEGER PRIMARY KEY,
        candidate_id INTEGER NOT NULL REFERENCES candidates (id),
        kind TEXT NOT NULL CHECK (kind IN ({_DUPLICATE_KINDS})),
        operator TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    # Facts about the run as a whole, each a JSON value under a key: "winner", "device",
    # "search_workloads" (see `Archive.set_fact`).
    """CREATE TABLE run_facts (
        key TEXT PRIMARY KEY,
        value_json TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
)
_V2_COLUMNS = (
    ("candidates", f"verdict TEXT CHECK (verdict IS NULL OR verdict IN ({_VERDICTS}))"),
    ("candidates", "sound INTEGER NOT NULL DEFAULT 0 CHECK (sound IN (0, 1))"),
    ("candidates", "normalized_hash TEXT"),
    ("candidates", "artifact_hash TEXT"),
    ("rounds", f"verdict TEXT NOT NULL DEFAULT 'scored' CHECK (verdict IN ({_VERDICTS}))"),
    ("rounds", "reason TEXT NOT NULL DEFAULT ''"),
    ("rounds", "penalty REAL NOT NULL DEFAULT 1 CHECK (penalty > 0 AND penalty <= 1)"),
)


def migrate(c: sqlite3.Connection, version: int) -> None:
    """Bring an archive of `version` (>= OLDEST_READABLE_VERSION) to SCHEMA_VERSION, in the
    caller's transaction. Version 1 -> 2: the new columns and tables; a version-1 round's
    verdict is "scored" when its fitness is > 0, else "failed" (version 1 had no other),
    and its candidates are sound when scored."""
    if version < 2:
        for table, column in _V2_COLUMNS:
            c.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        for stmt in (*_V2_INDEXES, *_V2_TABLES):
            c.execute(stmt)
        c.execute("UPDATE rounds SET verdict = CASE WHEN fitness > 0 THEN 'scored' ELSE 'failed' END")
        c.execute("UPDATE candidates SET verdict = CASE WHEN fitness > 0 THEN 'scored' ELSE 'failed' END,"
                  " sound = (fitness > 0) WHERE fitness IS NOT NULL")
    c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
_RUN_STATUSES = ", ".join(f"'{s.value}'" for s in RunStatus)
_NOTE_KINDS = ", ".join(f"'{k.value}'" for k in NoteKind)
_EVAL_STATUSES = ", ".join(f"'{s.value}'" for s in EvaluationStatus)

# Statements run in order, in one transaction, when an archive is created.
DDL: tuple[str, ...] = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    f"""CREATE TABLE runs (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        run_id TEXT NOT NULL,
        problem TEXT NOT NULL,
        device TEXT NOT NULL,
        strategy TEXT NOT NULL,
        operators_json TEXT NOT NULL,
        seed INTEGER NOT NULL,
        budget_json TEXT NOT NULL,
        config_json TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({_RUN_STATUSES})),
        created_at REAL NOT NULL,
        finished_at REAL
    )""",
    f"""CREATE TABLE candidates (
        id INTEGER PRIMARY KEY,
        operator TEXT NOT NULL,
        solution_json TEXT NOT NULL,
        diff TEXT NOT NULL,
        language TEXT NOT NULL,
        parameters_json TEXT NOT NULL,
        family TEXT NOT NULL,
        source_hash TEXT NOT NULL UNIQUE,
        params_hash TEXT,
        island INTEGER NOT NULL,
        cell_json TEXT,
        state TEXT NOT NULL CHECK (state IN ({_STATES})),
        fitness REAL,
        created_at REAL NOT NULL,
        evaluated_at REAL,
        verdict TEXT CHECK (verdict IS NULL OR verdict IN ({_VERDICTS})),
        sound INTEGER NOT NULL DEFAULT 0 CHECK (sound IN (0, 1)),
        normalized_hash TEXT,
        artifact_hash TEXT,
        CHECK ((state = 'evaluated') = (fitness IS NOT NULL AND evaluated_at IS NOT NULL))
    )""",
    # Two tuned candidates may not share (family, parameters); hand-written ones have no params_hash.
    "CREATE UNIQUE INDEX candidates_params ON candidates (params_hash) WHERE params_hash IS NOT NULL",
    # in_flight() and evaluated_ids() search by state; best(k) also reads it in fitness order.
    "CREATE INDEX candidates_state_fitness ON candidates (state, fitness DESC, id)",
    *_V2_INDEXES,
    """CREATE TABLE candidate_parents (
        child_id INTEGER NOT NULL REFERENCES candidates (id),
        position INTEGER NOT NULL CHECK (position IN (0, 1)),
        parent_id INTEGER NOT NULL REFERENCES candidates (id),
        PRIMARY KEY (child_id, position),
        CHECK (parent_id < child_id)
    )""",
    "CREATE INDEX candidate_parents_parent ON candidate_parents (parent_id)",
    f"""CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        candidate_id INTEGER NOT NULL REFERENCES candidates (id),
        held_out INTEGER NOT NULL CHECK (held_out IN (0, 1)),
        round_index INTEGER NOT NULL CHECK (round_index >= 0),
        retimed INTEGER NOT NULL CHECK (retimed = (round_index > 0)),
        fitness REAL NOT NULL CHECK (fitness >= 0),
        sol_scores_json TEXT NOT NULL,
        created_at REAL NOT NULL,
        verdict TEXT NOT NULL DEFAULT 'scored' CHECK (verdict IN ({_VERDICTS})),
        reason TEXT NOT NULL DEFAULT '',
        penalty REAL NOT NULL DEFAULT 1 CHECK (penalty > 0 AND penalty <= 1),
        UNIQUE (candidate_id, held_out, round_index)
    )""",
    f"""CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY,
        round_id INTEGER NOT NULL REFERENCES rounds (id),
        workload_uuid TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({_EVAL_STATUSES})),
        latency_ms REAL,
        sol_fraction REAL,
        sol_score REAL,
        trace_json TEXT NOT NULL,
        UNIQUE (round_id, workload_uuid)
    )""",
    "CREATE INDEX evaluations_status ON evaluations (status)",
    """CREATE TABLE lineage (
        version INTEGER PRIMARY KEY CHECK (version >= 1),
        candidate_id INTEGER NOT NULL UNIQUE REFERENCES candidates (id),
        fitness REAL NOT NULL,
        reason TEXT NOT NULL,
        committed_at REAL NOT NULL
    )""",
    f"""CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ({_NOTE_KINDS})),
        text TEXT NOT NULL,
        candidate_id INTEGER REFERENCES candidates (id),
        operator TEXT,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX notes_candidate ON notes (candidate_id)",
    "CREATE INDEX notes_kind ON notes (kind)",
    # A ledger, appended to: a candidate is charged at proposal (LLM tokens) and at each
    # evaluation round (GPU time); a duplicate proposal is charged with no candidate.
    """CREATE TABLE costs (
        id INTEGER PRIMARY KEY,
        candidate_id INTEGER REFERENCES candidates (id),
        operator TEXT NOT NULL,
        gpu_seconds REAL NOT NULL CHECK (gpu_seconds >= 0),
        wall_seconds REAL NOT NULL CHECK (wall_seconds >= 0),
        llm_input_tokens INTEGER NOT NULL CHECK (llm_input_tokens >= 0),
        llm_output_tokens INTEGER NOT NULL CHECK (llm_output_tokens >= 0),
        cost_usd REAL NOT NULL CHECK (cost_usd >= 0),
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX costs_candidate ON costs (candidate_id)",
    "CREATE INDEX costs_operator ON costs (operator)",
    """CREATE TABLE elites (
        island INTEGER NOT NULL,
        cell_json TEXT NOT NULL,
        candidate_id INTEGER NOT NULL REFERENCES candidates (id),
        fitness REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (island, cell_json)
    )""",
    *_V2_TABLES,
)


# -- rows ↔ records ---------------------------------------------------------------------
# Each reader takes a connection with row_factory = sqlite3.Row.


def read_run(c: sqlite3.Connection) -> RunInfo:
    r = c.execute("SELECT * FROM runs WHERE id = 1").fetchone()
    return RunInfo(
        run_id=r["run_id"],
        problem=r["problem"],
        device=r["device"],
        strategy=r["strategy"],
        operators=tuple(json.loads(r["operators_json"])),
        seed=r["seed"],
        budget=RunBudget.from_json(json.loads(r["budget_json"])),
        config=json.loads(r["config_json"]),
        status=RunStatus(r["status"]),
        created_at=r["created_at"],
        finished_at=r["finished_at"],
    )


def read_candidates(c: sqlite3.Connection, where: str, params: tuple = ()) -> list[CandidateRecord]:
    """Candidates matching `where` (a fixed SQL clause; values go in `params`), by id."""
    out = []
    for r in c.execute(f"SELECT * FROM candidates WHERE {where} ORDER BY id", params).fetchall():
        parents = c.execute("SELECT parent_id FROM candidate_parents WHERE child_id = ? ORDER BY position", (r["id"],))
        out.append(
            CandidateRecord(
                id=r["id"],
                parent_ids=tuple(p["parent_id"] for p in parents),
                operator=r["operator"],
                solution=Solution.model_validate_json(r["solution_json"]),
                diff=r["diff"],
                parameters=json.loads(r["parameters_json"]),
                family=r["family"],
                source_hash=r["source_hash"],
                params_hash=r["params_hash"],
                island=r["island"],
                cell=None if r["cell_json"] is None else tuple(json.loads(r["cell_json"])),
                state=CandidateState(r["state"]),
                fitness=r["fitness"],
                created_at=r["created_at"],
                evaluated_at=r["evaluated_at"],
                verdict=r["verdict"],
                sound=bool(r["sound"]),
                normalized_hash=r["normalized_hash"],
                artifact_hash=r["artifact_hash"],
            )
        )
    return out


def read_rounds(c: sqlite3.Connection, where: str, params: tuple) -> list[EvaluationRound]:
    """Rounds matching `where` with their per-workload evaluations, by round index."""
    out = []
    for r in c.execute(f"SELECT * FROM rounds WHERE {where} ORDER BY round_index", params).fetchall():
        evals = c.execute("SELECT * FROM evaluations WHERE round_id = ? ORDER BY id", (r["id"],))
        workloads = tuple(
            WorkloadEvaluation(
                workload_uuid=e["workload_uuid"],
                status=EvaluationStatus(e["status"]),
                latency_ms=e["latency_ms"],
                sol_fraction=e["sol_fraction"],
                sol_score=e["sol_score"],
                trace=Trace.model_validate_json(e["trace_json"]),
            )
            for e in evals
        )
        out.append(
            EvaluationRound(
                id=r["id"],
                candidate_id=r["candidate_id"],
                round_index=r["round_index"],
                held_out=bool(r["held_out"]),
                fitness=r["fitness"],
                sol_scores=json.loads(r["sol_scores_json"]),
                workloads=workloads,
                created_at=r["created_at"],
                verdict=r["verdict"],
                reason=r["reason"],
                penalty=r["penalty"],
            )
        )
    return out


def read_notes(c: sqlite3.Connection, where: str, params: tuple) -> list[NoteRecord]:
    rows = c.execute(f"SELECT * FROM notes WHERE {where} ORDER BY id", params)
    return [
        NoteRecord(r["id"], NoteKind(r["kind"]), r["text"], r["candidate_id"], r["operator"], r["created_at"]) for r in rows
    ]


def read_lineage(c: sqlite3.Connection) -> list[LineageEntry]:
    rows = c.execute("SELECT * FROM lineage ORDER BY version")
    return [LineageEntry(r["version"], r["candidate_id"], r["fitness"], r["reason"], r["committed_at"]) for r in rows]


def read_elites(c: sqlite3.Connection, where: str, params: tuple) -> list[EliteCell]:
    rows = c.execute(f"SELECT * FROM elites WHERE {where} ORDER BY island, cell_json", params)
    return [
        EliteCell(r["island"], tuple(json.loads(r["cell_json"])), r["candidate_id"], r["fitness"], r["updated_at"])
        for r in rows
    ]


_USAGE_FIELDS = ("gpu_seconds", "wall_seconds", "llm_input_tokens", "llm_output_tokens", "cost_usd")
USAGE_SUMS = ", ".join(f"coalesce(sum({f}), 0) AS {f}" for f in _USAGE_FIELDS)


def read_usage(r: sqlite3.Row) -> ResourceUsage:
    """A row of `SELECT {USAGE_SUMS} FROM costs ...` as one ResourceUsage."""
    return ResourceUsage(
        gpu_seconds=float(r["gpu_seconds"]),
        wall_seconds=float(r["wall_seconds"]),
        llm_input_tokens=int(r["llm_input_tokens"]),
        llm_output_tokens=int(r["llm_output_tokens"]),
        cost_usd=float(r["cost_usd"]),
    )


def insert_cost(c: sqlite3.Connection, operator: str, u: ResourceUsage, candidate_id: int | None, now: float) -> None:
    c.execute(
        f"INSERT INTO costs (candidate_id, operator, {', '.join(_USAGE_FIELDS)}, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (candidate_id, operator, *(getattr(u, f) for f in _USAGE_FIELDS), now),
    )


def insert_note(
    c: sqlite3.Connection, kind: NoteKind, text: str, candidate_id: int | None, operator: str | None, now: float
) -> int:
    cur = c.execute(
        "INSERT INTO notes (kind, text, candidate_id, operator, created_at) VALUES (?, ?, ?, ?, ?)",
        (kind.value, text, candidate_id, operator, now),
    )
    return cur.lastrowid
