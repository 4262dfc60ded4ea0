"""The controller of `solforge evolve`: propose, evaluate, keep, repeat, then gate on held-out.

Threads and processes. A proposer thread asks the operators for candidates and puts
them in a bounded queue, so the operators work ahead while evaluation runs. One
evaluator thread per device (each GPU, or the CPU) takes candidates from the main
thread and runs the harness, whose isolated worker process does the actual work. The
main thread alone writes the archive (SQLite connections belong to one thread), keeps
the strategy, asks the stall supervisor for redirections, re-times new elites, and
reports progress.

Budgets. `max_candidates` counts evaluated candidates over the whole run (a resumed
run counts what it had before); `budget_s` is wall-clock time of this invocation. When
either is spent, evaluation in flight finishes, then the best candidates are evaluated
on the held-out workloads, in order of fitness, until one passes: that one is the
winner. A candidate that fails held-out is never exported as the winner.

Resume. The archive holds every decision; `resume` rebuilds the strategy from it (the
lineage, or the map-elites elites), re-queues the candidates that were in flight when
the run died, and never evaluates a candidate twice. A kill -9 loses at most those.
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from solforge.bench import BenchConfig, evaluate, run_bench
from solforge.bench.sol import attach_sol, baseline_latencies, detect_device
from solforge.knowledge import SeedKernel, seeds_for
from solforge.search.archive import DEFAULT_RUNS_ROOT, Archive
from solforge.search.archive_schema import AddOutcome, NoteKind, ResourceUsage, RunBudget, RunStatus
from solforge.search.operators import Proposal, Scored, SearchContext, make_operators
from solforge.search.strategies import LineageStrategy, MapElitesStrategy, descriptor, make_strategy
from solforge.search.supervisor import StallSupervisor
from solforge.spec import Definition, EvaluationStatus, SpecError, Trace, Workload

AGENT_OPERATORS = ("agent", "agent-cli")
MAX_CONSECUTIVE_DUPLICATES = 60  # the operators found nothing new this many times in a row: the space is spent


@dataclass
class EvolveConfig:
    """Options of one `solforge evolve` run."""

    device: str = "cpu"  # "cpu" or "cuda"; each visible GPU gets an evaluator
    strategy: str = "lineage"  # "lineage" or "map-elites"
    operators: tuple[str, ...] = ("tune", "crossover", "seed")
    budget_s: float | None = None  # wall-clock budget of this invocation, seconds
    max_candidates: int | None = None  # evaluated candidates over the whole run
    seed: int = 0  # of the operators' random choices
    runs_root: Path = DEFAULT_RUNS_ROOT
    queue_size: int = 4  # proposals made ahead of evaluation
    patience: int = 6  # evaluations without improvement before the supervisor redirects
    retime: bool = True  # re-time a would-be new best before accepting it
    heldout_tries: int = 5  # candidates tried on the held-out workloads, best first
    baselines: tuple[str, ...] | None = None  # default: eager and compile on cuda, eager on cpu
    bench: BenchConfig = field(default_factory=BenchConfig)
    llm: tuple[str, ...] = ()  # `--llm` values for the agent operator, e.g. ("openai:gpt-4o",)
    llm_config: Path | None = None  # the LLM config file (default: the user config dir's)
    max_cost_usd: float | None = None  # LLM budget of the whole run, US dollars
    agent_cmd: str | None = None  # command template of the agent-cli operator
    agent_timeout_s: float = 1800.0  # per agent-cli step


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


@dataclass
class WorkloadRow:
    """One workload of the final summary, latencies in ms."""

    label: str
    held_out: bool
    eager_ms: float | None
    compile_ms: float | None
    best_ms: float | None
    sol_ms: float | None
    sol_fraction: float | None
    status: str


@dataclass
class EvolveResult:
    run_id: str
    run_dir: Path
    evaluated: int
    first_fitness: float | None
    best_id: int | None
    best_fitness: float | None
    winner_id: int | None
    generalizes: bool | None  # None: no held-out workloads
    seconds_to_best: float | None
    rows: list[WorkloadRow]
    exported: dict[str, Path]
    stop_reason: str


@dataclass
class _Job:
    candidate_id: int
    proposal: Proposal
    workloads: list[Workload]
    retime: bool = False
    held_out: bool = False


@dataclass
class _Done:
    job: _Job
    traces: list[Trace] | None
    seconds: float
    error: str | None = None


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _devices(device: str) -> list[str]:
    if device == "cpu":
        return ["cpu"]
    import torch

    n = torch.cuda.device_count()
    if n == 0:
        raise SpecError("--device cuda: torch sees no CUDA device on this machine (use --device cpu)")
    return [f"cuda:{i}" for i in range(n)]


def split_workloads(workloads: list[Workload], device: str) -> tuple[list[Workload], list[Workload]]:
    """(search, held-out): on the CPU the CPU-sized smoke workloads are searched when the
    definition has them; held-out workloads are never searched."""
    held_out = [w for w in workloads if w.held_out and not w.smoke]
    if device == "cpu" and any(w.smoke for w in workloads):
        return [w for w in workloads if w.smoke], held_out
    return [w for w in workloads if not w.held_out and not w.smoke], held_out


class Controller:
    """One run: its archive, strategy, operators, supervisor and threads."""

    def __init__(self, definition: Definition, workloads: list[Workload], config: EvolveConfig,
                 archive: Archive, on_progress: Callable[[ProgressSnapshot], None] | None = None) -> None:
        self.definition, self.config, self.archive = definition, config, archive
        self.on_progress = on_progress
        self.search_wls, self.heldout_wls = split_workloads(workloads, config.device)
        if not self.search_wls:
            raise SpecError(f"definition '{definition.name}': no search workloads")
        self.language = "numba" if config.device == "cpu" else "triton"
        self.seeds: dict[str, SeedKernel] = {s.name: s for s in seeds_for(definition, self.language)}
        if not self.seeds:
            raise SpecError(f"definition '{definition.name}': the knowledge base has no {self.language} seed kernel "
                            f"for op_type '{definition.op_type}' with this signature")
        self.families = sorted(self.seeds)
        self.strategy = make_strategy(config.strategy)
        self.devices = _devices(config.device)
        self.operators = {op.name: op for op in self._make_operators()}
        self.supervisor = StallSupervisor(list(self.operators), patience=config.patience)
        self.rng = random.Random(config.seed)
        self.lock = threading.Lock()
        self.tried: dict[str, int] = {}
        self.stop = threading.Event()
        self.proposals: queue.Queue[Proposal] = queue.Queue(maxsize=config.queue_size)
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.done: queue.Queue[_Done] = queue.Queue()
        self.baselines: dict[str, dict[str, float]] = archive.run.config.get("baselines", {})
        self.detected = detect_device(self.devices[0])
        self.started = time.time()
        self.halt: str | None = None  # why the search stopped early (nothing new, the proposer stopped)
        self.in_flight = 0  # jobs given to the evaluators and not yet handled
        self.admitting = 0  # a proposal taken off the queue and being admitted
        self._evaluated = len(archive.evaluated_ids())
        self.first_fitness: float | None = None
        self.last = ""

    # -- set-up ---------------------------------------------------------------------------
    def _make_operators(self) -> list:
        """The LLM-free operators by name; `agent` and `agent-cli` with what they need."""
        names = list(self.config.operators)
        plain = [n for n in names if n not in AGENT_OPERATORS]
        out = make_operators(plain)
        workloads = self.search_wls + self.heldout_wls  # the agents redact the held-out ones
        if "agent" in names:
            from solforge.agent import AgentOperator, load_llm_config, make_llm

            if not self.config.llm:
                raise SpecError("--operators agent: no LLM given (--llm openai:MODEL or anthropic:MODEL)")
            llm = make_llm(list(self.config.llm), load_llm_config(self.config.llm_config))
            out.append(AgentOperator(llm, self._evaluate_search, self.archive, self.devices[0], self.language,
                                     workloads=workloads, budget_usd=self.config.max_cost_usd,
                                     dataset_root=self.config.bench.dataset_root))
        if "agent-cli" in names:
            from solforge.agent import ExternalAgentOperator

            if not self.config.agent_cmd:
                raise SpecError("--operators agent-cli: no --agent-cmd given")
            out.append(ExternalAgentOperator(self.config.agent_cmd, self.config.agent_timeout_s, self.archive,
                                             self.devices[0], self.language, workloads=workloads,
                                             dataset_root=self.config.bench.dataset_root))
        return out

    def _evaluate_search(self, solution) -> list[Trace]:
        """The agent's `evaluate` tool: the harness on the search workloads, with SOL."""
        traces = evaluate(self.definition, self.search_wls, solution, self.devices[0], self.config.bench)
        attach_sol(self.definition, traces, self.baselines, self.detected)
        return traces

    def restore(self) -> None:
        """Rebuild the strategy and the family counts from the archive."""
        for c in self.archive.candidates():
            self.tried[c.family] = self.tried.get(c.family, 0) + 1
        if isinstance(self.strategy, LineageStrategy):
            versions = []
            for entry in self.archive.lineage():
                c = self.archive.candidate(entry.candidate_id)
                versions.append(Scored(c.id, c.family, dict(c.parameters), entry.fitness))
            self.strategy.restore(versions)
        elif isinstance(self.strategy, MapElitesStrategy):
            for e in self.archive.elites():
                c = self.archive.candidate(e.candidate_id)
                self.strategy.restore_elite(e.island, tuple(e.cell), Scored(c.id, c.family, dict(c.parameters), e.fitness))
        first = self.archive.history()
        if first:
            self.first_fitness = first[0].fitness

    # -- threads --------------------------------------------------------------------------
    def _context(self, island: int, parents: list[Scored]) -> SearchContext:
        return SearchContext(definition=self.definition, seeds=self.seeds, parents=parents,
                             elites=self.strategy.elites(), tried_families=dict(self.tried), rng=self.rng,
                             direction=self.supervisor.direction)

    def _propose_one(self) -> Proposal | None:
        with self.lock:
            island, parents = self.strategy.select(self.rng)
            if not parents or not any(self.tried.values()):
                names = ["seed"] if "seed" in self.operators else list(self.operators)
            else:
                first = self.supervisor.choose(self.rng)
                names = [first] + [n for n in self.operators if n != first]
            context = self._context(island, parents)
        for name in names:
            proposal = self.operators[name].propose(context)
            if proposal is not None:
                proposal.island = island
                return proposal
        if "seed" not in names:  # nothing to build on yet: start a family even if seed is off
            from solforge.search.operators import SeedOperator

            proposal = SeedOperator().propose(context)
            if proposal is not None:
                proposal.operator = "initial"
                return proposal
        return None

    def _wanted(self) -> bool:
        """Whether another proposal can still be evaluated within `max_candidates`: an agent's
        proposal costs LLM money, so none is made that the budget would leave unevaluated."""
        if self.config.max_candidates is None:
            return True
        pending = self._evaluated + self.in_flight + self.proposals.qsize() + self.admitting
        return pending < self.config.max_candidates

    def _proposer(self) -> None:
        while not self.stop.is_set():
            if not self._wanted():
                time.sleep(0.05)
                continue
            try:
                proposal = self._propose_one()
            except Exception as exc:  # an operator's bug, or the LLM budget spent: stop cleanly
                from solforge.agent.loop import BudgetExhausted

                why = f"LLM cost budget spent ({exc})" if isinstance(exc, BudgetExhausted) else \
                    f"operator error: {type(exc).__name__}: {exc}"
                self.done.put(_Done(_Job(-1, None, []), None, 0.0, why))
                return
            if proposal is None:
                time.sleep(0.05)
                continue
            while not self.stop.is_set():
                try:
                    self.proposals.put(proposal, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def _evaluator(self, device: str) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            t0 = time.time()
            try:
                traces = evaluate(self.definition, job.workloads, job.proposal.solution, device, self.config.bench)
                attach_sol(self.definition, traces, self.baselines, self.detected)
                self.done.put(_Done(job, traces, time.time() - t0))
            except Exception as exc:  # harness infrastructure failure (not the kernel's): keep the run going
                self.done.put(_Done(job, None, time.time() - t0, f"{type(exc).__name__}: {exc}"))

    # -- the main loop --------------------------------------------------------------------
    def evaluated_count(self) -> int:
        return len(self.archive.evaluated_ids())

    def _budget_left(self) -> bool:
        if self.halt is not None:
            return False
        if self.config.max_candidates is not None and self.evaluated_count() >= self.config.max_candidates:
            return False
        return self.config.budget_s is None or time.time() - self.started < self.config.budget_s

    def _admit(self, proposal: Proposal) -> _Job | None:
        cell = descriptor(proposal.family, proposal.params, proposal.solution)
        added = self.archive.add_candidate(
            proposal.solution, operator=proposal.operator, family=proposal.family, parent_ids=proposal.parent_ids,
            parameters=proposal.params, island=proposal.island, cell=cell, rationale=proposal.rationale,
        )
        if added.outcome is not AddOutcome.added:
            return None
        with self.lock:
            self.tried[proposal.family] = self.tried.get(proposal.family, 0) + 1
        self.archive.start_evaluation(added.candidate.id)
        return _Job(added.candidate.id, proposal, self.search_wls)

    def _handle(self, done: _Done) -> _Job | None:
        """Record one finished evaluation; returns a re-timing job when it would be a new best."""
        job = done.job
        if done.traces is None:
            if job.candidate_id >= 0:
                self.archive.drop(job.candidate_id, f"harness error: {done.error}", operator=job.proposal.operator)
            else:
                self.archive.add_note(NoteKind.supervisor, done.error or "unknown", operator="controller")
            self.last = done.error or "unknown"
            return None
        round_ = self.archive.record_evaluation(job.candidate_id, done.traces, retimed=job.retime,
                                                usage=ResourceUsage(gpu_seconds=done.seconds if self.config.device != "cpu" else 0.0,
                                                                    wall_seconds=done.seconds))
        if job.held_out:
            return None
        p = job.proposal
        scored = Scored(job.candidate_id, p.family, dict(p.params), round_.fitness)
        if self.first_fitness is None:
            self.first_fitness = round_.fitness
        statuses = {t.evaluation.status.value for t in done.traces if t.evaluation}
        with self.lock:
            if not job.retime and self.config.retime and self.strategy.would_improve(scored):
                self.last = f"#{job.candidate_id} {p.operator}: fitness {round_.fitness:.4f}, re-timing"
                return _Job(job.candidate_id, p, self.search_wls, retime=True)
            cell = descriptor(p.family, p.params, p.solution)
            verdict = self.strategy.consider(scored, cell, p.island)
        if verdict.accepted and isinstance(self.strategy, LineageStrategy):
            self.archive.commit(job.candidate_id, verdict.reason)
        elif verdict.accepted:
            self.archive.set_elite(p.island, cell, job.candidate_id)
        if round_.fitness == 0:
            failures = sorted(statuses - {EvaluationStatus.PASSED.value})
            self.archive.add_note(NoteKind.failure, f"{p.rationale}: {', '.join(failures)}",
                                  candidate_id=job.candidate_id, operator=p.operator)
        redirect = self.supervisor.observe(verdict.new_best)
        if redirect is not None:
            self.archive.add_note(NoteKind.supervisor, f"{redirect.reason}: favour {redirect.favoured}; "
                                  f"{redirect.direction}", operator="supervisor")
        self.last = f"#{job.candidate_id} {p.operator}: fitness {round_.fitness:.4f} ({verdict.reason})"
        return None

    def snapshot(self) -> ProgressSnapshot:
        best = self.strategy.best()
        fraction = None
        if best is not None:
            fractions = [w.sol_fraction for r in self.archive.evaluations(best.candidate_id)[-1:] for w in r.workloads]
            fraction = _geomean([f for f in fractions if f is not None])
        remaining = None if self.config.budget_s is None else max(0.0, self.config.budget_s - (time.time() - self.started))
        return ProgressSnapshot(
            evaluated=self.evaluated_count(), best_fitness=best.fitness if best else None,
            best_sol_fraction=fraction, failures={k.value: v for k, v in self.archive.failures_by_status().items()},
            elapsed_s=time.time() - self.started, remaining_s=remaining, last=self.last,
        )

    def run_search(self) -> str:
        """Propose and evaluate until a budget is spent; returns why it stopped."""
        for c in self.archive.in_flight():  # lost by a crash: evaluate them first
            self.archive.start_evaluation(c.id)
            proposal = Proposal(c.solution, c.operator, c.family, dict(c.parameters), list(c.parent_ids), "", c.island)
            self.jobs.put(_Job(c.id, proposal, self.search_wls))
        self.in_flight = in_flight = self.jobs.qsize()
        evaluators = [threading.Thread(target=self._evaluator, args=(d,), daemon=True) for d in self.devices]
        proposer = threading.Thread(target=self._proposer, daemon=True)
        for t in [*evaluators, proposer]:
            t.start()
        duplicates = 0
        try:
            while True:
                budget_left = self._budget_left()
                if not budget_left and in_flight == 0:
                    break
                while budget_left and in_flight < len(self.devices):
                    if self.config.max_candidates is not None and \
                            self.evaluated_count() + in_flight >= self.config.max_candidates:
                        break
                    try:
                        self.admitting = 1
                        proposal = self.proposals.get(timeout=0.05)
                    except queue.Empty:
                        self.admitting = 0
                        break
                    job = self._admit(proposal)
                    if job is None:
                        self.admitting = 0
                        duplicates += 1
                        if duplicates >= MAX_CONSECUTIVE_DUPLICATES:
                            self.halt = "the operators found nothing new"
                            budget_left = False
                        continue
                    duplicates = 0
                    self.jobs.put(job)
                    in_flight += 1
                    self.in_flight = in_flight
                    self.admitting = 0
                try:
                    done = self.done.get(timeout=0.1)
                except queue.Empty:
                    continue
                if done.job.candidate_id < 0:  # the proposer stopped: finish what is in flight
                    self._handle(done)
                    self.halt = done.error or "the proposer stopped"
                    continue
                in_flight -= 1
                retime = self._handle(done)
                if retime is not None:
                    self.jobs.put(retime)
                    in_flight += 1
                self.in_flight = in_flight
                self._evaluated = self.evaluated_count()
                if self.on_progress:
                    self.on_progress(self.snapshot())
        finally:
            self.stop.set()
            for _ in evaluators:
                self.jobs.put(None)
        if self.halt is not None:
            return self.halt
        if self.config.max_candidates is not None and self.evaluated_count() >= self.config.max_candidates:
            return f"{self.config.max_candidates} candidates evaluated"
        return f"time budget of {self.config.budget_s:.0f} s spent"

    def held_out_gate(self) -> tuple[int | None, bool | None]:
        """(winner id, generalizes): the best candidates on the held-out workloads, best first;
        the first that passes every one is the winner."""
        best = [c for c in self.archive.best(self.config.heldout_tries) if (c.fitness or 0) > 0]
        if not best:
            return None, None
        if not self.heldout_wls:
            self.archive.add_note(NoteKind.supervisor, "no held-out workloads: the winner is the best candidate",
                                  operator="controller")
            return best[0].id, None
        for rank, c in enumerate(best):
            rounds = self.archive.evaluations(c.id, held_out=True)
            if rounds:
                traces = [w.trace for w in rounds[-1].workloads]
            else:
                traces = evaluate(self.definition, self.heldout_wls, c.solution, self.devices[0], self.config.bench)
                attach_sol(self.definition, traces, self.baselines, self.detected)
                self.archive.record_evaluation(c.id, traces)
            failed = [t for t in traces if t.evaluation is None or t.evaluation.status is not EvaluationStatus.PASSED]
            if not failed:
                return c.id, rank == 0
            why = ", ".join(f"{t.workload.label}: {t.evaluation.status.value}" for t in failed if t.evaluation)
            self.archive.add_note(NoteKind.failure, f"held-out gate: {why}", candidate_id=c.id, operator="controller")
        return None, False


def measure_baselines(definition: Definition, workloads: list[Workload], config: EvolveConfig) -> dict[str, dict[str, float]]:
    """Eager (and torch.compile) median latency per workload uuid, in ms, measured once per
    run with the same harness as every candidate."""
    names = config.baselines or (("eager", "compile") if config.device == "cuda" else ("eager",))
    search, held_out = split_workloads(workloads, config.device)
    result = run_bench(definition, search + held_out, [], _devices(config.device)[0], baselines=tuple(names),
                       config=config.bench)
    return baseline_latencies(result.baselines)


def open_run(definition: Definition, workloads: list[Workload], config: EvolveConfig,
             resume: str | Path | None) -> Archive:
    """A new run's archive (after measuring its baselines, which it keeps), or the archive
    of the run to resume (a run id under `config.runs_root`, or a run directory). Raises
    SpecError when the run does not exist or is of another problem."""
    if resume is None:
        baselines = measure_baselines(definition, workloads, config)
        return Archive.create(
            definition.name, device=config.device, strategy=config.strategy, operators=list(config.operators),
            seed=config.seed, budget=RunBudget(max_candidates=config.max_candidates, max_wall_seconds=config.budget_s,
                                               max_cost_usd=config.max_cost_usd),
            config={"bench": config.bench.model_dump(mode="json"), "baselines": baselines},
            runs_root=config.runs_root,
        )
    run_dir = Path(resume)
    if not run_dir.is_dir():
        run_dir = Path(config.runs_root) / str(resume)
    if not run_dir.is_dir():
        raise SpecError(f"--resume {resume}: no such run (looked in {config.runs_root})")
    archive = Archive.open(run_dir)
    if archive.run.problem != definition.name:
        raise SpecError(f"--resume {resume}: that run is of '{archive.run.problem}', not '{definition.name}'")
    archive.set_status(RunStatus.running)
    return archive
