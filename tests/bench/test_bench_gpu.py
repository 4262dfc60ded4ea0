"""The GPU paths of the harness: CUDA-event timing with an L2 flush, CUDA-graph timing,
Triton and CUDA C++ (load_inline) solutions, NVML clock readings, and a CUDA fault.
Skipped without an NVIDIA GPU (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from solforge.bench import BenchConfig, evaluate, run_bench
from solforge.spec import BuildSpec, EvaluationStatus, Solution, SourceFile, Workload, load_definition

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")]

KERNELS = Path(__file__).parent / "kernels"
DEFN = load_definition(KERNELS / "rmsnorm_small.json")
WORKLOADS = [Workload(uuid="t8192", axes={"T": 8192}), Workload(uuid="t3", axes={"T": 3})]
CONFIG = BenchConfig(timeout_s=120)


def solution(file: str, language: str = "pytorch") -> Solution:
    return Solution(name=Path(file).stem, definition=DEFN.name,
                    spec=BuildSpec(language=language, entry_point=f"{file}::run", destination_passing_style=False),
                    sources=[SourceFile(path=file, content=(KERNELS / file).read_text())])


def passed(file: str, language: str = "pytorch", config: BenchConfig = CONFIG):
    evs = [t.evaluation for t in evaluate(DEFN, WORKLOADS, solution(file, language), "cuda", config)]
    for ev in evs:
        assert ev.status is EvaluationStatus.PASSED, ev.log
        assert ev.solforge.device == "cuda:0" and ev.solforge.timing.is_performance_measurement
    return evs


def test_cuda_event_timing_with_l2_flush_and_clock_readings():
    for ev in passed("honest_rmsnorm.py"):
        timing = ev.solforge.timing
        assert timing.method == "cuda-events+l2-flush"
        assert CONFIG.timing_for("cuda").min_iters <= timing.count <= CONFIG.timing_for("cuda").max_iters
        assert 0 < timing.min_ms <= timing.median_ms <= max(timing.samples_ms)
        assert ev.solforge.reference_precision == "float64"  # float32 inputs: float64 reference on the GPU
        clocks = ev.solforge.clocks
        if clocks:  # NVML present
            assert clocks["sm_clock_mhz_before"] > 0 and clocks["sm_clock_mhz_after"] > 0


def test_cuda_graph_timing():
    for ev in passed("honest_rmsnorm.py", config=CONFIG.model_copy(update={"cuda_graph": True})):
        assert ev.solforge.timing.method == "cuda-graph+l2-flush", ev.solforge.warnings


def test_honest_triton_on_the_gpu_is_a_measurement():
    passed("honest_rmsnorm_triton.py", "triton")


def test_cuda_cpp_through_load_inline():
    config = CONFIG.model_copy(update={"build_timeout_s": 900.0})
    evs = [t.evaluation for t in evaluate(DEFN, WORKLOADS, solution("honest_rmsnorm.cu", "cuda"), "cuda", config)]
    for ev in evs:
        assert ev.status is EvaluationStatus.PASSED, ev.log


def test_an_illegal_memory_access_costs_its_solution_only():
    result = run_bench(DEFN, WORKLOADS[:1], [solution("illegal_address_triton.py", "triton"),
                                              solution("honest_rmsnorm.py")], "cuda", baselines=(), config=CONFIG)
    faulty = result.solutions["illegal_address_triton"][0].evaluation
    assert faulty.status is EvaluationStatus.RUNTIME_ERROR, faulty.log
    assert result.solutions["honest_rmsnorm"][0].evaluation.status is EvaluationStatus.PASSED
    assert result.failed == ["illegal_address_triton"]


def test_run_bench_on_the_gpu_scores_against_eager_and_compile():
    result = run_bench(DEFN, WORKLOADS[:1], [solution("honest_rmsnorm_triton.py", "triton")], "cuda",
                       baselines=("eager", "compile"), config=CONFIG)
    ev = result.solutions["honest_rmsnorm_triton"][0].evaluation
    assert ev.status is EvaluationStatus.PASSED, ev.log
    assert set(ev.solforge.baseline_latency_ms) == {"eager", "compile"}, [
        b[0].evaluation.log for b in result.baselines.values()]
    assert ev.solforge.speedup_vs_compile > 0 and ev.performance.speedup_factor > 0
    sol = ev.solforge.sol
    assert sol is not None and sol.achieved_gb_s > 0
    if result.device.spec is not None:  # a datasheet device: the SOL time and score exist
        assert sol.sol_time_ms > 0 and 0 < sol.sol_score <= 1
