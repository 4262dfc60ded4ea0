"""The tool-using agent loop, and `AgentOperator`, the search's LLM mutation operator.

One variation step: the context's best parent's sources go into a fresh workspace; the
model reads, edits, evaluates (real harness, search workloads), profiles, consults the
lineage and the knowledge base, repairs, and submits. The loop ends at `submit` or at a
limit of the step (turns, wall time, LLM cost), or when the run's cost budget is spent.

Accounting: the step adds up what it spends (tokens and USD at the price table,
`pricing`; wall seconds; the GPU seconds of its exploratory evaluations) and returns it
with its result, which the controller charges to the archive. The run-wide budget
(`budget_usd`, the run's `max_cost_usd`) is checked before every call against what the
run had spent when the step began (`SearchContext.run_cost_usd`) plus the step's own
spend: when it is reached the step stops and `propose` returns a `NoCandidate` with
`stop_run` set, which the controller turns into a clean stop of the run.

Every step leaves one note, accepted or not: a rationale note with the model's
rationale when it proposes a candidate, a failure note saying why otherwise. A step
that ends at a limit still proposes its sources when they differ from the parent and
their last evaluation passed every search workload.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from solforge.agent.llm import LLMClient, LLMError, Message, ModelMix, Role, StopReason, Usage
from solforge.agent.pricing import price_for
from solforge.agent.prompts import (
    TOOLS_GUIDE,
    SolSummary,
    best_summary,
    sol_summary,
    system_prompt,
    task_message,
    trim,
    untried_techniques,
)
from solforge.agent.tools import AgentTools, EvaluateFn, ToolResult
from solforge.agent.workspace import Workspace, safe_name
from solforge.search.archive_schema import NoteKind, ResourceUsage
from solforge.search.context import Candidate, NoCandidate, OperatorNote, SearchContext
from solforge.spec import Definition, Language, Solution, Workload


@dataclass(frozen=True)
class AgentLimits:
    """Limits of one variation step."""

    max_turns: int = 40  # model calls
    max_wall_s: float = 1800.0  # wall-clock time, seconds (checked between calls)
    max_cost_usd: float | None = 5.0  # LLM cost of the step, US dollars; None: no per-step limit
    max_output_tokens: int | None = None  # per call; None: the LLM config's max_output_tokens


class StepOutcome(str, enum.Enum):
    submitted = "submitted"
    max_turns = "max_turns"
    max_wall = "max_wall"
    max_cost = "max_cost"  # the step's own cost limit
    budget = "budget"  # the run's cost budget
    llm_error = "llm_error"


@dataclass
class StepResult:
    outcome: StepOutcome
    rationale: str  # the submit's rationale, else the model's last words
    turns: int
    detail: str = ""  # e.g. the LLM error


@dataclass
class StepMeter:
    """What one step spends, and whether the step's limit or the run's budget is reached.

    `run_spent_usd`: what the run had spent when the step began; `budget_usd`: the run's
    LLM budget (None: no limit)."""

    budget_usd: float | None = None
    run_spent_usd: float = 0.0
    prices: dict = field(default_factory=dict)
    usage: ResourceUsage = field(default_factory=ResourceUsage)  # the step's spend so far
    unpriced: set[str] = field(default_factory=set)  # models without a price: their cost is not counted

    @property
    def step_usd(self) -> float:
        return self.usage.cost_usd

    def budget_reached(self) -> bool:
        return self.budget_usd is not None and self.run_spent_usd + self.step_usd >= self.budget_usd

    def budget_text(self) -> str:
        spent = self.run_spent_usd + self.step_usd
        return f"LLM cost budget reached: ${spent:.4f} spent of ${self.budget_usd:.4f}"

    def charge_llm(self, client: LLMClient, usage: Usage, wall_s: float) -> None:
        price = price_for(client.model, self.prices)
        if price is None:
            self.unpriced.add(client.model)
        cost = price.cost_usd(usage.input_tokens, usage.output_tokens) if price is not None else 0.0
        self.charge(ResourceUsage(wall_seconds=wall_s, llm_input_tokens=usage.input_tokens,
                                  llm_output_tokens=usage.output_tokens, cost_usd=cost))  # fmt: skip

    def charge(self, usage: ResourceUsage) -> None:
        self.usage = self.usage + usage


_NUDGE = "Continue with the tools (no tool was called). When the candidate is correct and faster, call submit."
_CUT = "Your reply was cut at the output token limit. Make smaller edits (apply_patch) and continue."


def run_step(client: LLMClient, system: str, task: str, tools: AgentTools, limits: AgentLimits,
             meter: StepMeter, max_output_tokens: int) -> StepResult:  # fmt: skip
    """Run the tool-using loop until submit or a limit; never raises for what the model does
    (its errors go back to it as tool results). LLMError ends the step as `llm_error`."""
    messages: list[Message] = [Message(Role.user, task)]
    start = time.monotonic()
    last_words = ""
    for turn in range(1, limits.max_turns + 1):
        if meter.budget_reached():
            return StepResult(StepOutcome.budget, last_words, turn - 1)
        if time.monotonic() - start > limits.max_wall_s:
            return StepResult(StepOutcome.max_wall, last_words, turn - 1)
        if limits.max_cost_usd is not None and meter.step_usd >= limits.max_cost_usd:
            return StepResult(StepOutcome.max_cost, last_words, turn - 1)
        t0 = time.monotonic()
        try:
            resp = client.complete(system, messages, tools.specs, max_output_tokens)
        except LLMError as exc:
            return StepResult(StepOutcome.llm_error, last_words, turn - 1, detail=str(exc))
        meter.charge_llm(client, resp.usage, time.monotonic() - t0)
        messages.append(resp.message)
        last_words = resp.message.text.strip() or last_words
        if meter.budget_reached():
            return StepResult(StepOutcome.budget, last_words, turn)
        if not resp.message.tool_calls:
            messages.append(Message(Role.user, _CUT if resp.stop_reason is StopReason.max_tokens else _NUDGE))
            continue
        ended = False
        for call in resp.message.tool_calls:
            result = ToolResult("not run: the step ended at submit", is_error=True) if ended else tools.dispatch(call)
            messages.append(Message(Role.tool, result.text, tool_call_id=call.id, is_error=result.is_error))
            ended = ended or result.ends_step
        if ended:
            return StepResult(StepOutcome.submitted, tools.rationale or last_words, turn)
    return StepResult(StepOutcome.max_turns, last_words, limits.max_turns)


def make_evaluate_fn(definition: Definition, workloads: Sequence[Workload], device: str,
                     config: object | None = None) -> EvaluateFn:  # fmt: skip
    """`evaluate_fn(solution) -> list[Trace]` over `workloads` with `solforge.bench.evaluate`
    and `config` (a BenchConfig; default BenchConfig()), for running an agent step
    outside a search (in a search, the controller's evaluator is used). Raises
    ValueError for a held-out workload: an agent is only ever given search workloads."""
    search = list(workloads)
    if any(w.held_out for w in search):
        raise ValueError("make_evaluate_fn: a held-out workload; pass the search workloads only")

    def evaluate_fn(solution: Solution) -> list:
        from solforge.bench import BenchConfig, evaluate

        return evaluate(definition, search, solution, device, config or BenchConfig())

    return evaluate_fn


@dataclass
class Start:
    """Where a step starts: the parent's sources (or a seed kernel's)."""

    solution: Solution
    family: str
    parent_ids: tuple[int, ...]
    described: str  # for the task message
    best: str  # for the system prompt


def starting_point(context: SearchContext, language: Language, sol: SolSummary | None) -> Start | None:
    """The context's best parent (its sources and family); without a parent, the
    least-tried seed kernel of `language` at its default parameters; None when there is
    neither."""
    parent = context.best_parent
    if parent is not None:
        return Start(parent.solution, parent.family, (parent.candidate_id,),
                     f"candidate #{parent.candidate_id} (family {parent.family})",
                     best_summary(parent, context.parent_traces, sol))  # fmt: skip
    kernels = [k for k in context.seed_kernels.values() if k.language == language]
    if not kernels:
        return None
    # the engine names a family by its seed kernel (SeedKernel.name), as context.seed_kernels does
    kernel = min(kernels, key=lambda k: (context.tried_families.get(k.name, 0), k.name))
    return Start(kernel.to_solution(context.definition), kernel.name, (),
                 f"the seed kernel {kernel.name} at its default parameters",
                 "no candidate evaluated yet; the workspace holds a seed kernel")  # fmt: skip


class AgentOperator:
    """The LLM agent as a variation operator (`propose(context) -> Candidate | NoCandidate`).

    `llm`: a ModelMix (`make_llm`) or one client. `evaluate_fn`: the harness over the
    search workloads (the controller's, or `make_evaluate_fn`). `language`: for starting
    from a seed kernel when the context has no parent; with a parent, the parent's
    language is kept. `budget_usd`: the run's LLM budget (None: no limit). The workloads,
    the lineage and the notes the model is shown come from the context.
    """

    name = "agent"

    def __init__(self, llm: ModelMix | LLMClient, evaluate_fn: EvaluateFn, device: str, language: Language | str,
                 limits: AgentLimits | None = None, *, budget_usd: float | None = None,
                 knowledge_fn: Callable | None = None, dataset_root: Path | None = None) -> None:  # fmt: skip
        self.mix = llm if isinstance(llm, ModelMix) else ModelMix.of(llm)
        self.evaluate_fn, self.device = evaluate_fn, device
        self.language = Language(language)
        self.limits = limits or AgentLimits()
        self.budget_usd = budget_usd
        self.knowledge_fn, self.dataset_root = knowledge_fn, dataset_root
        self._sol: dict[str, SolSummary] = {}

    def _sol_summary(self, definition: Definition, workloads: Sequence[Workload]) -> SolSummary:
        if definition.name not in self._sol:
            self._sol[definition.name] = sol_summary(definition, workloads, self.device)
        return self._sol[definition.name]

    def propose(self, context: SearchContext) -> Candidate | NoCandidate:
        """One agent step from the context's best parent (else a seed kernel of `language`):
        the Candidate with the step's note and spend, or a NoCandidate saying why
        (`stop_run` set when the run's LLM budget is spent)."""
        meter = StepMeter(self.budget_usd, context.run_cost_usd, self.mix.prices)
        if meter.budget_reached():
            return NoCandidate(self.name, meter.budget_text(), stop_run=True)
        definition = context.definition
        sol = self._sol_summary(definition, context.workloads)
        start = starting_point(context, self.language, sol)
        if start is None:
            why = f"agent: no parent and no {self.language.value} seed kernel to start from"
            return NoCandidate(self.name, why, notes=(OperatorNote(NoteKind.failure, why),))
        client = self.mix.choose(context.rng)
        workspace = Workspace.create(start.solution)
        try:
            tools = AgentTools(workspace, definition, context.workloads, self.evaluate_fn, device=self.device,
                               lineage=context.lineage, notes=context.notes, sol=sol, knowledge_fn=self.knowledge_fn,
                               on_usage=meter.charge, dataset_root=self.dataset_root,
                               solution_name=f"{safe_name(start.solution.name)[:48]}-agent",
                               author=f"solforge-agent ({client.provider}:{client.model})")  # fmt: skip
            spec = start.solution.spec
            system = system_prompt(definition, spec.language, spec.entry_point, spec.destination_passing_style,
                                   context.workloads, sol, start.best,
                                   TOOLS_GUIDE.format(max_turns=self.limits.max_turns))  # fmt: skip
            untried = untried_techniques(definition, spec.language, context.rationales()) if context.direction else []
            task = task_message(workspace.files(), start.described, context.direction, untried)
            max_out = self.limits.max_output_tokens or self.mix.max_output_tokens
            result = run_step(client, system, task, tools, self.limits, meter, max_out)
            candidate = self._candidate(result, tools, start)
        finally:
            workspace.cleanup()
        note = self._note(result, candidate, client, meter)
        if candidate is not None:
            return Candidate(candidate.solution, self.name, start.family, {}, start.parent_ids, candidate.rationale,
                             notes=(note,), usage=meter.usage)  # fmt: skip
        if result.outcome is StepOutcome.budget:
            return NoCandidate(self.name, meter.budget_text(), notes=(note,), usage=meter.usage, stop_run=True)
        return NoCandidate(self.name, trim(note.text, 200), notes=(note,), usage=meter.usage)

    def _candidate(self, result: StepResult, tools: AgentTools, start: Start) -> _Proposed | None:
        sources = tools.workspace.sources()
        if [(s.path, s.content) for s in sources] == sorted((s.path, s.content) for s in start.solution.sources):
            return None
        if result.outcome is StepOutcome.submitted:
            rationale = result.rationale
        else:
            last = tools.last_evaluation_of_current()
            if result.outcome is StepOutcome.budget or last is None or not last.passed:
                return None
            rationale = f"[the step ended at {result.outcome.value}; its last edit passed every search workload] " \
                        + (result.rationale or "")
        digest = tools.current_hash()[:8]
        solution = tools.workspace.solution(f"{tools.solution_name}-{digest}", tools.author, trim(rationale, 500))
        return _Proposed(solution, rationale)

    def _note(self, result: StepResult, candidate: _Proposed | None, client: LLMClient,
              meter: StepMeter) -> OperatorNote:  # fmt: skip
        u = meter.usage
        stats = (f"agent step with {client.provider}:{client.model}: {result.outcome.value} after "
                 f"{result.turns} turn(s), {u.llm_input_tokens} input + {u.llm_output_tokens} output tokens, "
                 f"${u.cost_usd:.4f}")  # fmt: skip
        if meter.unpriced:
            stats += f" (no price for {', '.join(sorted(meter.unpriced))}: cost not counted; add it to [prices])"
        if result.detail:
            stats += f"; {result.detail}"
        if candidate is not None:
            return OperatorNote(NoteKind.rationale,
                                trim(f"{stats}; proposed {candidate.solution.name}: {candidate.rationale}", 4000))
        why = "no change to the parent's sources" if result.outcome is StepOutcome.submitted else \
            "nothing proposed (no passing edit)"
        text = f"{stats}; {why}" + (f": {result.rationale}" if result.rationale else "")
        return OperatorNote(NoteKind.failure, trim(text, 4000))


@dataclass(frozen=True)
class _Proposed:
    """The sources a step proposes, before they become a Candidate."""

    solution: Solution
    rationale: str
