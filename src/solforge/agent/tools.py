"""The agent's tools, exposed to the model as JSON-schema functions.

read_file, write_file, apply_patch   the candidate's workspace (see `workspace`)
evaluate                             the real harness on the SEARCH workloads
profile                              where the time goes (see `profiling`)
lineage                              committed versions, their fitness and diffs, failed directions
knowledge                            full-text search over the playbook and the seed kernels
submit                               ends the step with the workspace's sources and a rationale

A tool never raises into the loop: a bad argument, a missing file, a patch that does not
apply, an unknown tool, or a tool that is unavailable here comes back to the model as
an error result, and the loop goes on.

Held-out workloads are never shown because they never get here: the workloads, the
lineage and the notes come from the step's `SearchContext`, which holds none, and
`evaluate` is the controller's, which runs the search workloads only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.agent.llm import ToolCall, ToolSpec
from solforge.agent.prompts import SolSummary, format_traces, trim
from solforge.agent.workspace import PatchError, Workspace, WorkspaceError
from solforge.search.archive_schema import NoteKind, NoteRecord, ResourceUsage, source_hash
from solforge.search.context import LineageStep
from solforge.spec import Definition, EvaluationStatus, Solution, Trace, Workload, check_solution

EvaluateFn = Callable[[Solution], list[Trace]]


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    ends_step: bool = False  # submit accepted: the step is over


@dataclass(frozen=True)
class EvalRecord:
    """One evaluate call: the sources it saw and whether every search workload passed."""

    source_hash: str
    passed: bool
    summary: str


def _schema(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_STR = {"type": "string"}

PATCH_HELP = """\
Edit files with SEARCH/REPLACE blocks. Each block is: a line with the file path, then
<<<<<<< SEARCH
the exact current lines (whitespace included)
=======
the new lines
>>>>>>> REPLACE
SEARCH must match whole lines of the file exactly once (add surrounding lines to make
it unique); an empty SEARCH creates a new file. Several blocks apply in order. If any
block does not match, nothing is changed and the error says which block failed."""

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec("read_file", "Read a source file of the candidate's workspace (with line numbers).",
             _schema({"path": _STR}, ["path"])),
    ToolSpec("write_file", "Create or overwrite a source file of the candidate's workspace.",
             _schema({"path": _STR, "content": _STR}, ["path", "content"])),
    ToolSpec("apply_patch", PATCH_HELP, _schema({"patch": _STR}, ["patch"])),
    ToolSpec("evaluate", "Build the workspace's sources and run the harness on the search workloads: "
             "status per workload (PASSED, COMPILE_ERROR, RUNTIME_ERROR, INCORRECT_*, TIMEOUT, REWARD_HACK), "
             "error logs, latency_ms and SOL fraction.", _schema({}, [])),
    ToolSpec("profile", "Profile one call of the workspace's sources on one search workload (default: the "
             "largest): Nsight Compute metrics or the torch profiler's table, and Triton's compile report.",
             _schema({"workload": {"type": "string", "description": "uuid or label of a search workload"}}, [])),
    ToolSpec("lineage", "The committed versions of this run with fitness and diffs, and notes on directions "
             "that failed.", _schema({}, [])),
    ToolSpec("knowledge", "Search the optimization playbook and the seed kernels (plain words), or read one "
             "document in full by the path a search returned.",
             _schema({"query": _STR, "path": _STR, "kind": {"type": "string", "enum": ["playbook", "seed"]}}, [])),
    ToolSpec("submit", "End this step with the workspace's current sources as the new candidate. The "
             "rationale says what changed and why it should be faster. Refused once if the last evaluation "
             "of these exact sources failed, unless force is true.",
             _schema({"rationale": _STR, "force": {"type": "boolean"}}, ["rationale"])),
)  # fmt: skip

_JSON_TYPES = {"string": str, "boolean": bool, "integer": int, "number": (int, float), "object": dict}


def check_arguments(spec: ToolSpec, args: dict[str, Any]) -> str | None:
    """Why `args` do not fit `spec`'s schema (missing, unknown or mistyped fields), or None."""
    props = spec.parameters.get("properties", {})
    missing = [k for k in spec.parameters.get("required", []) if k not in args]
    if missing:
        return f"missing argument(s): {', '.join(missing)}"
    unknown = [k for k in args if k not in props]
    if unknown:
        return f"unknown argument(s): {', '.join(unknown)} (expected: {', '.join(props) or 'none'})"
    for k, v in args.items():
        expected = props[k].get("type")
        mistyped = expected is not None and (not isinstance(v, _JSON_TYPES[expected]) or
                                             (expected in ("integer", "number") and isinstance(v, bool)))
        if mistyped:
            return f"argument '{k}': expected a {expected}, got {type(v).__name__}"
        if "enum" in props[k] and v not in props[k]["enum"]:
            return f"argument '{k}': expected one of {props[k]['enum']}, got {v!r}"
    return None


