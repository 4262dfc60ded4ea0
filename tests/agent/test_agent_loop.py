"""The agent loop end to end: AgentOperator.propose driven by the REAL openai / anthropic
SDK clients against loopback servers replaying scripted tool-calling conversations,
with the real harness evaluating the candidates on the CPU (rmsnorm smoke workload).

Scripts: a compile error repaired after a patch that does not apply; a reward hack
rejected by the harness, then an honest kernel; malformed tool calls; the run's cost
budget reached; a step ended at its turn limit that still proposes its passing edit;
and held-out workloads that never reach the model.
"""

from __future__ import annotations

import json

import pytest
from agent_support import (
    HELD_OUT_LABEL,
    HELD_OUT_UUID,
    SLOW,
    add_slow_parent,
    rmsnorm_problem,
    search_context,
    servers,
)

from solforge.agent import AgentLimits, AgentOperator, AnthropicClient, BudgetExhausted, OpenAIChatClient
from solforge.agent.llm import ModelMix
from solforge.agent.loop import make_evaluate_fn
from solforge.agent.pricing import Price
from solforge.search.archive import Archive
from solforge.search.archive_schema import NoteKind, RunBudget
from solforge.spec import (
    Environment,
    Evaluation,
    EvaluationStatus,
    Performance,
    Trace,
)

BROKEN = SLOW.replace("inv_rms = 1.0 / torch.sqrt(mean_square + 1e-5)", "inv_rms = torch.rsqrt(mean_square + 1e-5")
FIXED = SLOW.replace("inv_rms = 1.0 / torch.sqrt(mean_square + 1e-5)", "inv_rms = torch.rsqrt(mean_square + 1e-5)")
HACK = """import torch


def run(hidden_states, weight):
    return torch.nn.functional.rms_norm(hidden_states, (hidden_states.shape[-1],), weight, 1e-5)
"""


def _patch(search: str, replace: str) -> str:
    return f"kernel.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


@pytest.fixture(scope="module")
def problem():
    return rmsnorm_problem([7], held_out=True)


@pytest.fixture
def archive(tmp_path, problem):
    definition, _ = problem
    a = Archive.create(definition.name, device="cpu", strategy="lineage", operators=["agent"], seed=0,
                       budget=RunBudget(max_cost_usd=None), runs_root=tmp_path, run_id="run")  # fmt: skip
    yield a
    a.close()


def _operator(client, archive, problem, evaluate_fn=None, **kw) -> AgentOperator:
    definition, workloads = problem
    evaluate_fn = evaluate_fn or make_evaluate_fn(definition, workloads, "cpu")
    return AgentOperator(client, evaluate_fn, archive, "cpu", "pytorch", kw.pop("limits", AgentLimits(max_turns=10)),
                         workloads=workloads, **kw)  # fmt: skip


def _tool_results(request) -> list[str]:
    """The tool results a request carried, in order (either protocol)."""
    out = []
    for m in request.body["messages"]:
        if m["role"] == "tool":
            out.append(m["content"])
        elif isinstance(m.get("content"), list):
            out += [b["content"] for b in m["content"] if b.get("type") == "tool_result"]
    return out


def test_openai_compile_error_then_unapplicable_patch_then_repair(archive, problem):
    definition, _ = problem
    parent = add_slow_parent(archive, definition)
    script = [
        servers.openai_reply([("read_file", {"path": "kernel.py"})], text="Let me look."),
        servers.openai_reply([("write_file", {"path": "kernel.py", "content": BROKEN}), ("evaluate", {})]),
        servers.openai_reply([("apply_patch", {"patch": _patch("    inv_rms = torch.rsqrt(mean_sq + 1e-5",
                                                                  "    inv_rms = torch.rsqrt(mean_sq + 1e-5)")})]),
        servers.openai_reply([("apply_patch", {"patch": _patch("    inv_rms = torch.rsqrt(mean_square + 1e-5",
                                                                  "    inv_rms = torch.rsqrt(mean_square + 1e-5)")})]),
        servers.openai_reply([("evaluate", {})]),
        servers.openai_reply([("submit", {"rationale": "rsqrt instead of 1/sqrt: one op fewer per row"})]),
    ]  # fmt: skip
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("scripted-model", base_url=srv.base_url, api_key="k", max_retries=0)
        proposal = _operator(client, archive, problem).propose(search_context(definition, parent))
    reqs = srv.requests
    assert len(reqs) == 6
    assert "def run(hidden_states, weight)" in _tool_results(reqs[1])[0]  # read_file showed the parent
    wrote, evaluated = _tool_results(reqs[2])[-2:]
    assert wrote.startswith("wrote kernel.py") and "COMPILE_ERROR" in evaluated and "never closed" in evaluated
    assert "the patch was not applied" in _tool_results(reqs[3])[-1] and "does not match" in _tool_results(reqs[3])[-1]
    assert _tool_results(reqs[4])[-1] == "applied; changed: kernel.py"
    repaired = _tool_results(reqs[5])[-1]
    assert "passed 1/1 search workloads" in repaired and "PASSED, latency_ms=" in repaired
    assert proposal is not None and proposal.operator == "agent" and proposal.family == "torch_rows"
    assert proposal.parent_ids == [parent] and proposal.params == {}
    assert proposal.solution.sources[0].content == FIXED
    assert proposal.rationale == "rsqrt instead of 1/sqrt: one op fewer per row"
    assert proposal.solution.author == "solforge-agent (openai:scripted-model)"
    notes = archive.notes(kind=NoteKind.rationale)
    assert len(notes) == 1 and "submitted after 6 turn(s)" in notes[0].text and "rsqrt" in notes[0].text
    totals = archive.totals().by_operator["agent"]
    assert totals.llm_input_tokens == 600 and totals.llm_output_tokens == 120  # 6 calls of (100, 20)
    assert totals.wall_seconds > 0  # the exploratory evaluations were charged too


