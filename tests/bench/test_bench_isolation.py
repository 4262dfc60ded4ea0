"""Isolation: every fault a solution can cause costs that solution only, the worker is
reused while solutions pass and recycled after any failure, limits are hard, and the
worker sees a scrubbed environment."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from solforge.bench import BenchConfig, TimingBudget, evaluate, run_bench
from solforge.bench.worker import _WORKERS, get_worker, retire_worker, scrubbed_env
from solforge.spec import BuildSpec, EvaluationStatus, Solution, SourceFile, Workload, load_definition

KERNELS = Path(__file__).parent / "kernels"
DEFN = load_definition(KERNELS / "rmsnorm_small.json")
WORKLOAD = [Workload(uuid="t5", axes={"T": 5})]
CONFIG = BenchConfig(timing=TimingBudget(warmup_s=0.0, max_time_s=0.3, max_iters=3, min_iters=2),
                     flush_bytes=1 << 20, timeout_s=60)


def solution(file: str, language: str = "pytorch") -> Solution:
    return Solution(name=Path(file).stem, definition=DEFN.name,
                    spec=BuildSpec(language=language, entry_point=f"{file}::run", destination_passing_style=False),
                    sources=[SourceFile(path=file, content=(KERNELS / file).read_text())])


def worker_pid() -> int | None:
    worker = _WORKERS.get("cpu")
    return worker.process.pid if worker is not None and worker.alive else None


@pytest.mark.parametrize("file, status, phrase", [
    ("segfault.py", EvaluationStatus.RUNTIME_ERROR, "signal SIGSEGV"),
    ("oom.py", EvaluationStatus.RUNTIME_ERROR, "can't allocate memory"),
    ("sys_exit.py", EvaluationStatus.RUNTIME_ERROR, "the solution raised SystemExit: 3"),
    ("os_exit.py", EvaluationStatus.RUNTIME_ERROR, "exited with code 7"),
    ("raises.py", EvaluationStatus.RUNTIME_ERROR, "ValueError: this kernel does not support that shape"),
])
def test_a_fault_costs_its_solution_and_the_next_one_passes(file, status, phrase):
    result = run_bench(DEFN, WORKLOAD, [solution(file), solution("honest_rmsnorm.py")], "cpu", baselines=(),
                       config=CONFIG)
    faulty = result.solutions[Path(file).stem][0].evaluation
    assert faulty.status is status and phrase in faulty.log, faulty.log
    honest = result.solutions["honest_rmsnorm"][0].evaluation
    assert honest.status is EvaluationStatus.PASSED, honest.log
    assert result.failed == [Path(file).stem]


def test_a_segfault_log_carries_the_solutions_stack():
    ev = evaluate(DEFN, WORKLOAD, solution("segfault.py"), "cpu", CONFIG)[0].evaluation
    assert "segfault.py\", line 6 in run" in ev.log  # faulthandler's stack, from the worker's log


def test_an_infinite_loop_times_out_within_the_limit_and_the_run_goes_on():
    config = CONFIG.model_copy(update={"timeout_s": 3.0})
    get_worker("cpu", config.startup_timeout_s)  # started beforehand: the limit is the request's alone
    start = time.monotonic()
    looping = evaluate(DEFN, WORKLOAD, solution("infinite_loop.py"), "cpu", config)[0].evaluation
    elapsed = time.monotonic() - start
    assert looping.status is EvaluationStatus.TIMEOUT and "no result within 3 s" in looping.log
    assert 3.0 <= elapsed < 3.0 + 10.0  # the limit, plus building and killing
    assert evaluate(DEFN, WORKLOAD, solution("honest_rmsnorm.py"), "cpu", config)[0].evaluation.status \
        is EvaluationStatus.PASSED


def test_the_worker_is_reused_while_solutions_pass_and_recycled_after_a_failure():
    assert evaluate(DEFN, WORKLOAD, solution("honest_rmsnorm.py"), "cpu", CONFIG)[0].evaluation.status \
        is EvaluationStatus.PASSED
    first = worker_pid()
    assert evaluate(DEFN, WORKLOAD, solution("honest_rmsnorm_dps.py").model_copy(
        update={"spec": BuildSpec(language="pytorch", entry_point="honest_rmsnorm_dps.py::run",
                                  destination_passing_style=True)}), "cpu", CONFIG)[0].evaluation.status \
        is EvaluationStatus.PASSED
    assert worker_pid() == first is not None
    assert evaluate(DEFN, WORKLOAD, solution("wrong_scale.py"), "cpu", CONFIG)[0].evaluation.status \
        is EvaluationStatus.INCORRECT_NUMERICAL
    assert worker_pid() is None  # killed; the next request starts a fresh one
    evaluate(DEFN, WORKLOAD, solution("honest_rmsnorm.py"), "cpu", CONFIG)
    assert worker_pid() not in (None, first)


def test_the_worker_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-solutions")
    monkeypatch.setenv("HF_TOKEN", "hf-not-for-solutions")
    monkeypatch.setenv("TORCH_SECRET_TOKEN", "nor-this")
    monkeypatch.setenv("CUDA_MODULE_LOADING", "LAZY")
    env = scrubbed_env("cpu")
    assert "OPENAI_API_KEY" not in env and "HF_TOKEN" not in env and "TORCH_SECRET_TOKEN" not in env
    assert env["CUDA_MODULE_LOADING"] == "LAZY" and env["TRITON_INTERPRET"] == "1" and env["PATH"]
    assert "TRITON_INTERPRET" not in scrubbed_env("cuda:0", {"TRITON_INTERPRET": "1"})
    retire_worker("cpu")  # the next worker starts under the environment set above
    ev = evaluate(DEFN, WORKLOAD, solution("reads_env.py"), "cpu", CONFIG)[0].evaluation
    assert ev.status is EvaluationStatus.PASSED, ev.log
    assert os.environ["OPENAI_API_KEY"] == "sk-not-for-solutions"  # the parent's own is untouched


def cuda_solution(file: str) -> Solution:
    return Solution(name=Path(file).stem, definition=DEFN.name,
                    spec=BuildSpec(language="cuda", entry_point=f"{file}::run", destination_passing_style=False),
                    sources=[SourceFile(path=file, content=(KERNELS / file).read_text())])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
def test_cuda_cpp_with_a_syntax_error_is_a_compile_error_on_the_cpu():
    ev = evaluate(DEFN, WORKLOAD, cuda_solution("syntax_error.cu"), "cpu", CONFIG)[0].evaluation
    assert ev.status is EvaluationStatus.COMPILE_ERROR, ev.log
    assert "syntax_error.cu does not compile" in ev.log and 'expected a ";"' in ev.log


def test_cuda_cpp_without_nvcc_is_not_checked_and_cannot_run_on_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvcc there
    retire_worker("cpu")
    ev = evaluate(DEFN, WORKLOAD, cuda_solution("honest_rmsnorm.cu"), "cpu", CONFIG)[0].evaluation
    retire_worker("cpu")  # back to a worker with the usual PATH for the tests after
    assert ev.status is EvaluationStatus.RUNTIME_ERROR
    assert "nvcc not found on PATH" in ev.log and "built; CUDA C++ cannot run on device cpu" in ev.log


def sleepers() -> list[int]:
    """Live processes running `sleep 297.5` (the marker of spawns_sleeper.py)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00297.5\x00":
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_timeout_kills_the_processes_the_solution_started():
    config = CONFIG.model_copy(update={"timeout_s": 3.0})
    ev = evaluate(DEFN, WORKLOAD, solution("spawns_sleeper.py"), "cpu", config)[0].evaluation
    assert ev.status is EvaluationStatus.TIMEOUT, ev.log
    deadline = time.monotonic() + 5
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers() == []
