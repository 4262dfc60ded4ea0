"""The agent loop end to end: AgentOperator.propose driven by the REAL openai / anthropic
SDK clients against loopback servers replaying scripted tool-calling conversations,
with the real harness evaluating the candidates on the CPU (rmsnorm smoke workload).

Scripts: a compile error repaired after a patch that does not apply; a reward hack
rejected by the harness, then an honest kernel; malformed tool calls; the run's cost
budget reached; a step ended at its turn limit that still proposes its passing edit;
and what the model is told comes from the step's SearchContext (its workloads, lineage
and notes), which cannot hold anything held-out.

The operator never touches an archive: each step returns a Candidate or NoCandidate
with its note and its costs.
"""

from __future__ import annotations

import json

import pytest
from agent_support import (
    HELD_OUT_LABEL,
    HELD_OUT_UUID,
    PARENT_ID,
    SLOW,
    rmsnorm_problem,
    search_context,
    search_workloads,
    servers,
)

from solforge.agent import AgentLimits, AgentOperator, AnthropicClient, OpenAIChatClient
from solforge.agent.llm import ModelMix
from solforge.agent.loop import make_evaluate_fn
from solforge.agent.pricing import Price
from solforge.search import Candidate, LineageStep, NoCandidate, NoteKind, NoteRecord
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
def context(problem):
    definition, workloads = problem
    return search_context(definition, workloads)


def _operator(client, problem, evaluate_fn=None, **kw) -> AgentOperator:
    definition, workloads = problem
    evaluate_fn = evaluate_fn or make_evaluate_fn(definition, search_workloads(workloads), "cpu")
    return AgentOperator(client, evaluate_fn, "cpu", "pytorch", kw.pop("limits", AgentLimits(max_turns=10)), **kw)


def _tool_results(request) -> list[str]:
    """The tool results a request carried, in order (either protocol)."""
    out = []
    for m in request.body["messages"]:
        if m["role"] == "tool":
            out.append(m["content"])
        elif isinstance(m.get("content"), list):
            out += [b["content"] for b in m["content"] if b.get("type") == "tool_result"]
    return out


def test_openai_compile_error_then_unapplicable_patch_then_repair(problem, context):
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
        candidate = _operator(client, problem).propose(context)
    reqs = srv.requests
    assert len(reqs) == 6
    assert "def run(hidden_states, weight)" in _tool_results(reqs[1])[0]  # read_file showed the parent
    wrote, evaluated = _tool_results(reqs[2])[-2:]
    assert wrote.startswith("wrote kernel.py") and "COMPILE_ERROR" in evaluated and "never closed" in evaluated
    assert "the patch was not applied" in _tool_results(reqs[3])[-1] and "does not match" in _tool_results(reqs[3])[-1]
    assert _tool_results(reqs[4])[-1] == "applied; changed: kernel.py"
    repaired = _tool_results(reqs[5])[-1]
    assert "passed 1/1 search workloads" in repaired and "PASSED, latency_ms=" in repaired
    assert isinstance(candidate, Candidate) and candidate.operator == "agent" and candidate.family == "torch_rows"
    assert candidate.parent_ids == (PARENT_ID,) and candidate.params == {}
    assert candidate.solution.sources[0].content == FIXED
    assert candidate.rationale == "rsqrt instead of 1/sqrt: one op fewer per row"
    assert candidate.solution.author == "solforge-agent (openai:scripted-model)"
    (note,) = candidate.notes
    assert note.kind is NoteKind.rationale and "submitted after 6 turn(s)" in note.text and "rsqrt" in note.text
    assert candidate.usage.llm_input_tokens == 600 and candidate.usage.llm_output_tokens == 120  # 6 calls of (100, 20)
    assert candidate.usage.wall_seconds > 0  # the exploratory evaluations are in the step's costs too


def test_anthropic_reward_hack_is_rejected_then_an_honest_kernel_passes(problem, context):
    script = [
        servers.anthropic_reply([("write_file", {"path": "kernel.py", "content": HACK}), ("evaluate", {})],
                                text="Use the library norm."),
        servers.anthropic_reply([("submit", {"rationale": "library call"})]),
        servers.anthropic_reply([("write_file", {"path": "kernel.py", "content": FIXED}), ("evaluate", {})]),
        servers.anthropic_reply([("submit", {"rationale": "honest rsqrt kernel"})]),
    ]  # fmt: skip
    with servers.AnthropicServer(script) as srv:
        client = AnthropicClient("scripted-claude", base_url=srv.base_url, api_key="k", max_retries=0)
        candidate = _operator(client, problem).propose(context)
    hack_result = _tool_results(srv.requests[1])[-1]
    assert "REWARD_HACK" in hack_result and "forbidden call torch.nn.functional.rms_norm" in hack_result
    refused = _tool_results(srv.requests[2])[-1]
    assert refused.startswith("ERROR: not submitted") and "force=true" in refused  # submit refused once
    assert "PASSED" in _tool_results(srv.requests[3])[-1]
    assert isinstance(candidate, Candidate) and candidate.solution.sources[0].content == FIXED
    assert candidate.rationale == "honest rsqrt kernel"