def test_anthropic_reward_hack_is_rejected_then_an_honest_kernel_passes(archive, problem):
    definition, _ = problem
    parent = add_slow_parent(archive, definition)
    script = [
        servers.anthropic_reply([("write_file", {"path": "kernel.py", "content": HACK}), ("evaluate", {})],
                                text="Use the library norm."),
        servers.anthropic_reply([("submit", {"rationale": "library call"})]),
        servers.anthropic_reply([("write_file", {"path": "kernel.py", "content": FIXED}), ("evaluate", {})]),
        servers.anthropic_reply([("submit", {"rationale": "honest rsqrt kernel"})]),
    ]  # fmt: skip
    with servers.AnthropicServer(script) as srv:
        client = AnthropicClient("scripted-claude", base_url=srv.base_url, api_key="k", max_retries=0)
        proposal = _operator(client, archive, problem).propose(search_context(definition, parent))
    hack_result = _tool_results(srv.requests[1])[-1]
    assert "REWARD_HACK" in hack_result and "forbidden call torch.nn.functional.rms_norm" in hack_result
    refused = _tool_results(srv.requests[2])[-1]
    assert refused.startswith("ERROR: not submitted") and "force=true" in refused  # submit refused once
    assert "PASSED" in _tool_results(srv.requests[3])[-1]
    assert proposal is not None and proposal.solution.sources[0].content == FIXED
    assert proposal.rationale == "honest rsqrt kernel"


def test_malformed_tool_calls_go_back_to_the_model_and_the_loop_continues(archive, problem):
    definition, _ = problem
    parent = add_slow_parent(archive, definition)
    script = [
        servers.openai_reply([("read_file", '{"path": "kernel.py"')]),  # bad JSON
        servers.openai_reply([("rm_rf", {"path": "/"})]),  # unknown tool
        servers.openai_reply([("read_file", {"path": 3}), ("write_file", {"path": "kernel.py"})]),  # mistyped, missing
        servers.openai_reply([("write_file", {"path": "kernel.py", "content": FIXED})]),
        servers.openai_reply(text="I think it is done."),  # no tool call: nudged
        servers.openai_reply([("submit", {"rationale": "rsqrt"})]),
    ]  # fmt: skip
    calls = []
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("m", base_url=srv.base_url, api_key="k", max_retries=0)
        proposal = _operator(client, archive, problem, evaluate_fn=lambda s: calls.append(s) or []).propose(
            search_context(definition, parent))
    r = [_tool_results(req) for req in srv.requests]
    assert "read_file: arguments are not valid JSON" in r[1][-1] and '{"path": "kernel.py"' in r[1][-1]
    assert "unknown tool 'rm_rf'" in r[2][-1] and "submit" in r[2][-1]
    assert "argument 'path': expected a string, got int" in r[3][-2]
    assert "missing argument(s): content" in r[3][-1]
    assert "Continue with the tools" in srv.requests[5].text  # the nudge after a reply without tool calls
    assert proposal is not None and proposal.solution.sources[0].content == FIXED and calls == []


def test_run_budget_stops_the_step_and_the_run(archive, problem):
    definition, _ = problem
    parent = add_slow_parent(archive, definition)
    script = [servers.openai_reply([("read_file", {"path": "kernel.py"})], usage=(1000, 100))] * 5
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("priced-model", base_url=srv.base_url, api_key="k", max_retries=0)
        # $100 / M input, $1000 / M output: 0.1 + 0.1 = $0.20 per call; budget $0.30
        mix = ModelMix.of(client, {"priced-model": Price(100.0, 1000.0, "test")})
        op = _operator(mix, archive, problem, budget_usd=0.30)
        with pytest.raises(BudgetExhausted, match=r"\$0.4000 spent of \$0.3000"):
            op.propose(search_context(definition, parent))
        assert len(srv.requests) == 2  # the second call crossed the budget; its tool calls never ran
        with pytest.raises(BudgetExhausted):
            op.propose(search_context(definition, parent))
        assert len(srv.requests) == 2  # no call once the budget is spent
    run = archive.totals().run
    assert run.cost_usd == pytest.approx(0.4) and run.llm_input_tokens == 2000 and run.llm_output_tokens == 200
    (note,) = archive.notes(kind=NoteKind.failure)
    assert "budget after 2 turn(s)" in note.text and "$0.4000" in note.text


