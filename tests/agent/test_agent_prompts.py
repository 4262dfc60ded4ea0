"""Prompts: the contract, the SOL bound and its binding side, the rules with the
definition's forbidden calls, the current best and its gap to SOL, the supervisor's
redirection; and never a held-out workload."""

from __future__ import annotations

import pytest
from agent_support import HELD_OUT_UUID, rmsnorm_problem, search_workloads

from solforge.agent.prompts import (
    TOOLS_GUIDE,
    SolSummary,
    best_summary,
    format_traces,
    redirect_message,
    sol_summary,
    system_prompt,
    untried_techniques,
)
from solforge.hardware.datasheet import spec_by_key
from solforge.roofline import count_work, sol_bound
from solforge.search import EvaluatedCandidate
from solforge.spec import (
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    Language,
    Performance,
    SolReport,
    Solution,
    SourceFile,
    Trace,
)


@pytest.fixture(scope="module")
def problem():
    return rmsnorm_problem([1, 7, 64], held_out=True)


@pytest.fixture(scope="module")
def h100_sol(problem, ):
    definition, workloads = problem
    peaks = spec_by_key("h100-sxm").peaks()
    summary = SolSummary("NVIDIA H100 SXM", "datasheet", note="matched by test")
    for w in workloads:
        if not w.held_out:
            summary.bounds[w.uuid] = sol_bound(count_work(definition, w), peaks)
    return summary


def _trace(definition, workload, status, latency_ms=None, sol_fraction=None, log=""):
    ext = EvaluationExtension(sol=SolReport(sol_fraction=sol_fraction) if sol_fraction is not None else None)
    return Trace(definition=definition.name, workload=workload, solution="s", evaluation=Evaluation(
        status=status, environment=Environment(hardware="x"), timestamp="t", log=log,
        performance=Performance(latency_ms=latency_ms) if latency_ms is not None else None, solforge=ext))  # fmt: skip


def test_system_prompt_states_the_contract_rules_and_sol(problem, h100_sol):
    definition, workloads = problem
    text = system_prompt(definition, Language.triton, "k.py::run", True, search_workloads(workloads), h100_sol,
                         "BEST-SUMMARY",
                         TOOLS_GUIDE.format(max_turns=17))  # fmt: skip
    assert "def run(hidden_states, weight, output)" in text and "written in place; return None" in text
    assert "input `hidden_states`: bfloat16 [num_tokens, hidden_size]" in text
    for call in definition.solforge.forbidden_calls:
        assert f"`{call}`" in text
    for w in workloads:
        if not w.held_out:
            assert w.uuid in text
    assert "hidden_states (7, 4096)" in text  # shapes per search workload
    assert "memory-bound" in text and "datasheet peaks" in text and "NVIDIA H100 SXM" in text
    assert "atol 0.016, rtol 0.016, on 99.9% of elements" in text
    assert "No caching across calls" in text and "No side streams, no threads" in text
    assert "TRITON_INTERPRET" in text  # the language notes
    assert "BEST-SUMMARY" in text and "at most 17 turns" in text
    assert HELD_OUT_UUID not in text and "secret holdout" not in text


def test_system_prompt_without_sol_says_why_and_returning_style(problem):
    definition, workloads = problem
    sol = SolSummary("cpu", None, note="no SOL bound on this device: CPU has no datasheet peaks")
    text = system_prompt(definition, Language.pytorch, "k.py::run", False, search_workloads(workloads), sol, "b",
                         "guide")
    assert "SOL bound omitted: no SOL bound on this device" in text
    assert "def run(hidden_states, weight)`" in text and "Return the output as new tensors" in text


def test_sol_summary_uses_the_device_peaks(problem, monkeypatch):
    definition, workloads = problem
    import solforge.hardware as hardware
    from solforge.hardware.detect import DetectedDevice

    spec = spec_by_key("h100-sxm")
    fake = DetectedDevice(device="cuda", name="H100", spec=spec, reason="test", ceilings=None, l2_bytes=None,
                          sm_count=132, memory_bytes=None)  # fmt: skip
    monkeypatch.setattr(hardware, "detect", lambda device: fake)
    summary = sol_summary(definition, search_workloads(workloads), "cuda")
    (t7,) = [w for w in workloads if w.axes == {"num_tokens": 7} and not w.held_out]
    # RMSNorm moves x in and y out (7 x 4096 bf16 each) and the 4096 bf16 weights once
    bytes_moved = 2 * 7 * 4096 * 2 + 4096 * 2
    assert summary.sol_ms(t7.uuid) == pytest.approx(bytes_moved / (spec.dram_bandwidth_gb_s * 1e9) * 1e3)
    assert summary.bounds[t7.uuid].binding.value == "memory" and summary.peaks_source == "datasheet"
    assert HELD_OUT_UUID not in summary.bounds


def test_sol_summary_on_an_undetectable_device_omits_the_bound(problem):
    definition, workloads = problem
    summary = sol_summary(definition, workloads, "cuda:7")
    assert summary.peaks_source is None and summary.bounds == {} and summary.note


def test_format_traces_gives_gaps_to_sol_and_each_log_once(problem, h100_sol):
    definition, workloads = problem
    search = [w for w in workloads if not w.held_out]
    ok = format_traces([_trace(definition, w, EvaluationStatus.PASSED, 0.01, 0.25) for w in search], h100_sol)
    assert ok.startswith(f"passed {len(search)}/{len(search)} search workloads; geometric-mean SOL fraction 0.250")
    assert "SOL fraction 0.250 (4.00x from SOL)" in ok
    bad = format_traces([_trace(definition, w, EvaluationStatus.COMPILE_ERROR, log="SyntaxError: line 3")
                         for w in search], None)  # fmt: skip
    assert bad.count("SyntaxError: line 3") == 1 and "fitness 0" in bad
    # without a harness figure, the fraction comes from the bound and the measured median
    (line,) = [l for l in format_traces([_trace(definition, search[0], EvaluationStatus.PASSED, 1.0)],
                                        h100_sol).splitlines() if l.startswith("- ")]  # fmt: skip
    assert f"SOL fraction {h100_sol.sol_ms(search[0].uuid):.3f}" in line


def test_best_summary_formats_the_parent_and_its_latest_round(problem):
    definition, workloads = problem
    search = search_workloads(workloads)
    source = SourceFile(path="k.py", content="def run(hidden_states, weight): pass")
    sol = Solution.model_validate({"name": "s", "definition": definition.name,
                                   "spec": {"language": "pytorch", "entry_point": "k.py::run",
                                            "destination_passing_style": False}, "sources": [source]})
    parent = EvaluatedCandidate(3, "f", {}, 0.8, sol)
    assert "not evaluated yet" in best_summary(parent, (), None)
    traces = [_trace(definition, w, EvaluationStatus.PASSED, 0.02, 0.5) for w in search]
    text = best_summary(parent, traces, None)
    assert "candidate #3 (s, family f, fitness 0.8000)" in text and "SOL fraction 0.500" in text
    assert f"passed {len(search)}/{len(search)} search workloads" in text


def test_redirect_names_untried_playbook_techniques(problem):
    definition, _ = problem
    untried = untried_techniques(definition, Language.triton, [])
    assert "Kernel fusion" in untried  # fusion.md applies to rmsnorm in Triton
    tried = untried_techniques(definition, Language.triton, ["v3: Kernel fusion of the residual add"])
    assert "Kernel fusion" not in tried and len(tried) == len(untried) - 1
    text = redirect_message("agent: try an untried technique of the playbook", tried)
    assert "stalled" in text and tried[0] in text and "Kernel fusion" not in text
