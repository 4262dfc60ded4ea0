"""The controller of `solforge evolve`: propose, evaluate, keep, repeat, then gate on held-out.

The loop reads top to bottom: admit what was proposed while the evaluator has room,
start proposals while the budgets allow, then wait for whichever finishes first
(`concurrent.futures.wait(FIRST_COMPLETED)`) and keep its result.

Who does what. The main thread owns everything that decides: the archive (which only it
writes), the strategy, the stall supervisor, the budgets. Proposals run on a thread pool
of `proposal_workers` (operators get a read-only `SearchContext` built on the main
thread, so an LLM call never blocks evaluation); evaluations run through the
`Evaluator` (`evaluator.py`: this machine's devices, or Ray actors), `capacity` at a
time. Proposed candidates wait in a buffer of at most `queue_size`.

Judging fast (issue 15). Before a candidate is evaluated it is checked against the
archive: same sources, same parameter point, same normalized source, same compiled
artifact (`dedup.py`); a duplicate is counted (`Archive.dedup_counts`) and never
evaluated. Each evaluation carries a cut-off of `cut_factor` (3) times the best
candidate's latency per workload: the harness stops timing a workload whose median is
already past it, and the round's verdict is "cut" (`fitness.Verdict`), which no strategy
selects on. `--no-cache` turns the extra dedup keys and the compile caches off, `--no-cut`
the cut-off and the screening budget: without `--no-cut`, a candidate's first timing
has a third of the full budget (`bench.config.screening_budget`), and an unstable one is
not timed twice by the harness (`BenchConfig.rerun_unstable`): enough to say whether it
could be a new best, since a would-be new best, unstable or not, is re-timed with the
full budget.

What is selected. A would-be new best is re-timed before the strategy sees it; so is an
unstable one. A round whose verdict is not sound (cut; unstable and not confirmed by a
second round; unscored) is kept in the archive but never committed or made an elite.
Register spills above the threshold (a `--target` run) count against a candidate in
selection (`fitness.SPILL_PENALTY`), with a note.

Budgets. `max_candidates` counts evaluated candidates over the whole run (a resumed run
counts what it had before); `max_wall_seconds` is wall-clock time of this invocation;
`max_cost_usd` is the LLM money of the whole run, checked before each proposal starts
(with several proposal workers, the steps already running may pass it). When one is
spent, no new candidate is admitted, evaluation in flight finishes, then the best
candidates are evaluated on the held-out workloads, in order of fitness, until one
passes: that one is the winner. Proposals still running at the end are abandoned, and
what they spent is not recorded.

Resume. The archive holds every decision; `restore` rebuilds the strategy from it (the
lineage, or the map-elites elites), `run_search` re-queues the candidates that were in
flight when the run died, and nothing is evaluated twice. A kill -9 loses at most those,
and the steps of operators that were still working.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from solforge.search.archive import Archive
from solforge.search.archive_schema import AddOutcome, EvaluationRound, NoteKind, ResourceUsage
from solforge.search.context import (
    HELD_OUT_GATE,
    Candidate,
    EvaluatedCandidate,
    LineageStep,
    NoCandidate,
    SearchContext,
    Trial,
)
from solforge.search.evaluator import EvaluationRequest, Evaluator
from solforge.search.fitness import Verdict, geometric_mean
from solforge.search.operators import Operator, SeedKernelOperator, directions
from solforge.search.strategies import (
    BestOfNStrategy,
    Decision,
    LineageStrategy,
    MapElitesStrategy,
    descriptor,
    make_strategy,
)
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
IDLE_WAIT_S = 0.25  # the longest the main thread waits before it looks at the clock again


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
    duplicates: int = 0  # proposals not evaluated because they duplicated a kept candidate
    cut: int = 0  # evaluations whose timing was cut at the cut-off


@dataclass(frozen=True)
class _Proposal:
    """A proposed candidate with its dedup keys, computed off the main thread."""

    candidate: Candidate
    island: int
    normalized_hash: str | None = None
    artifact_hash: str | None = None


@dataclass(frozen=True)
class _Job:
    """One evaluation of one admitted candidate on the search workloads."""

    candidate_id: int
    candidate: Candidate
    island: int
    retime: bool = False  # a second timing of a would-be new best (or of an unstable figure)


@contextlib.contextmanager
def serialized_ast_parse() -> Iterator[None]:
    """Within the block, `ast.parse` calls from different threads run one at a time.

    CPython before 3.13 keeps the AST constructor's recursion depth in per-interpreter
    state, so two threads converting ASTs at once corrupt it and one of them raises
    `SystemError: AST constructor recursion depth mismatch` (python/cpython#106905). The
    search parses in its proposal threads (seed kernels' PARAMS, dedup keys) while the
    harness parses in its evaluation threads (static guards, axis expressions); this
    lock is the workaround, for the time the threads run."""
    if sys.version_info >= (3, 13):
        yield
        return
    original = ast.parse
    lock = threading.RLock()

    @functools.wraps(original)
    def parse(*args, **kwargs):
        with lock:
            return original(*args, **kwargs)

    ast.parse = parse
    try:
        yield
    finally:
        ast.parse = original


def cutoff_ms(best_round: EvaluationRound | None, factor: float) -> dict[str, float] | None:
    """Workload uuid -> `factor` x the best candidate's latency there, ms (tinygrad's BEAM
    search cuts at 3x the best); None without a best round. A candidate at least as fast
    as the best is below it by construction, so it is never cut."""
    if best_round is None:
        return None
    cut = {w.workload_uuid: factor * w.latency_ms for w in best_round.workloads if w.latency_ms}
    return cut or None


class Controller:
    """One run: its archive, strategy, operators, supervisor, proposals and evaluator."""

    def __init__(self, definition: Definition, search_workloads: Sequence[Workload],
                 held_out_workloads: Sequence[Workload], config: EvolveConfig, archive: Archive,
                 evaluator: Evaluator, operators: dict[str, Operator], seed_kernels: dict[str, SeedKernel],
                 on_progress: Callable[[ProgressSnapshot], None] | None = None) -> None:  # fmt: skip
        self.definition, self.config, self.archive, self.evaluator = definition, config, archive, evaluator
        self.search_wls, self.heldout_wls = list(search_workloads), list(held_out_workloads)
        self.operators, self.seed_kernels, self.on_progress = operators, seed_kernels, on_progress
        self.strategy = make_strategy(config.strategy)
        # best-of-N: operators drawn independently of every result (no adaptation, no redirect)
        self.supervisor = StallSupervisor(list(operators), patience=config.patience, directions=directions(),
                                          adaptive=not isinstance(self.strategy, BestOfNStrategy))
        self.rng = random.Random(config.random_seed)
        self.tried: dict[str, int] = {}
        self.ready: deque[_Proposal] = deque()  # proposed, waiting for admission
        self.pending: deque[_Job] = deque()  # admitted (or re-timing), waiting for room in the evaluator
        self.evaluating: dict[Future, tuple[_Job, float]] = {}  # future -> (job, start time)
        self.proposing: dict[Future, int] = {}  # future -> island
        workers = config.proposal_workers or max(1, evaluator.capacity)
        self.proposal_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="solforge-propose")
        self.proposal_workers = workers
        self.spent_usd = archive.totals().run.cost_usd
        self.started = time.time()
        self.halt: str | None = None  # why the search stopped early
        self.empty_rounds = 0  # consecutive proposals that brought nothing new
        self.harness_errors = 0  # consecutive evaluations the harness failed
        self.evaluated = len(archive.evaluated_ids())
        self.first_fitness: float | None = None
        self.cut_count = 0
        self.normalized_seen: set[str] = {c.normalized_hash for c in archive.candidates() if c.normalized_hash}
        self.last = ""

    # -- resume ----------------------------------------------------------------------------
    def restore(self) -> None:
        """Rebuild the strategy, the family counts and the supervisor's weights from the archive."""
        records = {c.id: c for c in self.archive.candidates()}
        for c in records.values():
            self.tried[c.family] = self.tried.get(c.family, 0) + 1
        if isinstance(self.strategy, BestOfNStrategy):
            first = next((c for c in records.values() if c.sound and (c.fitness or 0) > 0), None)
            best = self.archive.best(1, sound_only=True)
            self.strategy.restore([EvaluatedCandidate(c.id, c.family, dict(c.parameters), c.fitness, c.solution)
                                   for c in ([first] if first else []) + best])
        elif isinstance(self.strategy, LineageStrategy):
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
        history = self.archive.history()
        if history:
            self.first_fitness = history[0].fitness
        # the supervisor's weights: its observations again, in order (its redirects are in the notes already)
        fitness = {i: c.fitness for i, c in records.items()}
        best = 0.0
        for h in history:
            c = records[h.candidate_id]
            self.supervisor.observe(h.fitness > best, c.operator, self._beat_parents(h.fitness, c.parent_ids, fitness))
            best = max(best, h.fitness)

    # -- what an operator is shown -----------------------------------------------------------
    def _lineage(self) -> tuple[LineageStep, ...]:
        steps = []
        for e in self.archive.lineage():
            c = self.archive.candidate(e.candidate_id)
            steps.append(LineageStep(e.version, c.id, c.operator, c.family, e.fitness, e.reason, c.diff))
        return tuple(steps)

    def _trials(self) -> tuple[Trial, ...]:
        """The tuner's history: every parameter point in the archive, and those proposed
        but not yet admitted (in flight, fitness None)."""
        kept = [Trial(t.candidate_id, t.family, t.parameters, t.fitness, t.verdict, t.sound)
                for t in self.archive.trials()]
        waiting = [Trial(0, p.candidate.family, dict(p.candidate.params), None, None)
                   for p in self.ready if p.candidate.params]
        return tuple(kept + waiting)

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
            # best-of-N: no feedback reaches the operators, so the samples are independent
            trials=() if isinstance(self.strategy, BestOfNStrategy) else self._trials(),
        )
        return context, names

    # -- work done off the main thread ----------------------------------------------------
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

    def _proposal_task(self, context: SearchContext, names: list[str],
                       seen: frozenset[str]) -> Candidate | NoCandidate | None | _Proposal:  # fmt: skip
        result = self._propose(context, names)
        if not isinstance(result, Candidate):
            return result
        return self._with_keys(result, context.island, seen)

    def _with_keys(self, candidate: Candidate, island: int, seen: frozenset[str]) -> _Proposal:
        """The candidate with its extra dedup keys (none under --no-cache). numba's IR costs a
        compile, so it is computed only where neither the parameter point nor the
        normalized source (`seen`: those of the kept candidates) already identifies the code."""
        if not self.config.cache:
            return _Proposal(candidate, island)
        from solforge.search.dedup import normalized_hash, numba_ir_hash

        normalized = normalized_hash(candidate.solution)
        artifact = None
        if not candidate.params and normalized not in seen and self.search_wls:
            smallest = min(self.search_wls, key=lambda w: sum(int(v) for v in w.axes.values() if isinstance(v, int)))
            artifact = numba_ir_hash(candidate.solution, self.definition, smallest,
                                     dataset_root=getattr(self.config.bench, "dataset_root", None))
        return _Proposal(candidate, island, normalized, artifact)

    # -- budgets ---------------------------------------------------------------------------
    def _first_rounds_in_flight(self) -> int:
        jobs = [j for j, _ in self.evaluating.values()] + list(self.pending)
        return sum(1 for j in jobs if not j.retime)

    def _cost_spent(self) -> bool:
        return self.config.max_cost_usd is not None and self.spent_usd >= self.config.max_cost_usd

    def _time_spent(self) -> bool:
        limit = self.config.max_wall_seconds
        return limit is not None and time.time() - self.started >= limit

    def _can_admit(self) -> bool:
        """Whether another candidate may start its evaluation under the candidate and time
        budgets (the cost budget stops proposals; what was proposed is paid for, and evaluated)."""
        if self.halt is not None or self._time_spent():
            return False
        n = self.config.max_candidates
        return n is None or self.evaluated + self._first_rounds_in_flight() < n

    def _wants_proposal(self) -> bool:
        """Whether to start one more proposal now: an agent's candidate costs LLM money, so
        none is made that the budget would leave unevaluated."""
        if len(self.proposing) >= self.proposal_workers or self._cost_spent() or not self._can_admit():
            return False
        if self.config.lockstep and (self.proposing or len(self.evaluating) + len(self.pending) + len(self.ready)
                                     >= self.config.lockstep_in_flight):
            return False
        if len(self.ready) + len(self.proposing) >= self.config.queue_size:
            return False
        n = self.config.max_candidates
        coming = self.evaluated + self._first_rounds_in_flight() + len(self.ready) + len(self.proposing)
        return n is None or coming < n

    # -- the main loop ---------------------------------------------------------------------
    def run_search(self) -> str:
        """Propose and evaluate until a budget is spent; returns why it stopped."""
        for c in self.archive.in_flight():  # lost by a crash: evaluate them first
            self.archive.start_evaluation(c.id)
            candidate = Candidate(c.solution, c.operator, c.family, dict(c.parameters), tuple(c.parent_ids))
            self.pending.append(_Job(c.id, candidate, c.island))
        with serialized_ast_parse():
            try:
                self._loop()
            finally:
                self.proposal_pool.shutdown(wait=False, cancel_futures=True)
        return self._stop_reason()

    def _loop(self) -> None:
        while True:
            self._admit_and_submit()
            while self._wants_proposal():
                context, names = self._next_proposal()
                future = self.proposal_pool.submit(self._proposal_task, context, names, frozenset(self.normalized_seen))
                self.proposing[future] = context.island
            if not self.evaluating and not self.pending:
                # nothing to wait for: no budget left, or no proposal coming (a proposal
                # still running when time runs out is abandoned)
                if not self._can_admit() or not (self.proposing or self.ready or self._wants_proposal()):
                    break
            done, _ = wait(self._waited(), timeout=IDLE_WAIT_S, return_when=FIRST_COMPLETED)
            for future in done:
                if future in self.proposing:
                    self._on_proposal_done(future)
                else:
                    self._on_evaluation_done(future)

    def _waited(self) -> list[Future]:
        """The futures the loop waits on: all of them; in lockstep only the proposal running,
        else the oldest evaluation, so that results are taken in the order submitted whatever
        order the evaluator finishes them in. Once no more candidates can be admitted (a
        budget is spent) a running proposal is of no use: the evaluations in flight are
        waited on first, so the run ends with them rather than with the proposal."""
        if not self.config.lockstep:
            return [*self.evaluating, *self.proposing]
        if self.proposing and self._can_admit():
            return list(self.proposing)
        return list(self.evaluating)[:1] or list(self.proposing)

    def _admit_and_submit(self) -> None:
        while len(self.evaluating) < self.evaluator.capacity and (self.pending or (self.ready and self._can_admit())):
            job = self.pending.popleft() if self.pending else self._admit(self.ready.popleft())
            if job is not None:
                self._submit(job)

    def _submit(self, job: _Job) -> None:
        cut, screening = None, False
        if self.config.cut and not job.retime and not self.archive.compile_only:
            best = self.strategy.best()
            rounds = self.archive.evaluations(best.candidate_id)[-1:] if best is not None else []
            cut = cutoff_ms(rounds[0] if rounds else None, self.config.cut_factor)
            screening = self.config.retime  # a would-be new best is then re-timed with the full budget
        request = EvaluationRequest(job.candidate.solution, tuple(self.search_wls), cut, screening)
        self.evaluating[self.evaluator.submit(request)] = (job, time.monotonic())

    def _stop_reason(self) -> str:
        if self.halt is not None:
            return self.halt
        if self.config.max_candidates is not None and self.evaluated >= self.config.max_candidates:
            return f"{self.config.max_candidates} candidates evaluated"
        if self._cost_spent():
            return f"LLM cost budget of {self.config.max_cost_usd:g} USD spent"
        return f"time budget of {self.config.max_wall_seconds:.0f} s spent"

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self.snapshot())

    def _nothing_new(self, why: str) -> None:
        self.empty_rounds += 1
        if self.empty_rounds >= MAX_CONSECUTIVE_EMPTY:
            self.halt = why

    # -- proposals -------------------------------------------------------------------------
    def _on_proposal_done(self, future: Future) -> None:
        island = self.proposing.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # an operator's bug: the run stops cleanly, the archive says why
            error = f"{type(exc).__name__}: {exc}"
            self.archive.add_note(NoteKind.supervisor, f"operator error: {error}", operator="controller")
            self.halt = self.last = f"operator error: {error}"
            return
        if result is None:
            self._nothing_new("the operators have nothing new to offer")
            return
        if isinstance(result, _Proposal):
            self.spent_usd += result.candidate.usage.cost_usd
            self.ready.append(dataclasses.replace(result, island=island))
            return
        self.spent_usd += result.usage.cost_usd
        self.empty_rounds = 0
        self.archive.log_step(result.operator, [(n.kind, n.text) for n in result.notes], result.usage)
        self.last = f"{result.operator}: {result.reason}"
        if result.stop_run:
            self.halt = result.reason

    def _admit(self, proposal: _Proposal) -> _Job | None:
        """Keep a proposed candidate (with its step's notes and costs); its job, or None for a duplicate."""
        candidate, island = proposal.candidate, proposal.island
        cell = descriptor(candidate.family, dict(candidate.params), candidate.solution)
        added = self.archive.add_candidate(
            candidate.solution, operator=candidate.operator, family=candidate.family,
            parent_ids=candidate.parent_ids, parameters=dict(candidate.params), island=island, cell=cell,
            rationale=candidate.rationale, usage=candidate.usage, notes=[(n.kind, n.text) for n in candidate.notes],
            normalized_hash=proposal.normalized_hash, artifact_hash=proposal.artifact_hash,
        )
        if added.outcome is not AddOutcome.added:
            if added.outcome in (AddOutcome.duplicate_normalized, AddOutcome.duplicate_artifact):
                self.last = f"{candidate.operator}: a duplicate of #{added.candidate.id} ({added.outcome.value})"
            self._nothing_new("the operators found nothing new")
            return None
        self.empty_rounds = 0
        self.tried[candidate.family] = self.tried.get(candidate.family, 0) + 1
        if proposal.normalized_hash:
            self.normalized_seen.add(proposal.normalized_hash)
        self.archive.start_evaluation(added.candidate.id)
        return _Job(added.candidate.id, candidate, island)

    # -- evaluations -----------------------------------------------------------------------
    def _on_evaluation_done(self, future: Future) -> None:
        job, t0 = self.evaluating.pop(future)
        seconds = time.monotonic() - t0
        try:
            traces = future.result()
        except Exception as exc:  # the infrastructure failed, not the kernel: the run goes on
            self._on_evaluation_failed(job, str(exc) if type(exc).__name__ == "EvaluationError"
                                       else f"{type(exc).__name__}: {exc}")
        else:
            self.harness_errors = 0
            self._on_evaluated(job, traces, seconds)
        self._progress()

    def _cell(self, candidate: Candidate, traces: Sequence[Trace]) -> tuple:
        reports = [r for t in traces if t.evaluation for r in (t.evaluation.solforge.compile_reports or ())]
        return descriptor(candidate.family, dict(candidate.params), candidate.solution, reports)

    def _on_evaluated(self, job: _Job, traces: list[Trace], seconds: float) -> None:
        """Record one round; a would-be new best (or an unstable figure) is re-timed before
        the strategy sees it."""
        on_gpu = not self.evaluator_on_cpu()
        usage = ResourceUsage(gpu_seconds=seconds if on_gpu else 0.0, wall_seconds=seconds)
        c = job.candidate
        cell = self._cell(c, traces)
        round_ = self.archive.record_evaluation(job.candidate_id, traces, retimed=job.retime, usage=usage,
                                                cell=cell)
        verdict = Verdict(round_.verdict)
        if verdict is Verdict.cut:
            self.cut_count += 1
        if round_.penalty < 1.0:
            from solforge.bench.crosscompile import spill_note

            note = spill_note(r for t in traces if t.evaluation for r in (t.evaluation.solforge.compile_reports or ()))
            self.archive.add_note(NoteKind.failure, f"{note}: fitness x {round_.penalty:g} in selection",
                                  candidate_id=job.candidate_id, operator=c.operator)
        kept = self.archive.candidate(job.candidate_id)
        selection = (kept.fitness or 0.0) * round_.penalty
        scored = EvaluatedCandidate(job.candidate_id, c.family, dict(c.params), selection, c.solution)
        if not job.retime:
            self.evaluated += 1
            if self.first_fitness is None:
                self.first_fitness = round_.fitness
            retime_worthy = verdict.selectable or verdict is Verdict.unstable
            if self.config.retime and retime_worthy and self.strategy.would_improve(
                    dataclasses.replace(scored, fitness=round_.fitness * round_.penalty)):
                self.last = f"#{job.candidate_id} {c.operator}: fitness {round_.fitness:.4f}, re-timing"
                self.pending.appendleft(dataclasses.replace(job, retime=True))
                return
        failures = sorted({t.evaluation.status.value for t in traces if t.evaluation} - {EvaluationStatus.PASSED.value})
        if not kept.sound:
            self._refuse(job, verdict, round_.reason, failures)
            return
        self._offer(job, scored, cell, failures)

    def evaluator_on_cpu(self) -> bool:
        return (self.config.device or "cpu").split(":")[0] == "cpu" or self.archive.compile_only

    def _on_evaluation_failed(self, job: _Job, error: str) -> None:
        self.harness_errors += 1
        if job.retime:
            # The first round stands; without this the candidate would stay evaluated and
            # never be offered to the strategy, so never committed.
            kept = self.archive.candidate(job.candidate_id)
            fitness = kept.fitness or 0.0
            self.archive.add_note(NoteKind.failure, f"re-timing failed ({error}); judged on its first round, "
                                  f"fitness {fitness:.4f}", candidate_id=job.candidate_id, operator="controller")
            c = job.candidate
            if kept.sound:
                cell = tuple(kept.cell) if kept.cell else descriptor(c.family, dict(c.params), c.solution)
                self._offer(job, EvaluatedCandidate(job.candidate_id, c.family, dict(c.params), fitness, c.solution),
                            cell, [])
            else:
                self._refuse(job, Verdict(kept.verdict or "unscored"), "re-timing failed", [])
        else:
            self.archive.drop(job.candidate_id, f"harness error: {error}", operator=job.candidate.operator)
            self.last = f"#{job.candidate_id}: harness error: {error}"
        if self.harness_errors >= MAX_CONSECUTIVE_HARNESS_ERRORS:
            self.halt = f"the harness failed {self.harness_errors} evaluations in a row (last: {error})"

    def _refuse(self, job: _Job, verdict: Verdict, reason: str, failures: list[str]) -> None:
        """A round whose figure is not sound: kept in the archive, never selected."""
        c = job.candidate
        if verdict is Verdict.failed:
            self.archive.add_note(NoteKind.failure, f"{c.rationale}: {', '.join(failures)}",
                                  candidate_id=job.candidate_id, operator=c.operator)
        self._decided(job, Decision(False, False, f"{verdict.value}: {reason}" if reason else verdict.value),
                      self.archive.candidate(job.candidate_id).fitness or 0.0)

    def _offer(self, job: _Job, scored: EvaluatedCandidate, cell: tuple, failures: list[str]) -> None:
        """Give an evaluated candidate to the strategy, and keep its decision."""
        c = job.candidate
        decision = self.strategy.consider(scored, cell, job.island)
        if isinstance(self.strategy, BestOfNStrategy):
            pass  # nothing is built on: the archive's fitness ranking is the whole record
        elif decision.accepted and isinstance(self.strategy, LineageStrategy):
            self.archive.commit(job.candidate_id, decision.reason)
        elif decision.accepted:
            self.archive.set_elite(job.island, cell, job.candidate_id)
        if scored.fitness == 0:
            self.archive.add_note(NoteKind.failure, f"{c.rationale}: {', '.join(failures)}",
                                  candidate_id=job.candidate_id, operator=c.operator)
        self._decided(job, decision, scored.fitness)

    def _decided(self, job: _Job, decision: Decision, fitness: float) -> None:
        fitnesses = {p: self.archive.candidate(p).fitness for p in job.candidate.parent_ids}
        redirect = self.supervisor.observe(decision.new_best, job.candidate.operator,
                                           self._beat_parents(fitness, job.candidate.parent_ids, fitnesses))
        if redirect is not None:
            self.archive.add_note(NoteKind.supervisor, f"{redirect.reason}: favour {redirect.favoured}; "
                                  f"{redirect.direction}", operator="supervisor")
        self.last = f"#{job.candidate_id} {job.candidate.operator}: fitness {fitness:.4f} ({decision.reason})"

    @staticmethod
    def _beat_parents(fitness: float, parent_ids: Sequence[int], fitnesses: Mapping[int, float | None]) -> bool | None:
        """Whether `fitness` beats the best of the evaluated parents; None without one."""
        known = [f for p in parent_ids if (f := fitnesses.get(p)) is not None]
        return fitness > max(known) if known else None

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
            duplicates=sum(self.archive.dedup_counts().values()), cut=self.cut_count,
        )

    # -- the end ---------------------------------------------------------------------------
    def held_out_gate(self) -> tuple[int | None, bool | None]:
        """(winner id, generalizes): the best sound candidates on the held-out workloads,
        best first; the first that passes every one is the winner. Its notes are the
        gate's (`HELD_OUT_GATE`), which no operator is ever shown."""
        best = [c for c in self.archive.best(self.config.heldout_tries, sound_only=True) if (c.fitness or 0) > 0]
        if not best:
            return None, None
        if not self.heldout_wls:
            self.archive.add_note(NoteKind.supervisor, "no held-out workloads: the winner is the best candidate",
                                  operator=HELD_OUT_GATE)
            return best[0].id, None
        for rank, c in enumerate(best):
            rounds = self.archive.evaluations(c.id, held_out=True)
            if rounds:
                traces = [w.trace for w in rounds[-1].workloads]
            else:
                t0 = time.monotonic()
                traces = self.evaluator.submit(EvaluationRequest(c.solution, tuple(self.heldout_wls))).result()
                seconds = time.monotonic() - t0
                usage = ResourceUsage(gpu_seconds=0.0 if self.evaluator_on_cpu() else seconds, wall_seconds=seconds)
                self.archive.record_evaluation(c.id, traces, usage=usage)
            failed = [t for t in traces if t.evaluation is None or t.evaluation.status is not EvaluationStatus.PASSED]
            if not failed:
                return c.id, rank == 0
            why = ", ".join(f"{t.workload.label}: {t.evaluation.status.value}" for t in failed if t.evaluation)
            self.archive.add_note(NoteKind.failure, f"held-out gate: {why}", candidate_id=c.id, operator=HELD_OUT_GATE)
        return None, False
