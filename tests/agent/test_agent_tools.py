"""The agent's tools outside the loop: argument checking, the profile tool (torch profiler
on the CPU; Nsight Compute output parsing; the Triton compile report on a GPU), the
knowledge tool, the lineage text, and the refusal of a held-out workload."""

from __future__ import annotations

import pytest
from agent_support import pytorch_solution, rmsnorm_problem

from solforge.agent.llm import ToolCall
from solforge.agent.profiling import format_ncu, parse_ncu_csv, profile_solution
from solforge.agent.tools import TOOL_SPECS, AgentTools, check_arguments, lineage_text
from solforge.agent.workspace import Workspace
from solforge.search import Archive, LineageStep, NoteKind
from solforge.spec import (
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    Performance,
    SolReport,
    Trace,
)

KERNEL = """import torch


def run(hidden_states, weight):
    x = hidden_states.float()
    r = torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5)
    return (x * r * weight.float()).to(hidden_states.dtype)
"""


@pytest.fixture(scope="module")
def problem():
    return rmsnorm_problem([1, 7, 64], held_out=False)


def _solution(definition, content=KERNEL, name="base"):
    return pytorch_solution(definition, content, name)


def _call(name, **args) -> ToolCall:
    return ToolCall(id="c", name=name, arguments=args)


@pytest.fixture
def tools(problem):
    definition, workloads = problem
    ws = Workspace.create(_solution(definition))
    t = AgentTools(ws, definition, workloads, evaluate_fn=lambda s: [], device="cpu")
    yield t
    ws.cleanup()


def test_check_arguments_against_the_schemas():
    spec = {s.name: s for s in TOOL_SPECS}
    assert check_arguments(spec["submit"], {"rationale": "x", "force": True}) is None
    mistyped = check_arguments(spec["submit"], {"rationale": "x", "force": "yes"})
    assert mistyped == "argument 'force': expected a boolean, got str"
    assert check_arguments(spec["knowledge"], {"kind": "blog"}).startswith("argument 'kind': expected one of")
    assert check_arguments(spec["evaluate"], {"x": 1}) == "unknown argument(s): x (expected: none)"
    # every tool's schema is a closed JSON-schema object, as both protocols expect
    assert all(s.parameters["type"] == "object" and s.parameters["additionalProperties"] is False for s in TOOL_SPECS)


def test_read_and_write_files_through_dispatch(tools):
    shown = tools.dispatch(_call("read_file", path="kernel.py")).text.splitlines()
    assert shown[0] == "kernel.py (7 lines):" and shown[4] == "   4  def run(hidden_states, weight):"
    assert tools.dispatch(_call("write_file", path="extra.py", content="A = 1\n")).text == "wrote extra.py (1 lines)"
    missing = tools.dispatch(_call("read_file", path="nope.py"))
    assert missing.is_error and "no such file (files: extra.py, kernel.py)" in missing.text
    assert tools.dispatch(_call("write_file", path="../x.py", content="")).is_error


def test_profile_on_the_cpu_gives_the_torch_profiler_table(tools):
    result = tools.dispatch(_call("profile", workload="smoke t=64"))
    assert not result.is_error and "## torch.profiler" in result.text and "aten::mul" in result.text
    assert "smoke t=64" in result.text


def test_profile_of_a_crashing_candidate_reports_instead_of_raising(problem):
    definition, workloads = problem
    crash = KERNEL.replace("    x = hidden_states.float()", "    raise RuntimeError('boom from the kernel')")
    report = profile_solution(_solution(definition, crash), definition, workloads[0], "cpu", timeout_s=120)
    (section,) = report.sections
    assert not section.available and "exited with" in section.text and "boom from the kernel" in section.text


NCU_CSV = '''==PROF== Connected to process 4242 (/usr/bin/python3.12)
==PROF== Profiling "rmsnorm_kernel" - 0: 0%....50%....100% - 9 passes
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","dram__bytes.sum.per_second","gpu__time_duration.sum","launch__registers_per_thread","l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum","sm__warps_active.avg.pct_of_peak_sustained_active"
"","","","","","","","","","","","Gbyte/second","nsecond","register/thread","byte","%"
"0","4242","python3.12","127.0.0.1","rmsnorm_kernel","1","7","(128, 1, 1)","(7, 1, 1)","0","9.0","2,512,345,678,901","6,112","32","0","11.83"
==PROF== Disconnected from process 4242
'''


