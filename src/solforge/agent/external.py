"""External coding agents as a variation operator: any coding-agent CLI (Claude Code,
Codex CLI, aider, OpenHands, ...) run in a prepared workspace.

The workspace of one step, a git repository with one commit:

    solution/            the parent's sources; every file here is a source of the candidate
    solution.json        the solution's spec (language, entry point, destination-passing style)
    definition.json      the problem definition
    workloads.jsonl      the SEARCH workloads only (held-out ones are never written)
    TASK.md              the prompt: the contract, device, SOL bound, rules, current best, how to test
    LINEAGE.md           committed versions with fitness and diffs, failed directions
    RATIONALE.md         (the agent writes it) what it changed and why
    knowledge/           the playbook and the seed kernels
    .solforge/           eval configuration and results (git-ignored)

`solforge eval .` in the workspace (also `python -m solforge.cli.eval .`) runs the
harness on the search workloads, prints a table and writes `.solforge/results.json`.

The command template gets `{workspace}`, `{prompt_file}` and `{prompt}` substituted,
each shell-quoted, and runs through the shell in the workspace, in its own process
group, under `timeout_s` (then SIGTERM to the group, SIGKILL 5 s later). The agent's
environment is the caller's (it needs its own API keys), with the Python environment's
bin directory first on PATH so that `solforge` resolves. Afterwards only `solution/` is
read back, with the parent's spec: edits to the definition or workloads change nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from solforge.agent.loop import Start, starting_point
from solforge.agent.prompts import (
    SolSummary,
    format_traces,
    redirect_message,
    sol_summary,
    system_prompt,
    trim,
    untried_techniques,
)
from solforge.agent.tools import lineage_text
from solforge.agent.workspace import safe_name
from solforge.search.archive_schema import NoteKind, ResourceUsage, source_hash
from solforge.search.context import Candidate, NoCandidate, OperatorNote, SearchContext
from solforge.spec import (
    Definition,
    EvaluationStatus,
    Language,
    Solution,
    SourceFile,
    SpecError,
    Trace,
    Workload,
    dump_json,
    load_definition,
    load_workloads,
    parse_model,
    read_json,
    workload_trace,
    write_jsonl,
)

SOLUTION_DIR = "solution"
STATE_DIR = ".solforge"
RESULTS_FILE = f"{STATE_DIR}/results.json"
PROMPT_FILE = "TASK.md"
RATIONALE_FILE = "RATIONALE.md"
_PROMPT_ARG_CHARS = 100_000  # one argv string may hold 128 KiB on Linux (MAX_ARG_STRLEN)

_WORKSPACE_GUIDE = """\
# This workspace

- `solution/` holds the candidate's sources: edit them there. Every file under `solution/`
  is part of the candidate; nothing else is read back.
- Test with `solforge eval .` (or `python -m solforge.cli.eval .`) from this directory: it
  builds the sources, checks correctness against the reference on fresh inputs and times
  the search workloads; results go to `.solforge/results.json`.
- `LINEAGE.md`: what earlier versions did and which directions failed.
- `knowledge/`: the optimization playbook (`knowledge/playbook/*.md`) and seed kernels.
- When you are done, write `RATIONALE.md`: what you changed and why it moves the kernel
  toward SOL. Committing your work with git is welcome; it is not required.
