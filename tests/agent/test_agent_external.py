"""The agent-cli operator with a scripted CLI (tests/agent/scripted_cli.py) that edits the
prepared workspace and tests its edit with `python -m solforge.cli.eval .` (the real
harness); a CLI that hangs is killed with its children; `eval_workspace` on its own. The
operator returns its note and wall time with its Candidate or NoCandidate."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from agent_support import HELD_OUT_UUID, PARENT_ID, rmsnorm_problem, search_context

from solforge.agent.external import ExternalAgentOperator, eval_workspace, read_solution, render_command
from solforge.search import Candidate, NoCandidate, NoteKind
from solforge.spec import SpecError

SCRIPT = Path(__file__).with_name("scripted_cli.py")


@pytest.fixture(scope="module")
def problem():
    return rmsnorm_problem([7], held_out=True)


@pytest.fixture
def context(problem):
    definition, workloads = problem
    return search_context(definition, workloads)


def _template(mode: str, *extra: str) -> str:
    return " ".join([shlex.quote(sys.executable), shlex.quote(str(SCRIPT)), mode, "{workspace}", "{prompt_file}",
                     *map(shlex.quote, extra)])  # fmt: skip


def test_scripted_cli_edits_the_workspace_and_the_edit_is_proposed(tmp_path, problem, context):
    _, workloads = problem
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    op = ExternalAgentOperator(_template("edit"), 240, "cpu", "pytorch", keep_workspaces=True, workspace_dir=spaces)
    candidate = op.propose(context)
    assert isinstance(candidate, Candidate) and candidate.operator == "agent-cli"
    assert candidate.parent_ids == (PARENT_ID,)
    assert "torch.rsqrt(mean_square + 1e-5)" in candidate.solution.sources[0].content
    assert candidate.solution.spec.entry_point == "kernel.py::run" and candidate.family == "torch_rows"
    assert candidate.rationale == "rsqrt replaces 1/sqrt: one division fewer per row"
    (note,) = candidate.notes
    assert note.kind is NoteKind.rationale
    assert "exited with 0" in note.text and "passed 1/1 search workloads" in note.text  # the CLI's own eval run
    assert candidate.usage.wall_seconds > 0

    (ws,) = spaces.iterdir()
    results = json.loads((ws / ".solforge" / "results.json").read_text())
    assert results["passed"] is True and [w["status"] for w in results["workloads"]] == ["PASSED"]
    # the workspace: a git repo whose first commit is the parent; the agent's commit on top
    log = subprocess.run(["git", "log", "--format=%s"], cwd=ws, capture_output=True, text=True).stdout.split("\n")
    assert log[:2] == ["use rsqrt", f"parent: candidate #{PARENT_ID} (family torch_rows)"]
    assert (ws / "knowledge" / "playbook" / "fusion.md").is_file()
    assert "No committed version yet" in (ws / "LINEAGE.md").read_text()
    everything = "".join(p.read_text(errors="replace") for p in ws.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert HELD_OUT_UUID not in everything and "secret holdout" not in everything
    assert workloads[0].uuid in (ws / "workloads.jsonl").read_text()


def test_a_hanging_cli_is_killed_with_its_children(tmp_path, context):
    pidfile = tmp_path / "pids"
    op = ExternalAgentOperator(_template("hang", str(pidfile)), 3, "cpu", "pytorch")
    result = op.propose(context)
    assert isinstance(result, NoCandidate)  # edited, but never shown to pass: not proposed after a timeout
    (note,) = result.notes
    assert note.kind is NoteKind.failure and "timed out" in note.text and "not shown to pass" in note.text
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the CLI's background child went with its process group


def test_no_change_is_not_proposed(context):
    op = ExternalAgentOperator(_template("noop"), 60, "cpu", "pytorch")
    result = op.propose(context)
    assert isinstance(result, NoCandidate) and result.reason == "no change to the parent's sources"
    (note,) = result.notes
    assert "no change to the parent's sources" in note.text


def test_render_command_quotes_substitutions_and_leaves_other_braces():
    cmd = render_command("agent --cfg '{\"a\": 1}' -C {workspace} -p {prompt} < {prompt_file}",
                         Path("/tmp/w s"), Path("/tmp/w s/TASK.md"), "it's $HOME; rm -rf /")  # fmt: skip
    assert cmd == ("agent --cfg '{\"a\": 1}' -C '/tmp/w s' -p 'it'\"'\"'s $HOME; rm -rf /' < '/tmp/w s/TASK.md'")
    out = subprocess.run(["sh", "-c", render_command("printf %s {prompt}", Path("."), Path("."), "a'b $X")],
                         capture_output=True, text=True)  # fmt: skip
    assert out.stdout == "a'b $X"


def test_eval_workspace_errors_name_the_file(tmp_path):
    with pytest.raises(SpecError, match="definition.json: no such file"):
        eval_workspace(tmp_path)
    (tmp_path / "solution.json").write_text("{}")
    with pytest.raises(SpecError, match="solution.json"):
        read_solution(tmp_path)
    code = subprocess.run([sys.executable, "-m", "solforge.cli.eval", str(tmp_path)], capture_output=True, text=True)
    assert code.returncode == 2 and code.stderr.startswith("solforge eval: ") and code.stderr.count("\n") == 1


def test_eval_subcommand_registers_on_a_typer_app(tmp_path):
    import typer
    from typer.testing import CliRunner

    from solforge.cli.eval import register

    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: `eval` is then addressed by name
    result = CliRunner().invoke(app, ["eval", str(tmp_path), "--device", "cpu"])
    assert isinstance(result.exception, SpecError) and "definition.json: no such file" in str(result.exception)
