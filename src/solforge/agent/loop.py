"""The tool-using agent loop, and `AgentOperator`, the search's LLM mutation operator.

One variation step: the context's best parent's sources go into a fresh workspace; the
model reads, edits, evaluates (real harness, search workloads), profiles, consults the
lineage and the knowledge base, repairs, and submits. The loop ends at `submit` or at a
limit of the step (turns, wall time, LLM cost), or when the run's cost budget is spent.

Accounting: every LLM call is charged to the archive as it happens (tokens and USD at
the price table, `pricing`), and so is every exploratory evaluation (wall seconds, GPU
seconds on a GPU), so a killed run loses at most one call's cost. The run-wide budget is
the archive's `RunBudget.max_cost_usd` (or the operator's `budget_usd`), checked against
the archive's run total before every call: when it is reached the step stops, its note
is written, and `propose` raises `BudgetExhausted`, which the controller turns into a
clean stop of the run.

Every step leaves one note in the archive, accepted or not: a rationale note with the
model's rationale when it proposes a candidate, a failure note saying why otherwise.
A step that ends at a limit still proposes its sources when they differ from the parent
and their last evaluation passed every search workload.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from solforge.agent.llm import LLMClient, LLMError, Message, ModelMix, Role, StopReason, Usage
from solforge.agent.pricing import price_for
from solforge.agent.prompts import (
    TOOLS_GUIDE,
    SolSummary,
    best_summary,
    search_workloads,
    sol_summary,
    system_prompt,
    task_message,
    trim,
    untried_techniques,
)
from solforge.agent.tools import AgentTools, EvaluateFn, ToolResult
from solforge.agent.workspace import Workspace, safe_name
from solforge.spec import Definition, Language, Solution, Workload

if TYPE_CHECKING:
    from solforge.search.archive import Archive
    from solforge.search.archive_schema import ResourceUsage
    from solforge.search.operators import Proposal, SearchContext


class BudgetExhausted(Exception):
    """The run's LLM cost budget is spent: stop the run cleanly (the message gives the figures)."""


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


class CostMeter:
    """Charges LLM calls and evaluations to the archive as they happen, and knows whether
    the step's limit or the run's budget is reached."""

    def __init__(self, archive: Archive | None, operator: str, budget_usd: float | None,
                 prices: dict | None = None) -> None:  # fmt: skip
        self.archive, self.operator, self.budget_usd = archive, operator, budget_usd
        self.prices = prices or {}
        self.step_usd = 0.0
        self.step_input_tokens = 0
        self.step_output_tokens = 0
        self.unpriced: set[str] = set()
        self._local_run_usd = 0.0  # without an archive: what this meter has seen

    def run_spent_usd(self) -> float:
        if self.archive is not None:
            return self.archive.totals().run.cost_usd
        return self._local_run_usd

    def budget_reached(self) -> bool:
        return self.budget_usd is not None and self.run_spent_usd() >= self.budget_usd

    def new_step(self) -> None:
        self.step_usd, self.step_input_tokens, self.step_output_tokens = 0.0, 0, 0

    def charge_llm(self, client: LLMClient, usage: Usage, wall_s: float) -> None:
        from solforge.search.archive_schema import ResourceUsage

        price = price_for(client.model, self.prices)
        if price is None:
            self.unpriced.add(client.model)
        cost = price.cost_usd(usage.input_tokens, usage.output_tokens) if price is not None else 0.0
        self.step_usd += cost
        self._local_run_usd += cost
        self.step_input_tokens += usage.input_tokens
        self.step_output_tokens += usage.output_tokens
        self.charge(ResourceUsage(wall_seconds=wall_s, llm_input_tokens=usage.input_tokens,
                                  llm_output_tokens=usage.output_tokens, cost_usd=cost))  # fmt: skip

    def charge(self, usage: ResourceUsage) -> None:
        if self.archive is not None:
            self.archive.charge(self.operator, usage)


_NUDGE = "Continue with the tools (no tool was called). When the candidate is correct and faster, call submit."
_CUT = "Your reply was cut at the output token limit. Make smaller edits (apply_patch) and continue."