def test_ncu_csv_is_parsed_into_key_metrics():
    (row,) = parse_ncu_csv(NCU_CSV)
    assert row["Kernel Name"] == "rmsnorm_kernel" and row["launch__registers_per_thread"] == "32"
    text = format_ncu([row])
    assert "kernel rmsnorm_kernel (grid (7, 1, 1), block (128, 1, 1))" in text
    assert "DRAM bandwidth: 2512.3 GB/s" in text and "duration: 6.11 us" in text
    assert "registers/thread: 32" in text and "achieved occupancy: 11.83 %" in text
    assert "spill stores (local): 0 byte" in text
    assert "no kernel was profiled" in format_ncu(parse_ncu_csv("==PROF== nothing\n"))


def test_knowledge_search_and_read(tools):
    found = tools.dispatch(_call("knowledge", query="fusion residual add rmsnorm", kind="playbook"))
    assert not found.is_error and "path=playbook/" in found.text
    path = next(line.split("path=")[1] for line in found.text.splitlines() if "path=" in line)
    doc = tools.dispatch(_call("knowledge", path=path))
    assert not doc.is_error and len(doc.text) > 200
    assert tools.dispatch(_call("knowledge", path="../../etc/passwd")).is_error
    assert tools.dispatch(_call("knowledge")).is_error


def _passed(definition, workload, solution: str, sol_score: float) -> Trace:
    return Trace(definition=definition.name, workload=workload, solution=solution, evaluation=Evaluation(
        status=EvaluationStatus.PASSED, environment=Environment(hardware="cpu"), timestamp="t",
        performance=Performance(latency_ms=1.0),
        solforge=EvaluationExtension(sol=SolReport(sol_fraction=0.5, sol_score=sol_score))))  # fmt: skip


def test_lineage_text_shows_versions_diffs_and_failed_directions(tmp_path, problem):
    definition, workloads = problem
    with Archive.create(definition.name, device="cpu", strategy="lineage", operators=["agent"], seed=0,
                        runs_root=tmp_path, run_id="r") as a:  # fmt: skip
        first = a.add_candidate(_solution(definition), operator="seed", family="f").candidate.id
        child = a.add_candidate(_solution(definition, KERNEL.replace("mean(-1", "mean(dim=-1"), "child"),
                                operator="agent", family="f", parent_ids=[first]).candidate.id  # fmt: skip
        for cid, name in ((first, "base"), (child, "child")):
            a.start_evaluation(cid)
            a.record_evaluation(cid, [_passed(definition, w, name, sol_score=0.6) for w in workloads])
        a.commit(first, "seed")
        a.commit(child, "faster by 3%")
        a.add_note(NoteKind.failure, "split-K made it slower", operator="agent")
        steps = [LineageStep(e.version, e.candidate_id, c.operator, c.family, e.fitness, e.reason, c.diff)
                 for e in a.lineage() for c in [a.candidate(e.candidate_id)]]
        text = lineage_text(steps, a.notes())
    assert "## v1: candidate #1 (seed, family f)" in text and "(no diff: a seed)" in text
    assert "## v2: candidate #2 (agent, family f), fitness 0.6000\nfaster by 3%" in text
    assert "+    r = torch.rsqrt((x * x).mean(dim=-1" in text
    assert "agent: split-K made it slower" in text


def test_the_tools_refuse_a_held_out_workload(problem):
    definition, workloads = problem
    held = workloads[0].model_copy(deep=True)
    held.uuid, held.solforge.held_out = "wl-secret-7", True
    ws = Workspace.create(_solution(definition))
    try:
        with pytest.raises(ValueError, match="held-out"):
            AgentTools(ws, definition, [*workloads, held], evaluate_fn=lambda s: [], device="cpu")
    finally:
        ws.cleanup()


@pytest.mark.cuda
def test_profile_of_a_triton_seed_on_a_gpu_has_the_compile_report(problem):
    from solforge.knowledge import seeds_for

    definition, workloads = problem
    (seed, *_) = seeds_for(definition, "triton")
    solution = seed.to_solution(definition)
    report = profile_solution(solution, definition, workloads[-1], "cuda", timeout_s=300)
    sections = {s.tool: s for s in report.sections}
    compile_report = sections["triton compile report"]
    assert compile_report.available and "registers/thread" in compile_report.text, report.render()
    measured = sections.get("ncu") if sections.get("ncu") and sections["ncu"].available else sections["torch.profiler"]
    assert measured.available, report.render()
