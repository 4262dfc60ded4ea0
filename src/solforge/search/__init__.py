"""The search: the archive of a run (SQLite), and, built on it, strategies, operators and
the controller loop (`solforge evolve`). The search only ever sees Traces."""

from __future__ import annotations

from solforge.search.archive import (
    ARCHIVE_FILE,
    DEFAULT_RUNS_ROOT,
    Archive,
    StateError,
)
from solforge.search.archive_schema import (
    AddOutcome,
    AddResult,
    CandidateRecord,
    CandidateState,
    Cell,
    EliteCell,
    EliteOutcome,
    EvaluationRound,
    HistoryPoint,
    LineageEntry,
    Note,
    NoteKind,
    ResourceTotals,
    ResourceUsage,
    RunBudget,
    RunInfo,
    RunStatus,
    WorkloadEvaluation,
    fitness_of,
    params_hash,
    solution_diff,
    source_hash,
)

__all__ = [
    "ARCHIVE_FILE",
    "DEFAULT_RUNS_ROOT",
    "AddOutcome",
    "AddResult",
    "Archive",
    "CandidateRecord",
    "CandidateState",
    "Cell",
    "EliteCell",
    "EliteOutcome",
    "EvaluationRound",
    "HistoryPoint",
    "LineageEntry",
    "Note",
    "NoteKind",
    "ResourceTotals",
    "ResourceUsage",
    "RunBudget",
    "RunInfo",
    "RunStatus",
    "StateError",
    "WorkloadEvaluation",
    "fitness_of",
    "params_hash",
    "solution_diff",
    "source_hash",
]
