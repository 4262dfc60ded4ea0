"""The search: the archive of a run (SQLite), and, built on it, fitness, strategies, the
operator registry and its operators, the controller loop and `evolve()` (`solforge
evolve`). The search only ever sees Traces.

Module map: `archive` / `archive_schema` (the SQLite store and its records), `fitness`
(fitness and the geometric mean), `context` (what an operator sees and returns:
`SearchContext`, `Candidate`, `NoCandidate`, `EvaluatedCandidate`), `operators` (the
registry and the LLM-free operators), `strategies` (lineage, map-elites), `supervisor`
(the stall supervisor), `evaluator` (the harness behind the `Evaluator` interface),
`config` (`EvolveConfig`, its checks, what resume restores), `controller` (the loop),
`evolve` (`prepare`, `execute`, `evolve`).
"""

from __future__ import annotations

from solforge.search.archive import (
    ARCHIVE_FILE,
    DEFAULT_RUNS_ROOT,
    Archive,
    NewerSchemaError,
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
    NoteKind,
    NoteRecord,
    ResourceTotals,
    ResourceUsage,
    RunBudget,
    RunInfo,
    RunStatus,
    TrialRecord,
    WinnerRecord,
    WorkloadEvaluation,
    params_hash,
    solution_diff,
    source_hash,
)
from solforge.search.context import (
    Candidate,
    EvaluatedCandidate,
    LineageStep,
    NoCandidate,
    OperatorNote,
    SearchContext,
    Trial,
)
from solforge.search.fitness import Fitness, Verdict, fitness_of, geometric_mean, judge, sol_score_of
from solforge.search.operators import (
    Operator,
    OperatorOptions,
    OperatorSetup,
    OperatorSpec,
    build_operators,
    choose_operators,
    operator_names,
    operator_spec,
    register_operator,
)

__all__ = [
    "ARCHIVE_FILE",
    "DEFAULT_RUNS_ROOT",
    "AddOutcome",
    "AddResult",
    "Archive",
    "Candidate",
    "CandidateRecord",
    "CandidateState",
    "Cell",
    "EliteCell",
    "EliteOutcome",
    "EvaluatedCandidate",
    "EvaluationRound",
    "Fitness",
    "HistoryPoint",
    "LineageEntry",
    "LineageStep",
    "NewerSchemaError",
    "NoCandidate",
    "NoteKind",
    "NoteRecord",
    "Operator",
    "OperatorNote",
    "OperatorOptions",
    "OperatorSetup",
    "OperatorSpec",
    "ResourceTotals",
    "ResourceUsage",
    "RunBudget",
    "RunInfo",
    "RunStatus",
    "SearchContext",
    "StateError",
    "Trial",
    "TrialRecord",
    "Verdict",
    "WinnerRecord",
    "WorkloadEvaluation",
    "build_operators",
    "choose_operators",
    "fitness_of",
    "geometric_mean",
    "judge",
    "operator_names",
    "operator_spec",
    "params_hash",
    "register_operator",
    "sol_score_of",
    "solution_diff",
    "source_hash",
]