@dataclass
class AgentTools:
    """The tools of one agent step over one workspace. `on_usage` receives the resources
    each evaluation spends (wall seconds; GPU seconds on a GPU), for the step's costs."""

    workspace: Workspace
    definition: Definition
    workloads: Sequence[Workload]  # the search workloads (the step's SearchContext.workloads)
    evaluate_fn: EvaluateFn
    device: str = "cpu"
    lineage: Sequence[LineageStep] | None = None  # None: this step has no run (no lineage tool)
    notes: Sequence[NoteRecord] = ()  # the run's notes, for the lineage tool
    sol: SolSummary | None = None
    knowledge_fn: Callable[..., list[Any]] | None = None  # search_knowledge's signature; None: solforge.knowledge
    on_usage: Callable[[ResourceUsage], None] | None = None
    output_chars: int = 8000  # cap on one tool result
    profile_timeout_s: float = 180.0
    dataset_root: Path | None = None
    solution_name: str = "agent-candidate"
    author: str = "solforge-agent"
    rationale: str | None = field(default=None, init=False)  # set by an accepted submit
    evaluations: list[EvalRecord] = field(default_factory=list, init=False)
    _refused_submit: str | None = field(default=None, init=False, repr=False)  # sources hash submit refused once

    def __post_init__(self) -> None:
        self.search = list(self.workloads)
        if any(w.held_out for w in self.search):
            raise ValueError("AgentTools: a held-out workload; the agent is only ever given search workloads")

    @property
    def specs(self) -> list[ToolSpec]:
        return list(TOOL_SPECS)

    def dispatch(self, call: ToolCall) -> ToolResult:
        """Run one tool call; every problem comes back as an error result."""
        spec = next((s for s in TOOL_SPECS if s.name == call.name), None)
        if spec is None:
            return ToolResult(f"ERROR: unknown tool '{call.name}' (tools: {', '.join(s.name for s in TOOL_SPECS)})",
                              is_error=True)  # fmt: skip
        if call.arguments is None:
            raw = trim(call.raw_arguments, 300)
            return ToolResult(f"ERROR: {call.name}: {call.error}; you sent: {raw}", is_error=True)
        problem = check_arguments(spec, call.arguments)
        if problem:
            return ToolResult(f"ERROR: {call.name}: {problem}", is_error=True)
        try:
            result = getattr(self, f"_tool_{call.name}")(**call.arguments)
        except WorkspaceError as exc:  # PatchError included
            result = ToolResult(f"ERROR: {call.name}: {exc}", is_error=True)
        except Exception as exc:  # a tool's own failure (a profiler, the index) must not end the step
            result = ToolResult(f"ERROR: {call.name} failed: {type(exc).__name__}: {exc}", is_error=True)
        return ToolResult(trim(result.text, self.output_chars), result.is_error, result.ends_step)

    # -- the workspace ----------------------------------------------------------------

    def _tool_read_file(self, path: str) -> ToolResult:
        text = self.workspace.read(path)
        numbered = "\n".join(f"{i:4d}  {line}" for i, line in enumerate(text.splitlines(), 1))
        return ToolResult(f"{path} ({len(text.splitlines())} lines):\n{numbered}")

    def _tool_write_file(self, path: str, content: str) -> ToolResult:
        self.workspace.write(path, content)
        return ToolResult(f"wrote {path} ({len(content.splitlines())} lines)")

    def _tool_apply_patch(self, patch: str) -> ToolResult:
        try:
            changed = self.workspace.apply_patch(patch)
        except PatchError as exc:
            return ToolResult(f"ERROR: the patch was not applied, no file changed: {exc}", is_error=True)
        return ToolResult(f"applied; changed: {', '.join(changed)}")

    def current_solution(self, description: str = "") -> Solution:
        return self.workspace.solution(self.solution_name, self.author, description)

    def current_hash(self) -> str:
        return source_hash(self.current_solution())

    # -- the harness ------------------------------------------------------------------

    def _tool_evaluate(self) -> ToolResult:
        solution = self.current_solution()
        start = time.perf_counter()
        try:
            traces = self.evaluate_fn(solution)
        except Exception as exc:  # the harness failing (no worker, bad input data): the loop goes on
            return ToolResult(f"ERROR: the harness failed: {type(exc).__name__}: {exc}", is_error=True)
        finally:
            wall_s = time.perf_counter() - start
            if self.on_usage is not None:
                gpu_s = wall_s if self.device.startswith("cuda") else 0.0
                self.on_usage(ResourceUsage(gpu_seconds=gpu_s, wall_seconds=wall_s))
        passed = bool(traces) and all(t.evaluation is not None and t.evaluation.status is EvaluationStatus.PASSED
                                      for t in traces)  # fmt: skip
        text = format_traces(traces, self.sol)
        self.evaluations.append(EvalRecord(self.current_hash(), passed, text.splitlines()[0]))
        return ToolResult(text)

    def last_evaluation_of_current(self) -> EvalRecord | None:
        h = self.current_hash()
        return next((e for e in reversed(self.evaluations) if e.source_hash == h), None)

    def _tool_profile(self, workload: str | None = None) -> ToolResult:
        from solforge.agent.profiling import profile_solution

        if not self.search:
            return ToolResult("ERROR: profile: no search workloads", is_error=True)
        if workload is None:
            wl = max(self.search, key=lambda w: sum(self.definition.resolve_axes(w.axes).values()))
        else:
            wl = next((w for w in self.search if workload in (w.uuid, w.label)), None)
            if wl is None:
                names = ", ".join(f"{w.label} [{w.uuid}]" for w in self.search)
                return ToolResult(f"ERROR: profile: no search workload '{workload}' (have: {names})", is_error=True)
        solution = self.current_solution()
        problems = check_solution(self.definition, solution)
        if problems:
            return ToolResult(f"ERROR: profile: {problems[0]}", is_error=True)
        report = profile_solution(solution, self.definition, wl, self.device, self.profile_timeout_s,
                                  self.dataset_root)  # fmt: skip
        return ToolResult(f"profile of {wl.label} [{wl.uuid}] on {self.device}:\n{report.render()}")

    # -- the run's memory -------------------------------------------------------------

    def _tool_lineage(self) -> ToolResult:
        if self.lineage is None:
            return ToolResult("no run: this step has no lineage")
        return ToolResult(lineage_text(self.lineage, self.notes, diff_chars=1500))

    def _tool_knowledge(self, query: str | None = None, path: str | None = None, kind: str | None = None) -> ToolResult:
        if path:
            return read_knowledge(path)
        if not query:
            return ToolResult("ERROR: knowledge: give a query (plain words) or a path", is_error=True)
        search = self.knowledge_fn
        if search is None:
            try:
                from solforge.knowledge import search_knowledge as search
            except ImportError as exc:
                return ToolResult(f"the knowledge base is not available here ({exc})", is_error=True)
        language = self.workspace.base.spec.language.value
        hits = search(query, kind=kind, language=language, limit=6)
        if not hits:
            hits = search(query, kind=kind, limit=6)
        if not hits:
            return ToolResult(f"nothing in the knowledge base matches '{query}'")
        return ToolResult("\n".join(f"- {h.title} [{h.kind.value}] path={h.path}\n  {h.snippet}" for h in hits) +
                          "\n(read one in full with knowledge(path=...))")  # fmt: skip

    # -- the end ----------------------------------------------------------------------

    def _tool_submit(self, rationale: str, force: bool = False) -> ToolResult:
        last = self.last_evaluation_of_current()
        h = self.current_hash()
        if last is not None and not last.passed and not force and self._refused_submit != h:
            self._refused_submit = h
            return ToolResult(f"ERROR: not submitted: the last evaluation of these exact sources failed "
                              f"({last.summary}). Fix them, or call submit with force=true.",
                              is_error=True)  # fmt: skip
        self.rationale = rationale.strip() or "(no rationale given)"
        return ToolResult("submitted; the step is over", ends_step=True)


