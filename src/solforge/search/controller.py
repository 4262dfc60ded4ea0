"""The controller of `solforge evolve`: propose, evaluate, keep, repeat, then gate on held-out.

Threads. The main thread owns everything that decides: the archive (which only it
writes), the strategy, the stall supervisor, the budgets. Work that takes time runs in
short-lived daemon threads that report back through one inbox of typed messages:
- one proposal at a time: the main thread builds a read-only `SearchContext` and a
  thread asks the operators with it; finished candidates wait in a buffer of at most
  `queue_size`, so the operators work ahead while evaluation runs;
- one evaluation per device (each GPU, or the CPU) at a time, through the `Evaluator`,
  whose harness runs the kernel in its own isolated process.
Daemon threads never hold the process up: Ctrl-C ends the run at once.

Budgets. `max_candidates` counts evaluated candidates over the whole run (a resumed run
counts what it had before); `max_wall_seconds` is wall-clock time of this invocation;
`max_cost_usd` is the LLM money of the whole run. When one is spent, no new candidate is
admitted, evaluation in flight finishes, then the best candidates are evaluated on the
held-out workloads, in order of fitness, until one passes: that one is the winner. A
candidate that fails held-out is never exported as the winner. A proposal still running
at the end is abandoned, and what it spent is not recorded.

Resume. The archive holds every decision; `restore` rebuilds the strategy from it (the
lineage, or the map-elites elites), `run_search` re-queues the candidates that were in
flight when the run died, and nothing is evaluated twice. A kill -9 loses at most those,
and the step of an operator that was still working.
"""

from __future__ import annotations

import dataclasses
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from solforge.search.archive import Archive
from solforge.search.archive_schema import AddOutcome, NoteKind, ResourceUsage
from solforge.search.context import (
    HELD_OUT_GATE,
    Candidate,
    EvaluatedCandidate,
    LineageStep,
    NoCandidate,
    SearchContext,
)
from solforge.search.evaluator import Evaluator, device_kind
from solforge.search.fitness import geometric_mean
from solforge.search.operators import Operator, SeedKernelOperator, directions
from solforge.search.strategies import LineageStrategy, MapElitesStrategy, descriptor, make_strategy
from solforge.search.supervisor import StallSupervisor
from solforge.spec import Definition, EvaluationStatus, Trace, Workload

if TYPE_CHECKING:
    from solforge.knowledge import SeedKernel
    from solforge.search.config import EvolveConfig

# The operators found nothing new (duplicates, or nothing at all) this many times in a
# row: the space they can reach is spent.
MAX_CONSECUTIVE_EMPTY = 60
# The harness failed this many evaluations in a row: it is broken, not the kernels.
MAX_CONSECUTIVE_HARNESS_ERRORS = 5
IDLE_WAIT_S = 0.1  # how long the main thread waits for a message before it looks again


@dataclass
class ProgressSnapshot:
    """What the live display shows."""

    evaluated: int
    best_fitness: float | None
    best_sol_fraction: float | None  # geometric mean over the search workloads
    failures: dict[str, int]
    elapsed_s: float
    remaining_s: float | None
    last: str


@dataclass(frozen=True)
class _Job:
    """One evaluation of one admitted candidate on the search workloads."""

    candidate_id: int
    candidate: Candidate
    island: int
    retime: bool = False  # a second timing of a would-be new best


# -- the messages the worker threads send the main thread ----------------------------------


@dataclass(frozen=True)
class _Proposed:
    result: Candidate | NoCandidate | None
    island: int


@dataclass(frozen=True)
class _ProposalFailed:
    error: str  # "<exception type>: <message>" of the operator's bug


@dataclass(frozen=True)
class _Evaluated:
    job: _Job
    device: str
    traces: list[Trace]
    seconds: float


@dataclass(frozen=True)
class _EvaluationFailed:
    job: _Job
    device: str
    error: str  # the harness's own failure, not the kernel's
    seconds: float


_Message = Union[_Proposed, _ProposalFailed, _Evaluated, _EvaluationFailed]