def test_budget_comes_from_the_archive_run_budget(tmp_path, problem):
    definition, _ = problem
    with Archive.create(definition.name, device="cpu", strategy="lineage", operators=["agent"], seed=0,
                        budget=RunBudget(max_cost_usd=0.0), runs_root=tmp_path, run_id="b") as a:  # fmt: skip
        client = OpenAIChatClient("m", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
        with pytest.raises(BudgetExhausted):
            _operator(client, a, problem).propose(search_context(definition, add_slow_parent(a, definition)))


def test_turn_limit_still_proposes_a_passing_edit(archive, problem):
    definition, workloads = problem
    parent = add_slow_parent(archive, definition)

    def passing(solution):  # stands in for the harness: every search workload PASSED
        return [_trace(definition, w, solution.name, EvaluationStatus.PASSED) for w in workloads if not w.held_out]

    script = [servers.openai_reply([("write_file", {"path": "kernel.py", "content": FIXED}), ("evaluate", {})],
                                   text="rsqrt saves a division"),
              servers.openai_reply([("read_file", {"path": "kernel.py"})])]  # fmt: skip
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("m", base_url=srv.base_url, api_key="k", max_retries=0)
        proposal = _operator(client, archive, problem, evaluate_fn=passing,
                             limits=AgentLimits(max_turns=2)).propose(search_context(definition, parent))  # fmt: skip
    assert proposal is not None and proposal.solution.sources[0].content == FIXED
    assert proposal.rationale.startswith("[the step ended at max_turns") and "rsqrt saves" in proposal.rationale


def _trace(definition, workload, solution: str, status: EvaluationStatus) -> Trace:
    return Trace(definition=definition.name, workload=workload, solution=solution, evaluation=Evaluation(
        status=status, environment=Environment(hardware="cpu"), timestamp="2026-01-01T00:00:00Z",
        log="" if status is EvaluationStatus.PASSED else f"failed on {workload.uuid} ({workload.label})",
        performance=Performance(latency_ms=0.5) if status is EvaluationStatus.PASSED else None))  # fmt: skip


def test_held_out_workloads_never_reach_the_model(archive, problem):
    definition, workloads = problem
    parent = add_slow_parent(archive, definition)
    seen = []

    def everything(solution):  # a careless evaluate_fn that runs the held-out workload too
        seen.extend(w.uuid for w in workloads)
        return [_trace(definition, w, solution.name, EvaluationStatus.INCORRECT_NUMERICAL) for w in workloads]

    # what the controller may have written after a held-out gate
    archive.add_note(NoteKind.failure, f"gate: failed held-out {HELD_OUT_UUID} ({HELD_OUT_LABEL})", operator="gate")
    script = [
        servers.anthropic_reply([("evaluate", {}), ("lineage", {}), ("profile", {"workload": HELD_OUT_UUID})]),
        servers.anthropic_reply([("knowledge", {"query": "rmsnorm vectorized"})]),
        servers.anthropic_reply([("submit", {"rationale": "nothing", "force": True})]),
    ]  # fmt: skip
    with servers.AnthropicServer(script) as srv:
        client = AnthropicClient("m", base_url=srv.base_url, api_key="k", max_retries=0)
        _operator(client, archive, problem, evaluate_fn=everything).propose(
            search_context(definition, parent, direction="agent: try an untried technique of the playbook"))
    assert HELD_OUT_UUID in seen  # the held-out workload did run, so hiding it is what the test checks
    # everything the model was told: system prompts, user turns and tool results (its own
    # turns are left out: the scripted model names the held-out uuid in a profile call)
    told = json.dumps([[r.body["system"]] + [m for m in r.body["messages"] if m["role"] == "user"]
                       for r in srv.requests])  # fmt: skip
    assert HELD_OUT_UUID not in told and HELD_OUT_LABEL not in told
    evaluated, lineage, profile = _tool_results(srv.requests[1])
    search_uuid = next(w.uuid for w in workloads if not w.held_out)
    assert search_uuid in evaluated and "passed 0/1 search workloads" in evaluated
    assert "gate: failed held-out [hidden]" in lineage
    assert profile.startswith("ERROR: profile: no search workload '[hidden]'")
    assert search_uuid in srv.requests[0].body["system"]  # the search workload is in the contract
    assert "stalled" in srv.requests[0].text  # the supervisor's direction reached the model
