"""End to end: each exploit, evaluated through `evaluate` on the CPU (judge, reference
process and a fresh solution process), comes back REWARD_HACK with a finding that names
the hack; honest kernels PASS."""

from __future__ import annotations

import pytest
from exploits import RMSNORM, solution

from solforge.bench import BenchConfig, evaluate
from solforge.spec import EvaluationStatus, Workload

WORKLOAD = Workload.model_validate({
    "uuid": "guards-e2e", "axes": {"tokens": 8},
    "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}},
})
CONFIG = BenchConfig(trials=3)


def verdict(name: str, language: str = "pytorch"):
    trace = evaluate(RMSNORM, [WORKLOAD], solution(name, language), "cpu", CONFIG)[0]
    assert trace.evaluation is not None
    return trace.evaluation


@pytest.mark.parametrize("name, language, guard, phrase", [
    # caught by the static guard, before anything runs
    ("forbidden_getattr", "pytorch", "forbidden-call", "forbidden call torch.nn.functional.rms_norm at main.py:8"),
    ("patch_cuda_timing", "pytorch", "timer-patch", "timer patch: assignment to torch.cuda.synchronize"),
    ("swap_code", "pytorch", "harness-tamper", "code swap"),
    # caught in the solution's process or by the judge, at run time
    ("forbidden_exec_computed", "pytorch", "forbidden-call",
     "forbidden call torch.nn.functional.rms_norm or torch.rms_norm at <source compiled at main.py:8>:2 "
     "(attribute .rms_norm)"),
    ("forbidden_exec_named_as_own_file", "pytorch", "forbidden-call",
     "forbidden call torch.nn.functional.rms_norm or torch.rms_norm at <main.py compiled at main.py:6>:2 "
     "(attribute .rms_norm)"),
    ("forbidden_generated_file", "pytorch", "forbidden-call",
     "forbidden call torch.nn.functional.rms_norm at <kernel.py compiled at main.py:14>:5"),
    ("forbidden_code_replace", "pytorch", "forbidden-call",
     "forbidden call check defeated: a code object built at run time (code.__new__) at main.py:12"),
    ("process_fork", "pytorch", "thread-or-process", "threads or processes: os.fork"),
    ("process_subprocess", "pytorch", "thread-or-process", "threads or processes: "),
    ("thread_output", "pytorch", "thread-or-process", "threads or processes: thread"),
    ("thread_hidden", "pytorch", "thread-or-process", "threads or processes: thread"),
    ("patch_hidden", "pytorch", "timer-patch", "timer patch: time.perf_counter was replaced"),
    ("tensor_subclass", "pytorch", "lazy-output", "(a torch.Tensor subclass), not a torch.Tensor"),
    ("lazy_generator", "pytorch", "lazy-output", "is a generator"),
    ("cache_address", "pytorch", "caching", "caching results across calls (by address)"),
    ("cache_call_count", "pytorch", "caching", "caching results across calls (by call count)"),
    ("cache_content", "pytorch", "caching", "caching results across calls (by content)"),
    ("cache_reused_buffer", "pytorch", "caching", "returned the storage call 0 returned"),
])
def test_exploits_are_reward_hacks(name, language, guard, phrase):
    ev = verdict(name, language)
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert guard in {f.guard for f in ev.solforge.guard_findings}, ev.solforge.guard_findings
    assert phrase in ev.log, ev.log


def test_a_reused_output_buffer_left_partly_stale_fails():
    # Every storage returned earlier is poisoned before the next call: the rows the
    # kernel did not rewrite come back as NaN, not as an earlier call's answer.
    ev = verdict("cache_reused_buffer_partial")
    assert ev.status is EvaluationStatus.INCORRECT_NUMERICAL, ev.log
    assert ev.log.startswith("call 1 "), ev.log


@pytest.mark.parametrize("name, language", [("decoy_triton", "triton"), ("decoy_numba", "numba")])
def test_decoys_are_reward_hacks(name, language):
    ev = verdict(name, language)
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert [f.guard for f in ev.solforge.guard_findings] == ["decoy"]
    assert f"decoy: declared {language} but launched none of its own kernels" in ev.log


@pytest.mark.parametrize("name, language", [
    ("honest_torch", "pytorch"), ("honest_set_num_threads", "pytorch"), ("honest_triton", "triton"),
    ("honest_numba_prange", "numba"),
])
def test_honest_kernels_pass(name, language):
    ev = verdict(name, language)
    assert ev.status is EvaluationStatus.PASSED, (name, ev.log)
    assert ev.solforge.guard_findings == []