def run_step(client: LLMClient, system: str, task: str, tools: AgentTools, limits: AgentLimits,
             meter: CostMeter, max_output_tokens: int) -> StepResult:  # fmt: skip
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
    """`evaluate_fn(solution) -> list[Trace]` over the SEARCH workloads of `workloads`
    (held-out ones are dropped here, before the harness ever runs them), with
    `solforge.bench.evaluate` and `config` (a BenchConfig; default BenchConfig())."""
    search = search_workloads(workloads)

    def evaluate_fn(solution: Solution) -> list:
        from solforge.bench import BenchConfig, evaluate

        return evaluate(definition, search, solution, device, config or BenchConfig())

    return evaluate_fn


@dataclass
class Start:
    """Where a step starts: the parent's sources (or a seed kernel's)."""

    solution: Solution
    family: str
    parent_ids: list[int]
    island: int
    described: str  # for the task message
    best: str  # for the system prompt


def starting_point(context: SearchContext, archive: Archive, language: Language,
                   sol: SolSummary | None) -> Start | None:  # fmt: skip
    """The context's best parent (its sources, family and island, read from the archive);
    without a parent, the least-tried seed kernel of `language` at its default
    parameters; None when there is neither."""
    if context.parents:
        rec = archive.candidate(context.parents[0].candidate_id)
        return Start(rec.solution, rec.family, [rec.id], rec.island, f"candidate #{rec.id} (family {rec.family})",
                     best_summary(archive, rec.id, sol))  # fmt: skip
    seeds = [s for s in context.seeds.values() if s.language == language]
    if not seeds:
        return None
    # the engine names a family by its seed kernel (SeedKernel.name), as context.seeds does
    seed = min(seeds, key=lambda s: (context.tried_families.get(s.name, 0), s.name))
    return Start(seed.to_solution(context.definition), seed.name, [], 0,
                 f"the seed kernel {seed.name} at its default parameters",
                 "no candidate evaluated yet; the workspace holds a seed kernel")  # fmt: skip