def lineage_text(lineage: Sequence[LineageStep], notes: Sequence[NoteRecord], diff_chars: int = 1500,
                 last_notes: int = 12) -> str:  # fmt: skip
    """The committed versions (fitness, reason, diff to the parent, trimmed) and the latest
    failure and supervisor notes, for the lineage tool and LINEAGE.md. Search fitness
    only: both come from a SearchContext, which holds nothing held-out."""
    parts = []
    if not lineage:
        parts.append("No committed version yet.")
    for e in lineage:
        parts.append(f"## v{e.version}: candidate #{e.candidate_id} ({e.operator}, family {e.family}), "
                     f"fitness {e.fitness:.4f}\n{e.reason}\n"
                     + (f"```diff\n{trim(e.diff, diff_chars)}\n```" if e.diff else "(no diff: a seed)"))  # fmt: skip
    failed = [n for n in notes if n.kind in (NoteKind.failure, NoteKind.supervisor)]
    failed.sort(key=lambda n: n.created_at)
    if failed:
        parts.append("## Failed directions and supervisor notes (latest last)")
        parts.extend(f"- {'#' + str(n.candidate_id) + ' ' if n.candidate_id else ''}{n.operator or ''}: "
                     f"{trim(n.text, 400)}" for n in failed[-last_notes:])  # fmt: skip
    return "\n\n".join(parts)


def read_knowledge(path: str) -> ToolResult:
    """One knowledge document in full: a playbook section (`playbook/x.md#slug`, or the
    whole file without `#`) or a seed kernel's source (`seeds/<language>/x.py`)."""
    try:
        from solforge.knowledge import playbook_sections
        from solforge.knowledge.index import KNOWLEDGE_ROOT
    except ImportError as exc:
        return ToolResult(f"the knowledge base is not available here ({exc})", is_error=True)
    file, _, anchor = path.partition("#")
    target = (KNOWLEDGE_ROOT / file).resolve()
    if KNOWLEDGE_ROOT.resolve() not in target.parents or not target.is_file():
        return ToolResult(f"ERROR: knowledge: no document '{path}'", is_error=True)
    if file.endswith(".md") and anchor:
        section = next((s for s in playbook_sections(target) if s.path == path), None)
        if section is None:
            return ToolResult(f"ERROR: knowledge: no section '#{anchor}' in {file}", is_error=True)
        return ToolResult(f"# {section.title}\n{section.text}")
    return ToolResult(target.read_text())
