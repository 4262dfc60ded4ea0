"""The operator boundary: what a variation operator is shown, and what it gives back.

An operator is handed a `SearchContext`, a read-only snapshot the controller builds on
its own thread from the strategy and the archive, and returns a `Candidate` (a kernel
to evaluate, with the notes and costs of the step that made it), a `NoCandidate` (a
step that spent something and produced nothing usable), or None (nothing to offer).
The controller alone writes the archive: it keeps the candidate, its notes and its
costs in one transaction.

What never reaches an operator: held-out workloads, their results and their names.
The context holds the search workloads only, the latest *search* round of its first
parent, and the run's lineage and notes without those of the held-out gate; its
constructor refuses a held-out workload or trace, so a careless caller fails loudly
instead of leaking one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from solforge.search.archive_schema import NoteKind, NoteRecord, ResourceUsage
from solforge.spec import Definition, Solution, Trace, Workload

if TYPE_CHECKING:
    from solforge.knowledge import SeedKernel

# The operator name the held-out gate writes its notes under; the controller keeps them
# out of every SearchContext (they name held-out workloads).
HELD_OUT_GATE = "held-out gate"


@dataclass(frozen=True)
class OperatorNote:
    """Free text an operator's step leaves in the archive: its rationale, or why it failed."""

    kind: NoteKind
    text: str


@dataclass(frozen=True)
class Candidate:
    """A proposed kernel, not yet evaluated: what an operator's `propose` returns.

    `family` names the kernel family it descends from (a seed kernel's name, e.g.
    "numba/rmsnorm_rows"): parameters mean the same thing within one family. `params`
    are the values its sources were generated from ({} for hand-written sources).
    `notes` and `usage` are what the step that made it reported and spent; the
    controller stores them with the candidate.
    """

    solution: Solution
    operator: str
    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    parent_ids: tuple[int, ...] = ()
    rationale: str = ""
    notes: tuple[OperatorNote, ...] = ()
    usage: ResourceUsage = field(default_factory=ResourceUsage)


@dataclass(frozen=True)
class NoCandidate:
    """An operator step that spent resources (LLM calls, evaluations) and proposed nothing.

    `stop_run` is set when the run's LLM cost budget is spent: the controller then stops
    proposing and finishes what is in flight.
    """

    operator: str
    reason: str  # one line: why there is no candidate
    notes: tuple[OperatorNote, ...] = ()
    usage: ResourceUsage = field(default_factory=ResourceUsage)
    stop_run: bool = False


@dataclass(frozen=True)
class EvaluatedCandidate:
    """A candidate with a search fitness: what strategies keep and operators build on."""

    candidate_id: int
    family: str
    params: Mapping[str, Any]
    fitness: float  # what selection ranks by: the geometric-mean SOL score (spill-penalized); 0 when one failed
    solution: Solution


@dataclass(frozen=True)
class Trial:
    """One evaluated (or in-flight) parameter point of a seed kernel family: the tuner's history."""

    candidate_id: int
    family: str
    params: Mapping[str, Any]
    fitness: float | None  # None: in flight
    verdict: str | None  # `search.fitness.Verdict` value ("cut": known slower than 3x the best); None in flight
    sound: bool = True  # whether `fitness` is a figure to select on (the candidate's `sound` in the archive)


@dataclass(frozen=True)
class LineageStep:
    """One committed version of the run's lineage, as an operator sees it."""

    version: int  # 1, 2, ... in commit order
    candidate_id: int
    operator: str
    family: str
    fitness: float
    reason: str
    diff: str  # unified diff from its first parent; "" for a seed


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SearchContext:
    """What an operator sees for one proposal (read-only; never anything held-out).

    `rng` is the operator's random source for this proposal, drawn by the controller
    from the run's random seed, so a run is reproducible for a given seed and order of
    evaluations. Raises ValueError when a held-out workload or trace is passed in.
    """

    definition: Definition
    workloads: tuple[Workload, ...]  # the search workloads
    seed_kernels: Mapping[str, SeedKernel]  # SeedKernel.name -> kernel, those that fit the definition and device
    parents: tuple[EvaluatedCandidate, ...]  # the strategy's choice of parents, best first
    elites: tuple[EvaluatedCandidate, ...]  # every elite the strategy keeps, fittest first
    tried_families: Mapping[str, int]  # family -> candidates proposed so far
    rng: random.Random
    island: int = 0  # the island bred from (map-elites); 0 for lineage
    direction: str | None = None  # the stall supervisor's hint, e.g. "seed: bring in another kernel family"
    parent_traces: tuple[Trace, ...] = ()  # the latest search round of parents[0]
    lineage: tuple[LineageStep, ...] = ()  # committed versions, oldest first
    notes: tuple[NoteRecord, ...] = ()  # the run's notes, oldest first, the held-out gate's left out
    run_cost_usd: float = 0.0  # LLM cost spent by the run so far, US dollars
    trials: tuple[Trial, ...] = ()  # every parameter point of the seed families tried so far, by candidate id

    def __post_init__(self) -> None:
        for w in self.workloads:
            if w.held_out:
                raise ValueError(f"SearchContext: workload {w.uuid} is held-out; operators never see one")
        for t in self.parent_traces:
            if t.workload.held_out or (t.evaluation is not None and t.evaluation.solforge.held_out):
                raise ValueError(f"SearchContext: trace of workload {t.workload.uuid} is held-out")
        for n in self.notes:
            if n.operator == HELD_OUT_GATE:
                raise ValueError("SearchContext: a note of the held-out gate; operators never see one")
        object.__setattr__(self, "workloads", tuple(self.workloads))
        object.__setattr__(self, "seed_kernels", _frozen(self.seed_kernels))
        object.__setattr__(self, "tried_families", _frozen(self.tried_families))
        object.__setattr__(self, "parents", tuple(self.parents))
        object.__setattr__(self, "elites", tuple(self.elites))
        object.__setattr__(self, "trials", tuple(self.trials))

    @property
    def best_parent(self) -> EvaluatedCandidate | None:
        return self.parents[0] if self.parents else None

    def rationales(self) -> list[str]:
        """Texts of the run's rationale notes (to tell which techniques were tried)."""
        return [n.text for n in self.notes if n.kind is NoteKind.rationale]