class AgentOperator:
    """The LLM agent as a variation operator (`propose(context) -> Proposal | None`).

    `llm`: a ModelMix (`make_llm`) or one client. `evaluate_fn`: the harness over the
    search workloads (`make_evaluate_fn`). `workloads`: the search workloads, the ones
    `evaluate_fn` runs (the prompt lists them); held-out ones may be passed too: they are
    filtered out, and only used to redact their names from anything the model sees. `language`:
    for starting from a seed kernel when the context has no parent; with a parent, the
    parent's language is kept. `budget_usd`: the run's LLM budget, default the archive's
    `RunBudget.max_cost_usd`. Raises BudgetExhausted from `propose` once it is spent.
    """

    name = "agent"

    def __init__(self, llm: ModelMix | LLMClient, evaluate_fn: EvaluateFn, archive: Archive, device: str,
                 language: Language | str, limits: AgentLimits | None = None, *,
                 workloads: Sequence[Workload] = (), budget_usd: float | None = None,
                 knowledge_fn=None, dataset_root: Path | None = None) -> None:  # fmt: skip
        self.mix = llm if isinstance(llm, ModelMix) else ModelMix.of(llm)
        self.evaluate_fn, self.archive, self.device = evaluate_fn, archive, device
        self.language = Language(language)
        self.limits = limits or AgentLimits()
        self.workloads = list(workloads)
        self.knowledge_fn, self.dataset_root = knowledge_fn, dataset_root
        if budget_usd is None:
            budget_usd = archive.run.budget.max_cost_usd
        self.meter = CostMeter(archive, self.name, budget_usd, self.mix.prices)
        self._sol: dict[str, SolSummary] = {}

    def _sol_summary(self, definition: Definition) -> SolSummary:
        if definition.name not in self._sol:
            self._sol[definition.name] = sol_summary(definition, self.workloads, self.device)
        return self._sol[definition.name]

    def propose(self, context: SearchContext) -> Proposal | None:
        """One agent step from the context's best parent (else a seed kernel of `language`).
        Returns the Proposal, or None when the step produced nothing usable (the failure
        note says why). Raises BudgetExhausted when the run's LLM budget is spent."""
        from solforge.search.archive_schema import NoteKind

        if self.meter.budget_reached():
            raise BudgetExhausted(self._budget_text())
        definition = context.definition
        sol = self._sol_summary(definition)
        start = starting_point(context, self.archive, self.language, sol)
        if start is None:
            self.archive.add_note(NoteKind.failure, f"agent: no parent and no {self.language.value} seed kernel to "
                                  "start from", operator=self.name)  # fmt: skip
            return None
        client = self.mix.choose(context.rng)
        self.meter.new_step()
        workspace = Workspace.create(start.solution)
        try:
            tools = AgentTools(workspace, definition, self.workloads, self.evaluate_fn, device=self.device,
                               archive=self.archive, sol=sol, knowledge_fn=self.knowledge_fn,
                               on_usage=self.meter.charge, dataset_root=self.dataset_root,
                               solution_name=f"{safe_name(start.solution.name)[:48]}-agent",
                               author=f"solforge-agent ({client.provider}:{client.model})")  # fmt: skip
            spec = start.solution.spec
            system = system_prompt(definition, spec.language, spec.entry_point, spec.destination_passing_style,
                                   tools.search, sol, start.best,
                                   TOOLS_GUIDE.format(max_turns=self.limits.max_turns))  # fmt: skip
            untried = []
            if context.direction:
                said = [n.text for n in self.archive.notes(kind=NoteKind.rationale)]
                untried = untried_techniques(definition, spec.language, said)
            task = task_message(workspace.files(), start.described, context.direction, untried)
            max_out = self.limits.max_output_tokens or self.mix.max_output_tokens
            result = run_step(client, tools.guard.redact(system), tools.guard.redact(task), tools, self.limits,
                              self.meter, max_out)  # fmt: skip
            proposal = self._proposal(result, tools, start)
        finally:
            workspace.cleanup()
        self._note(result, proposal, client)
        if result.outcome is StepOutcome.budget:
            raise BudgetExhausted(self._budget_text())
        return proposal

    def _proposal(self, result: StepResult, tools: AgentTools, start: Start) -> Proposal | None:
        from solforge.search.operators import Proposal

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
        digest = hashlib.sha256("".join(s.path + s.content for s in sources).encode()).hexdigest()[:8]
        solution = tools.workspace.solution(f"{tools.solution_name}-{digest}", tools.author, trim(rationale, 500))
        return Proposal(solution=solution, operator=self.name, family=start.family, params={},
                        parent_ids=list(start.parent_ids), rationale=rationale, island=start.island)  # fmt: skip

    def _note(self, result: StepResult, proposal: Proposal | None, client: LLMClient) -> None:
        from solforge.search.archive_schema import NoteKind

        m = self.meter
        stats = (f"agent step with {client.provider}:{client.model}: {result.outcome.value} after "
                 f"{result.turns} turn(s), {m.step_input_tokens} input + {m.step_output_tokens} output tokens, "
                 f"${m.step_usd:.4f}")  # fmt: skip
        if m.unpriced:
            stats += f" (no price for {', '.join(sorted(m.unpriced))}: cost not counted; add it to [prices])"
        if result.detail:
            stats += f"; {result.detail}"
        if proposal is not None:
            text, kind = f"{stats}; proposed {proposal.solution.name}: {proposal.rationale}", NoteKind.rationale
        else:
            why = "no change to the parent's sources" if result.outcome is StepOutcome.submitted else \
                "nothing proposed (no passing edit)"
            text, kind = f"{stats}; {why}" + (f": {result.rationale}" if result.rationale else ""), NoteKind.failure
        self.archive.add_note(kind, trim(text, 4000), operator=self.name)

    def _budget_text(self) -> str:
        return f"LLM cost budget reached: ${self.meter.run_spent_usd():.4f} spent of ${self.meter.budget_usd:.4f}"