class Controller:
    """One run: its archive, strategy, operators, supervisor and worker threads."""

    def __init__(self, definition: Definition, search_workloads: Sequence[Workload],
                 held_out_workloads: Sequence[Workload], config: EvolveConfig, archive: Archive,
                 evaluator: Evaluator, operators: dict[str, Operator], seed_kernels: dict[str, SeedKernel],
                 on_progress: Callable[[ProgressSnapshot], None] | None = None) -> None:  # fmt: skip
        self.definition, self.config, self.archive, self.evaluator = definition, config, archive, evaluator
        self.search_wls, self.heldout_wls = list(search_workloads), list(held_out_workloads)
        self.operators, self.seed_kernels, self.on_progress = operators, seed_kernels, on_progress
        self.strategy = make_strategy(config.strategy)
        self.supervisor = StallSupervisor(list(operators), patience=config.patience, directions=directions())
        self.rng = random.Random(config.random_seed)
        self.tried: dict[str, int] = {}
        self.inbox: queue.Queue[_Message] = queue.Queue()
        self.ready: deque[tuple[Candidate, int]] = deque()  # proposed, waiting for admission
        self.pending: deque[_Job] = deque()  # admitted (or re-timing), waiting for a device
        self.running: dict[str, _Job] = {}  # device -> its job
        self.proposing = False
        self.spent_usd = archive.totals().run.cost_usd
        self.started = time.time()
        self.halt: str | None = None  # why the search stopped early
        self.empty_rounds = 0  # consecutive proposals that brought nothing new
        self.harness_errors = 0  # consecutive evaluations the harness failed
        self.evaluated = len(archive.evaluated_ids())
        self.first_fitness: float | None = None
        self.last = ""

    # -- resume ----------------------------------------------------------------------------
    def restore(self) -> None:
        """Rebuild the strategy and the family counts from the archive."""
        for c in self.archive.candidates():
            self.tried[c.family] = self.tried.get(c.family, 0) + 1
        if isinstance(self.strategy, LineageStrategy):
            versions = []
            for entry in self.archive.lineage():
                c = self.archive.candidate(entry.candidate_id)
                versions.append(EvaluatedCandidate(c.id, c.family, dict(c.parameters), entry.fitness, c.solution))
            self.strategy.restore(versions)
        elif isinstance(self.strategy, MapElitesStrategy):
            for e in self.archive.elites():
                c = self.archive.candidate(e.candidate_id)
                self.strategy.restore_elite(e.island, tuple(e.cell),
                                            EvaluatedCandidate(c.id, c.family, dict(c.parameters), e.fitness, c.solution))
        first = self.archive.history()
        if first:
            self.first_fitness = first[0].fitness

    # -- what an operator is shown -----------------------------------------------------------
    def _lineage(self) -> tuple[LineageStep, ...]:
        steps = []
        for e in self.archive.lineage():
            c = self.archive.candidate(e.candidate_id)
            steps.append(LineageStep(e.version, c.id, c.operator, c.family, e.fitness, e.reason, c.diff))
        return tuple(steps)

    def _next_proposal(self) -> tuple[SearchContext, list[str]]:
        """The context of the next proposal and the operators to ask, in order."""
        island, parents = self.strategy.select(self.rng)
        seed = SeedKernelOperator.name
        if not parents or not any(self.tried.values()):
            names = [seed] if seed in self.operators else list(self.operators)
        else:
            first = self.supervisor.choose(self.rng)
            names = [first] + [n for n in self.operators if n != first]
        traces: tuple[Trace, ...] = ()
        if parents:
            traces = tuple(w.trace for r in self.archive.evaluations(parents[0].candidate_id)[-1:] for w in r.workloads)
        context = SearchContext(
            definition=self.definition, workloads=tuple(self.search_wls), seed_kernels=self.seed_kernels,
            parents=tuple(parents), elites=tuple(self.strategy.elites()), tried_families=dict(self.tried),
            rng=random.Random(self.rng.getrandbits(64)), island=island, direction=self.supervisor.direction,
            parent_traces=traces, lineage=self._lineage(),
            notes=tuple(n for n in self.archive.notes() if n.operator != HELD_OUT_GATE), run_cost_usd=self.spent_usd,
        )
        return context, names

    # -- the worker threads ----------------------------------------------------------------
    def _propose(self, context: SearchContext, names: list[str]) -> Candidate | NoCandidate | None:
        for name in names:
            result = self.operators[name].propose(context)
            if result is not None:
                return result
        if SeedKernelOperator.name not in names:  # nothing to build on yet: start a family even if seed is off
            result = SeedKernelOperator().propose(context)
            if result is not None:
                return dataclasses.replace(result, operator="initial")
        return None

    def _proposal_thread(self, context: SearchContext, names: list[str]) -> None:
        try:
            result = self._propose(context, names)
        except Exception as exc:  # an operator's bug: the run stops cleanly, the archive says why
            self.inbox.put(_ProposalFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.inbox.put(_Proposed(result, context.island))

    def _evaluation_thread(self, job: _Job, device: str) -> None:
        t0 = time.monotonic()
        try:
            traces = self.evaluator.evaluate(job.candidate.solution, self.search_wls, device)
        except Exception as exc:  # the harness's infrastructure failed, not the kernel: the run goes on
            self.inbox.put(_EvaluationFailed(job, device, f"{type(exc).__name__}: {exc}", time.monotonic() - t0))
            return
        self.inbox.put(_Evaluated(job, device, traces, time.monotonic() - t0))

    @staticmethod
    def _spawn(target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    # -- budgets ---------------------------------------------------------------------------
    def _first_rounds_in_flight(self) -> int:
        return sum(1 for j in [*self.running.values(), *self.pending] if not j.retime)

    def _cost_spent(self) -> bool:
        return self.config.max_cost_usd is not None and self.spent_usd >= self.config.max_cost_usd

    def _can_admit(self) -> bool:
        """Whether another candidate may start its evaluation under the candidate and time
        budgets (the cost budget stops proposals; what was proposed is paid for, and evaluated)."""
        if self.halt is not None:
            return False
        if self.config.max_wall_seconds is not None and time.time() - self.started >= self.config.max_wall_seconds:
            return False
        n = self.config.max_candidates
        return n is None or self.evaluated + self._first_rounds_in_flight() < n

    def _wants_proposal(self) -> bool:
        """Whether to ask the operators for one more candidate now: an agent's candidate
        costs LLM money, so none is made that the budget would leave unevaluated."""
        if self.proposing or self._cost_spent() or not self._can_admit() or len(self.ready) >= self.config.queue_size:
            return False
        n = self.config.max_candidates
        return n is None or self.evaluated + self._first_rounds_in_flight() + len(self.ready) < n

    # -- the main loop ---------------------------------------------------------------------
    def run_search(self) -> str:
        """Propose and evaluate until a budget is spent; returns why it stopped."""
        for c in self.archive.in_flight():  # lost by a crash: evaluate them first
            self.archive.start_evaluation(c.id)
            candidate = Candidate(c.solution, c.operator, c.family, dict(c.parameters), tuple(c.parent_ids))
            self.pending.append(_Job(c.id, candidate, c.island))
        free = [d for d in self.evaluator.devices]
        while True:
            while free and (self.pending or (self.ready and self._can_admit())):
                job = self.pending.popleft() if self.pending else self._admit(*self.ready.popleft())
                if job is not None:
                    device = free.pop(0)
                    self.running[device] = job
                    self._spawn(self._evaluation_thread, job, device)
            if self._wants_proposal():
                context, names = self._next_proposal()
                self.proposing = True
                self._spawn(self._proposal_thread, context, names)
            if not self.running and not self.pending:
                # nothing to wait for: no budget left, or no proposal coming (a proposal
                # still running when time runs out is abandoned)
                if not self._can_admit() or not (self.proposing or self.ready or self._wants_proposal()):
                    break
            try:
                message = self.inbox.get(timeout=IDLE_WAIT_S)
            except queue.Empty:
                continue
            if isinstance(message, (_Evaluated, _EvaluationFailed)):
                del self.running[message.device]
                free.append(message.device)
            self._receive(message)
        return self._stop_reason()

    def _stop_reason(self) -> str:
        if self.halt is not None:
            return self.halt
        if self.config.max_candidates is not None and self.evaluated >= self.config.max_candidates:
            return f"{self.config.max_candidates} candidates evaluated"
        if self._cost_spent():
            return f"LLM cost budget of {self.config.max_cost_usd:g} USD spent"
        return f"time budget of {self.config.max_wall_seconds:.0f} s spent"

    def _receive(self, message: _Message) -> None:
        if isinstance(message, _Proposed):
            self.proposing = False
            self._on_proposed(message.result, message.island)
        elif isinstance(message, _ProposalFailed):
            self.proposing = False
            self.archive.add_note(NoteKind.supervisor, f"operator error: {message.error}", operator="controller")
            self.halt = self.last = f"operator error: {message.error}"
        elif isinstance(message, _Evaluated):
            self.harness_errors = 0
            self._on_evaluated(message.job, message.traces, message.seconds, message.device)
            self._progress()
        else:
            self._on_evaluation_failed(message.job, message.error)
            self._progress()

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self.snapshot())

    def _nothing_new(self, why: str) -> None:
        self.empty_rounds += 1
        if self.empty_rounds >= MAX_CONSECUTIVE_EMPTY:
            self.halt = why

    def _on_proposed(self, result: Candidate | NoCandidate | None, island: int) -> None:
        if result is None:
            self._nothing_new("the operators have nothing new to offer")
            return
        self.spent_usd += result.usage.cost_usd
        if isinstance(result, NoCandidate):
            self.empty_rounds = 0
            self.archive.log_step(result.operator, [(n.kind, n.text) for n in result.notes], result.usage)
            self.last = f"{result.operator}: {result.reason}"
            if result.stop_run:
                self.halt = result.reason
            return
        self.ready.append((result, island))

    def _admit(self, candidate: Candidate, island: int) -> _Job | None:
        """Keep a proposed candidate (with its step's notes and costs); its job, or None for a duplicate."""
        cell = descriptor(candidate.family, dict(candidate.params), candidate.solution)
        added = self.archive.add_candidate(
            candidate.solution, operator=candidate.operator, family=candidate.family,
            parent_ids=candidate.parent_ids, parameters=dict(candidate.params), island=island, cell=cell,
            rationale=candidate.rationale, usage=candidate.usage, notes=[(n.kind, n.text) for n in candidate.notes],
        )
        if added.outcome is not AddOutcome.added:
            self._nothing_new("the operators found nothing new")
            return None
        self.empty_rounds = 0
        self.tried[candidate.family] = self.tried.get(candidate.family, 0) + 1
        self.archive.start_evaluation(added.candidate.id)
        return _Job(added.candidate.id, candidate, island)

    def _on_evaluated(self, job: _Job, traces: list[Trace], seconds: float, device: str) -> None:
        """Record one round; a would-be new best is re-timed before the strategy sees it."""
        on_gpu = device_kind(device) != "cpu"
        usage = ResourceUsage(gpu_seconds=seconds if on_gpu else 0.0, wall_seconds=seconds)
        round_ = self.archive.record_evaluation(job.candidate_id, traces, retimed=job.retime, usage=usage)
        c = job.candidate
        scored = EvaluatedCandidate(job.candidate_id, c.family, dict(c.params), round_.fitness, c.solution)
        if not job.retime:
            self.evaluated += 1
            if self.first_fitness is None:
                self.first_fitness = round_.fitness
            if self.config.retime and self.strategy.would_improve(scored):
                self.last = f"#{job.candidate_id} {c.operator}: fitness {round_.fitness:.4f}, re-timing"
                self.pending.appendleft(dataclasses.replace(job, retime=True))
                return
        failures = sorted({t.evaluation.status.value for t in traces if t.evaluation} - {EvaluationStatus.PASSED.value})
        self._offer(job, scored, failures)

    def _on_evaluation_failed(self, job: _Job, error: str) -> None:
        self.harness_errors += 1
        if job.retime:
            # The first round stands; without this the candidate would stay evaluated and
            # never be offered to the strategy, so never committed.
            fitness = self.archive.candidate(job.candidate_id).fitness
            self.archive.add_note(NoteKind.failure, f"re-timing failed ({error}); judged on its first round, "
                                  f"fitness {fitness:.4f}", candidate_id=job.candidate_id, operator="controller")
            c = job.candidate
            self._offer(job, EvaluatedCandidate(job.candidate_id, c.family, dict(c.params), fitness, c.solution), [])
        else:
            self.archive.drop(job.candidate_id, f"harness error: {error}", operator=job.candidate.operator)
            self.last = f"#{job.candidate_id}: harness error: {error}"
        if self.harness_errors >= MAX_CONSECUTIVE_HARNESS_ERRORS:
            self.halt = f"the harness failed {self.harness_errors} evaluations in a row (last: {error})"

    def _offer(self, job: _Job, scored: EvaluatedCandidate, failures: list[str]) -> None:
        """Give an evaluated candidate to the strategy, and keep its decision."""
        c = job.candidate
        cell = descriptor(c.family, dict(c.params), c.solution)
        decision = self.strategy.consider(scored, cell, job.island)
        if decision.accepted and isinstance(self.strategy, LineageStrategy):
            self.archive.commit(job.candidate_id, decision.reason)
        elif decision.accepted:
            self.archive.set_elite(job.island, cell, job.candidate_id)
        if scored.fitness == 0:
            self.archive.add_note(NoteKind.failure, f"{c.rationale}: {', '.join(failures)}",
                                  candidate_id=job.candidate_id, operator=c.operator)
        redirect = self.supervisor.observe(decision.new_best)
        if redirect is not None:
            self.archive.add_note(NoteKind.supervisor, f"{redirect.reason}: favour {redirect.favoured}; "
                                  f"{redirect.direction}", operator="supervisor")
        self.last = f"#{job.candidate_id} {c.operator}: fitness {scored.fitness:.4f} ({decision.reason})"

    def snapshot(self) -> ProgressSnapshot:
        best = self.strategy.best()
        fraction = None
        if best is not None:
            rounds = self.archive.evaluations(best.candidate_id)[-1:]
            fraction = geometric_mean([w.sol_fraction for r in rounds for w in r.workloads])
        remaining = None
        if self.config.max_wall_seconds is not None:
            remaining = max(0.0, self.config.max_wall_seconds - (time.time() - self.started))
        return ProgressSnapshot(
            evaluated=self.evaluated, best_fitness=best.fitness if best else None,
            best_sol_fraction=fraction, failures={k.value: v for k, v in self.archive.failures_by_status().items()},
            elapsed_s=time.time() - self.started, remaining_s=remaining, last=self.last,
        )

    # -- the end ---------------------------------------------------------------------------
    def held_out_gate(self) -> tuple[int | None, bool | None]:
        """(winner id, generalizes): the best candidates on the held-out workloads, best first;
        the first that passes every one is the winner. Its notes are the gate's
        (`HELD_OUT_GATE`), which no operator is ever shown."""
        best = [c for c in self.archive.best(self.config.heldout_tries) if (c.fitness or 0) > 0]
        if not best:
            return None, None
        if not self.heldout_wls:
            self.archive.add_note(NoteKind.supervisor, "no held-out workloads: the winner is the best candidate",
                                  operator=HELD_OUT_GATE)
            return best[0].id, None
        device = self.evaluator.devices[0]
        for rank, c in enumerate(best):
            rounds = self.archive.evaluations(c.id, held_out=True)
            if rounds:
                traces = [w.trace for w in rounds[-1].workloads]
            else:
                t0 = time.monotonic()
                traces = self.evaluator.evaluate(c.solution, self.heldout_wls, device)
                seconds = time.monotonic() - t0
                usage = ResourceUsage(gpu_seconds=seconds if device_kind(device) != "cpu" else 0.0,
                                      wall_seconds=seconds)
                self.archive.record_evaluation(c.id, traces, usage=usage)
            failed = [t for t in traces if t.evaluation is None or t.evaluation.status is not EvaluationStatus.PASSED]
            if not failed:
                return c.id, rank == 0
            why = ", ".join(f"{t.workload.label}: {t.evaluation.status.value}" for t in failed if t.evaluation)
            self.archive.add_note(NoteKind.failure, f"held-out gate: {why}", candidate_id=c.id, operator=HELD_OUT_GATE)
        return None, False