def test_malformed_tool_calls_go_back_to_the_model_and_the_loop_continues(problem, context):
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
        candidate = _operator(client, problem, evaluate_fn=lambda s: calls.append(s) or []).propose(context)
    r = [_tool_results(req) for req in srv.requests]
    assert "read_file: arguments are not valid JSON" in r[1][-1] and '{"path": "kernel.py"' in r[1][-1]
    assert "unknown tool 'rm_rf'" in r[2][-1] and "submit" in r[2][-1]
    assert "argument 'path': expected a string, got int" in r[3][-2]
    assert "missing argument(s): content" in r[3][-1]
    assert "Continue with the tools" in srv.requests[5].text  # the nudge after a reply without tool calls
    assert isinstance(candidate, Candidate) and candidate.solution.sources[0].content == FIXED and calls == []


def test_run_budget_stops_the_step_and_the_run(problem):
    definition, workloads = problem
    script = [servers.openai_reply([("read_file", {"path": "kernel.py"})], usage=(1000, 100))] * 5
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("priced-model", base_url=srv.base_url, api_key="k", max_retries=0)
        # $100 / M input, $1000 / M output: 0.1 + 0.1 = $0.20 per call; budget $0.30
        mix = ModelMix.of(client, {"priced-model": Price(100.0, 1000.0, "test")})
        op = _operator(mix, problem, budget_usd=0.30)
        first = op.propose(search_context(definition, workloads))
        assert isinstance(first, NoCandidate) and first.stop_run
        assert first.reason == "LLM cost budget reached: $0.4000 spent of $0.3000"
        assert len(srv.requests) == 2  # the second call crossed the budget; its tool calls never ran
        assert first.usage.cost_usd == pytest.approx(0.4)
        assert first.usage.llm_input_tokens == 2000 and first.usage.llm_output_tokens == 200
        (note,) = first.notes
        assert note.kind is NoteKind.failure and "budget after 2 turn(s)" in note.text and "$0.4000" in note.text
        # the next step starts from what the run has spent (the controller's figure): no call at all
        again = op.propose(search_context(definition, workloads, run_cost_usd=first.usage.cost_usd))
        assert isinstance(again, NoCandidate) and again.stop_run and again.usage.cost_usd == 0
        assert len(srv.requests) == 2


def test_turn_limit_still_proposes_a_passing_edit(problem, context):
    definition, workloads = problem

    def passing(solution):  # stands in for the harness: every search workload PASSED
        return [_trace(definition, w, solution.name, EvaluationStatus.PASSED) for w in search_workloads(workloads)]

    script = [servers.openai_reply([("write_file", {"path": "kernel.py", "content": FIXED}), ("evaluate", {})],
                                   text="rsqrt saves a division"),
              servers.openai_reply([("read_file", {"path": "kernel.py"})])]  # fmt: skip
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("m", base_url=srv.base_url, api_key="k", max_retries=0)
        candidate = _operator(client, problem, evaluate_fn=passing, limits=AgentLimits(max_turns=2)).propose(context)
    assert isinstance(candidate, Candidate) and candidate.solution.sources[0].content == FIXED
    assert candidate.rationale.startswith("[the step ended at max_turns") and "rsqrt saves" in candidate.rationale


def _trace(definition, workload, solution: str, status: EvaluationStatus) -> Trace:
    return Trace(definition=definition.name, workload=workload, solution=solution, evaluation=Evaluation(
        status=status, environment=Environment(hardware="cpu"), timestamp="2026-01-01T00:00:00Z",
        log="" if status is EvaluationStatus.PASSED else f"failed on {workload.uuid} ({workload.label})",
        performance=Performance(latency_ms=0.5) if status is EvaluationStatus.PASSED else None))  # fmt: skip


def test_the_model_is_told_the_context_and_nothing_else(problem):
    definition, workloads = problem
    lineage = (LineageStep(1, PARENT_ID, "seed", "torch_rows", 0.5, "committed as version 1", ""),)
    notes = (NoteRecord(1, NoteKind.failure, "split-K made it slower", None, "agent", 1.0),)
    context = search_context(definition, workloads, direction="agent: try an untried technique of the playbook",
                             lineage=lineage, notes=notes)  # fmt: skip
    script = [
        servers.anthropic_reply([("evaluate", {}), ("lineage", {}), ("profile", {"workload": "t=5"})]),
        servers.anthropic_reply([("submit", {"rationale": "nothing", "force": True})]),
    ]  # fmt: skip
    seen = []

    def failing(solution):
        seen.append(solution)
        return [_trace(definition, w, solution.name, EvaluationStatus.INCORRECT_NUMERICAL) for w in context.workloads]

    with servers.AnthropicServer(script) as srv:
        client = AnthropicClient("m", base_url=srv.base_url, api_key="k", max_retries=0)
        _operator(client, problem, evaluate_fn=failing).propose(context)
    told = json.dumps([[r.body["system"]] + [m for m in r.body["messages"] if m["role"] == "user"]
                       for r in srv.requests])  # fmt: skip
    assert HELD_OUT_UUID not in told and HELD_OUT_LABEL not in told  # it was never in the context
    evaluated, lineage_result, profile = _tool_results(srv.requests[1])
    search_uuid = context.workloads[0].uuid
    assert search_uuid in evaluated and "passed 0/1 search workloads" in evaluated
    assert "## v1: candidate #1 (seed, family torch_rows)" in lineage_result
    assert "agent: split-K made it slower" in lineage_result
    assert profile.startswith("ERROR: profile: no search workload 't=5'") and seen
    assert search_uuid in srv.requests[0].body["system"]  # the search workload is in the contract
    assert "stalled" in srv.requests[0].text  # the supervisor's direction reached the model
    # nothing held-out can be handed to an agent in the first place
    with pytest.raises(ValueError, match="held-out"):
        make_evaluate_fn(definition, workloads, "cpu")