"""


def render_command(template: str, workspace: Path, prompt_file: Path, prompt: str) -> str:
    """`template` with `{workspace}`, `{prompt_file}` and `{prompt}` replaced by their
    shell-quoted values; any other brace is left alone (templates may hold JSON)."""
    values = {"workspace": str(workspace), "prompt_file": str(prompt_file), "prompt": prompt[:_PROMPT_ARG_CHARS]}
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", shlex.quote(value))
    return out


def write_workspace(root: Path, definition: Definition, workloads: Sequence[Workload], solution: Solution, device: str,
                    prompt: str, lineage: str, dataset_root: Path | None = None) -> None:  # fmt: skip
    """Lay out the workspace of the module docstring under `root`; `workloads` are the search workloads."""
    for src in solution.sources:
        target = root / SOLUTION_DIR / src.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(src.content)
    (root / "solution.json").write_text(dump_json(solution.model_copy(update={"sources": []})) + "\n")
    (root / "definition.json").write_text(dump_json(definition) + "\n")
    write_jsonl(root / "workloads.jsonl", [workload_trace(definition.name, w) for w in workloads])
    (root / PROMPT_FILE).write_text(prompt)
    (root / "LINEAGE.md").write_text(f"# Lineage of this run\n\n{lineage}\n")
    (root / ".gitignore").write_text(f"{STATE_DIR}/\n__pycache__/\n*.pyc\n")
    state = root / STATE_DIR
    state.mkdir(exist_ok=True)
    (state / "config.json").write_text(json.dumps({"device": device, "dataset_root": str(dataset_root or "")}))
    try:
        from solforge.knowledge.index import KNOWLEDGE_ROOT
    except ImportError:
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("playbook", "seeds"):
        if (KNOWLEDGE_ROOT / part).is_dir():
            shutil.copytree(KNOWLEDGE_ROOT / part, root / "knowledge" / part, ignore=ignore)


def read_sources(root: Path) -> list[SourceFile]:
    """Every file under the workspace's `solution/` (hidden files and bytecode aside), by
    path. Raises SpecError when the directory is gone."""
    src_dir = root / SOLUTION_DIR
    if not src_dir.is_dir():
        raise SpecError(f"{src_dir}: no such directory (the candidate's sources live there)")
    def is_source(p: Path) -> bool:
        parts = p.relative_to(src_dir).parts
        return p.is_file() and p.suffix != ".pyc" and not any(x.startswith(".") or x == "__pycache__" for x in parts)

    files = sorted(p for p in src_dir.rglob("*") if is_source(p))
    return [SourceFile(path=p.relative_to(src_dir).as_posix(), content=p.read_text(errors="replace")) for p in files]


def read_solution(root: Path) -> Solution:
    """The workspace's candidate: `solution.json`'s spec with the sources under `solution/`.
    Raises SpecError naming the file when it is missing or malformed."""
    base = parse_model(Solution, read_json(root / "solution.json"), str(root / "solution.json"))
    return base.model_copy(update={"sources": read_sources(root)})


@dataclass(frozen=True)
class WorkspaceEvaluation:
    """What `eval_workspace` found: the traces, their formatted table, and whether all passed."""

    definition: str
    device: str
    language: str
    traces: list[Trace]
    text: str  # a summary line, then one line per workload and the failures' logs
    passed: bool  # every search workload PASSED
    results_path: Path  # `.solforge/results.json`


def eval_workspace(path: str | Path = ".", device: str | None = None) -> WorkspaceEvaluation:
    """`solforge eval`: evaluate the workspace's candidate on its search workloads.

    Reads definition.json, solution.json + solution/, workloads.jsonl (a held-out
    workload, should one have been put there, is dropped: the agent's evaluation never
    runs one) and `.solforge/config.json` (device; `device` overrides it), runs
    `solforge.bench.evaluate`, and writes `.solforge/results.json` and
    `.solforge/traces.jsonl`. Returns the evaluation; printing is the caller's. Raises
    SpecError for a missing or malformed workspace file.
    """
    from solforge.bench import BenchConfig, evaluate

    root = Path(path)
    definition = load_definition(root / "definition.json")
    workloads = [w for w in load_workloads(root / "workloads.jsonl", definition) if not w.held_out]
    if not workloads:
        raise SpecError(f"{root / 'workloads.jsonl'}: no search workload to evaluate")
    config_path = root / STATE_DIR / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    device = device or config.get("device") or "cpu"
    dataset_root = Path(config["dataset_root"]) if config.get("dataset_root") else None
    solution = read_solution(root)
    traces = evaluate(definition, workloads, solution, device, BenchConfig(device=device, dataset_root=dataset_root))
    text = format_traces(traces, sol_summary(definition, workloads, device))
    passed = all(t.evaluation is not None and t.evaluation.status is EvaluationStatus.PASSED for t in traces)
    state = root / STATE_DIR
    state.mkdir(exist_ok=True)
    write_jsonl(state / "traces.jsonl", traces)
    results = {
        "passed": passed,
        "source_hash": source_hash(solution),
        "summary": text.splitlines()[0],
        "workloads": [
            {"uuid": t.workload.uuid, "label": t.workload.label, "status": t.evaluation.status.value,
             "latency_ms": t.evaluation.performance.latency_ms if t.evaluation.performance else None,
             "log": trim(t.evaluation.log, 2000)}
            for t in traces if t.evaluation is not None
        ],
    }  # fmt: skip
    (root / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return WorkspaceEvaluation(definition.name, device, solution.spec.language.value, traces, text, passed,
                               root / RESULTS_FILE)  # fmt: skip


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=solforge", "-c", "user.email=solforge@localhost",
                           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
                          cwd=root, capture_output=True, text=True, timeout=60)  # fmt: skip


def _run_agent(command: str, root: Path, timeout_s: float) -> tuple[int | None, str]:
    """Run the agent command; (exit code or None after a timeout, the output's tail)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["SOLFORGE_WORKSPACE"] = str(root)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, shell=True, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        # The whole group goes, on a timeout and after a normal exit alike: an agent's
        # background children must not outlive the step.
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            if grace:
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and _group_alive(proc):
                    time.sleep(0.05)
        proc.wait()
        log.seek(0)
        return code, log.read().decode(errors="replace")[-20_000:]


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader: a zombie still counts as a member of its group
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


class ExternalAgentOperator:
    """Any coding-agent CLI as a variation operator (`name = "agent-cli"`).

    `cmd_template`: a shell command with `{workspace}`, `{prompt_file}`, `{prompt}`
    (e.g. `claude -p {prompt} --permission-mode acceptEdits`). `timeout_s`: wall-clock
    limit of one run. The step starts from the context's best parent (else a seed kernel
    of `language`); the result is proposed when `solution/` changed and the agent exited
    (after a timeout only when its last `solforge eval` of exactly these sources passed).
    The workspace gets the context's search workloads, lineage and notes. Every step
    returns a note and its wall time with its Candidate or NoCandidate.
    """

    name = "agent-cli"

    def __init__(self, cmd_template: str, timeout_s: float, device: str, language: Language | str, *,
                 dataset_root: Path | None = None, keep_workspaces: bool = False,
                 workspace_dir: str | Path | None = None) -> None:  # fmt: skip
        if not cmd_template.strip():
            raise SpecError("--agent-cmd: expected a command template, e.g. \"claude -p {prompt}\"")
        self.cmd_template, self.timeout_s, self.device = cmd_template, timeout_s, device
        self.language = Language(language)
        self.dataset_root, self.keep_workspaces = dataset_root, keep_workspaces
        self.workspace_dir = workspace_dir
        self._sol: dict[str, SolSummary] = {}

    def propose(self, context: SearchContext) -> Candidate | NoCandidate:
        """One run of the CLI from the context's best parent: a Candidate, or a NoCandidate
        whose note says why."""
        definition = context.definition
        if definition.name not in self._sol:
            self._sol[definition.name] = sol_summary(definition, context.workloads, self.device)
        sol = self._sol[definition.name]
        start = starting_point(context, self.language, sol)
        if start is None:
            why = f"agent-cli: no parent and no {self.language.value} seed kernel"
            return NoCandidate(self.name, why, notes=(OperatorNote(NoteKind.failure, why),))
        spec = start.solution.spec
        prompt = system_prompt(definition, spec.language, spec.entry_point, spec.destination_passing_style,
                               context.workloads, sol, start.best, _WORKSPACE_GUIDE)  # fmt: skip
        prompt += f"\n\n# Task\nThe workspace holds {start.described}. Make it faster while keeping it correct."
        if context.direction:
            untried = untried_techniques(definition, spec.language, context.rationales())
            prompt += "\n\n" + redirect_message(context.direction, untried)
        root = Path(tempfile.mkdtemp(prefix="solforge-agent-cli-", dir=self.workspace_dir))
        began = time.monotonic()
        try:
            write_workspace(root, definition, context.workloads, start.solution, self.device, prompt,
                            lineage_text(context.lineage, context.notes), self.dataset_root)  # fmt: skip
            base = _init_repo(root, f"parent: {start.described}")
            command = render_command(self.cmd_template, root, root / PROMPT_FILE, prompt)
            code, output = _run_agent(command, root, self.timeout_s)
            proposed, why = self._result(root, start, code, base)
        finally:
            wall_s = time.monotonic() - began
            if not self.keep_workspaces:
                shutil.rmtree(root, ignore_errors=True)
        usage = ResourceUsage(wall_seconds=wall_s)
        ran = "timed out" if code is None else f"exited with {code}"
        text = f"agent-cli `{trim(self.cmd_template, 200)}` {ran} after {wall_s:.0f} s; {why}\noutput tail:\n" \
               f"{trim(output, 1500)}"
        if proposed is None:
            note = OperatorNote(NoteKind.failure, text)
            return NoCandidate(self.name, why, notes=(note,), usage=usage)
        solution, rationale = proposed
        return Candidate(solution, self.name, start.family, {}, start.parent_ids, rationale,
                         notes=(OperatorNote(NoteKind.rationale, text),), usage=usage)  # fmt: skip

    def _result(self, root: Path, start: Start, code: int | None,
                base: str | None) -> tuple[tuple[Solution, str] | None, str]:  # fmt: skip
        try:
            sources = read_sources(root)
        except SpecError as exc:
            return None, f"no candidate: {exc}"
        # the parent's spec and name, whatever the agent did to solution.json
        candidate = start.solution.model_copy(update={"sources": sources})
        if sorted((s.path, s.content) for s in sources) == sorted((s.path, s.content) for s in start.solution.sources):
            return None, "no change to the parent's sources"
        digest = source_hash(candidate)
        if code is None and not _last_eval_passed(root, digest):
            return None, "timed out, and its last edit was not shown to pass `solforge eval`"
        rationale = _rationale(root, base)
        solution = candidate.model_copy(update={
            "name": f"{safe_name(start.solution.name)[:48]}-cli-{digest[:8]}", "author": "solforge-agent-cli",
            "description": trim(rationale, 500) or None,
        })  # fmt: skip
        return (solution, rationale), f"proposed {solution.name}: {trim(rationale, 1500)}"


def _last_eval_passed(root: Path, digest: str) -> bool:
    """Whether `.solforge/results.json` says these exact sources passed every search workload."""
    try:
        last = json.loads((root / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(last, dict) and last.get("passed") is True and last.get("source_hash") == digest


def _init_repo(root: Path, message: str) -> str | None:
    """git init + one commit of everything; the commit's hash, or None without git."""
    if shutil.which("git") is None:
        return None
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", message)):
        if _git(root, *args).returncode != 0:
            return None
    head = _git(root, "rev-parse", "HEAD")
    return head.stdout.strip() if head.returncode == 0 else None


def _rationale(root: Path, base: str | None) -> str:
    """RATIONALE.md if the agent wrote one, else the messages of its commits after `base`,
    else a plain note."""
    path = root / RATIONALE_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    if base is not None:
        log = _git(root, "log", "--reverse", "--format=%B", f"{base}..HEAD")
        text = log.stdout.strip() if log.returncode == 0 else ""
        if text:
            return text
    return "(the agent gave no rationale: no RATIONALE.md, no commit message)"
