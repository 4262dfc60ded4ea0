"""Isolation: every fault a solution can cause costs that solution only, each solution
runs in a fresh process of its own, limits are hard, and that process sees a scrubbed
environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solforge.bench import BenchConfig, TimingBudget, evaluate, run_bench
from solforge.bench.processes import scrubbed_env
from solforge.spec import BuildSpec, EvaluationStatus, Solution, SourceFile, Workload, load_definition

KERNELS = Path(__file__).parent / "kernels"
DEFN = load_definition(KERNELS / "rmsnorm_small.json")
WORKLOAD = [Workload(uuid="t5", axes={"T": 5})]
CONFIG = BenchConfig(timing=TimingBudget(warmup_s=0.0, max_time_s=0.3, max_iters=8, min_iters=8), timeout_s=60)


def solution(file: str, language: str = "pytorch") -> Solution:
    return Solution(name=Path(file).stem, definition=DEFN.name,
                    spec=BuildSpec(language=language, entry_point=f"{file}::run", destination_passing_style=False),
                    sources=[SourceFile(path=file, content=(KERNELS / file).read_text())])


@pytest.mark.parametrize("file, status, phrase", [
    ("segfault.py", EvaluationStatus.RUNTIME_ERROR, "signal SIGSEGV"),
    ("oom.py", EvaluationStatus.RUNTIME_ERROR, "can't allocate memory"),  # refused at once; a real OOM kill: test_limits
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


def test_an_infinite_loop_times_out_at_the_limit_and_the_run_goes_on():
    config = CONFIG.model_copy(update={"timeout_s": 3.0})
    start = time.monotonic()
    looping = evaluate(DEFN, WORKLOAD, solution("infinite_loop.py"), "cpu", config)[0].evaluation
    elapsed = time.monotonic() - start
    assert looping.status is EvaluationStatus.TIMEOUT and "within 3 s: the process was killed (SIGKILL)" in looping.log, looping.log
    assert elapsed >= 3.0  # killed at the limit, not before
    # the next evaluation runs as usual (under the default limit: 3 s is the loop's, and a
    # busy machine may need more for an honest first call)
    assert evaluate(DEFN, WORKLOAD, solution("honest_rmsnorm.py"), "cpu", CONFIG)[0].evaluation.status \
        is EvaluationStatus.PASSED


def test_each_solution_runs_in_a_fresh_process():
    # The first leaves marks in numpy and in torch's defaults; the second fails if it sees them.
    result = run_bench(DEFN, WORKLOAD, [solution("leaves_state.py"), solution("checks_state.py")], "cpu",
                       baselines=(), config=CONFIG)
    for name in ("leaves_state", "checks_state"):
        ev = result.solutions[name][0].evaluation
        assert ev.status is EvaluationStatus.PASSED, (name, ev.log)


def test_the_environment_of_a_solution_is_scrubbed():
    env = scrubbed_env("cpu", {"OPENAI_API_KEY": "sk", "HF_TOKEN": "hf", "TORCH_SECRET_TOKEN": "t",
                               "CUDA_MODULE_LOADING": "LAZY", "PATH": "/bin"})
    assert "OPENAI_API_KEY" not in env and "HF_TOKEN" not in env and "TORCH_SECRET_TOKEN" not in env
    assert env["CUDA_MODULE_LOADING"] == "LAZY" and env["TRITON_INTERPRET"] == "1" and env["PATH"] == "/bin"
    assert "TRITON_INTERPRET" not in scrubbed_env("cuda:0", {"TRITON_INTERPRET": "1"})
    # the torch profiler's log lines are off unless the user asks for them
    assert env["KINETO_LOG_LEVEL"] == "6" and scrubbed_env("cpu", {"KINETO_LOG_LEVEL": "2"})["KINETO_LOG_LEVEL"] == "2"
    assert "KINETO_CONFIG" not in scrubbed_env("cpu", {"KINETO_CONFIG": "/tmp/kineto.conf"})  # its level only
    # End to end, in a process whose environment holds a secret when the harness starts.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from solforge.bench import BenchConfig, TimingBudget, evaluate\n"
        "from solforge.spec import BuildSpec, Solution, SourceFile, Workload, load_definition\n"
        f"kernels = Path({str(KERNELS)!r})\n"
        "d = load_definition(kernels / 'rmsnorm_small.json')\n"
        "s = Solution(name='reads_env', definition=d.name, spec=BuildSpec(language='pytorch', "
        "entry_point='reads_env.py::run', destination_passing_style=False), "
        "sources=[SourceFile(path='reads_env.py', content=(kernels / 'reads_env.py').read_text())])\n"
        "c = BenchConfig(timing=TimingBudget(warmup_s=0.0, max_time_s=0.2, max_iters=5, min_iters=5))\n"
        "ev = evaluate(d, [Workload(uuid='e', axes={'T': 5})], s, 'cpu', c)[0].evaluation\n"
        "print(ev.status.value, ev.log)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OPENAI_API_KEY": "sk-not-for-solutions"})
    assert proc.stdout.startswith("PASSED"), proc.stdout + proc.stderr

def test_the_harness_children_keep_the_profilers_log_lines_off_the_terminal():
    # The forbidden ops' sample calls run under torch's profiler in children of the harness's
    # template process, whose stderr is the user's terminal (torch 2.13 logs two lines per session).
    script = "from solforge.bench.guards.recorder import implementation_ops; print(implementation_ops('softmax'))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"})
    assert "aten::_softmax" in proc.stdout, proc.stdout + proc.stderr
    assert "profiler_st" not in proc.stderr, proc.stderr


def cuda_solution(file: str) -> Solution:
    return Solution(name=Path(file).stem, definition=DEFN.name,
                    spec=BuildSpec(language="cuda", entry_point=f"{file}::run", destination_passing_style=False),
                    sources=[SourceFile(path=file, content=(KERNELS / file).read_text())])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
def test_cuda_cpp_with_a_syntax_error_is_a_compile_error_on_the_cpu():
    ev = evaluate(DEFN, WORKLOAD, cuda_solution("syntax_error.cu"), "cpu", CONFIG)[0].evaluation
    assert ev.status is EvaluationStatus.COMPILE_ERROR, ev.log
    assert "syntax_error.cu does not compile" in ev.log and 'expected a ";"' in ev.log


def test_cuda_cpp_without_nvcc_is_not_checked_and_cannot_run_on_the_cpu(tmp_path):
    # The solution's process gets its PATH from the template process; a sandboxed start
    # takes this process's environment, so PATH without nvcc applies there.
    if not shutil.which("bwrap"):
        pytest.skip("needs bubblewrap for a solution process started with this PATH")
    from solforge.bench.processes import sandbox_problem

    if sandbox_problem():
        pytest.skip(sandbox_problem())
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{tmp_path}:/usr/bin:/bin"  # no nvcc there
    try:
        ev = evaluate(DEFN, WORKLOAD, cuda_solution("honest_rmsnorm.cu"), "cpu",
                      CONFIG.model_copy(update={"sandbox": True}))[0].evaluation
    finally:
        os.environ["PATH"] = saved
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


@pytest.mark.skipif(not __import__("solforge.bench.limits", fromlist=["x"]).can_kill_at_a_limit(),
                    reason="no writable memory cgroup here: a memory limit cannot end in an out-of-memory kill")
def test_a_real_out_of_memory_kill_at_the_limit_costs_only_that_solution():
    config = CONFIG.model_copy(update={"memory_limit_gb": 1.5})
    result = run_bench(DEFN, WORKLOAD, [solution("grows.py"), solution("honest_rmsnorm.py")], "cpu", baselines=(),
                       config=config)
    grown = result.solutions["grows"][0].evaluation
    assert grown.status is EvaluationStatus.RUNTIME_ERROR, grown.log
    assert "signal SIGKILL" in grown.log and "killed by the out-of-memory killer at the memory limit" in grown.log
    assert result.solutions["honest_rmsnorm"][0].evaluation.status is EvaluationStatus.PASSED
