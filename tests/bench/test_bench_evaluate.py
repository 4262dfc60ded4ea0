"""evaluate and run_bench on the CPU, through the judge and a fresh solution process:
honest solutions in every CPU language pass, wrong ones get the status that names their
fault, timing is sane."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

from solforge.bench import BenchConfig, TimingBudget, evaluate, run_bench
from solforge.bench.timing import judge_threads
from solforge.spec import BuildSpec, EvaluationStatus, Solution, SourceFile, Workload, load_definition

KERNELS = Path(__file__).parent / "kernels"
DEFN = load_definition(KERNELS / "rmsnorm_small.json")
WORKLOADS = [Workload(uuid="t4", axes={"T": 4}, solforge={"smoke": True}),
             Workload(uuid="t7", axes={"T": 7}, solforge={"smoke": True, "held_out": True})]
# A 1 MiB cache flush and a few samples keep each workload well under a second here.
CONFIG = BenchConfig(timing=TimingBudget(warmup_s=0.0, max_time_s=0.5, max_iters=5, min_iters=2),
                     flush_bytes=1 << 20, timeout_s=60)


def solution(file: str, language: str = "pytorch", dps: bool = False) -> Solution:
    return Solution(name=Path(file).stem, definition=DEFN.name,
                    spec=BuildSpec(language=language, entry_point=f"{file}::run", destination_passing_style=dps),
                    sources=[SourceFile(path=file, content=(KERNELS / file).read_text())])


def run(file: str, language: str = "pytorch", dps: bool = False, workloads=WORKLOADS, config=CONFIG):
    traces = evaluate(DEFN, workloads, solution(file, language, dps), "cpu", config)
    assert [t.workload.uuid for t in traces] == [w.uuid for w in workloads]
    return [t.evaluation for t in traces]


def test_honest_pytorch_passes_with_a_full_trace():
    for ev, wl in zip(run("honest_rmsnorm.py"), WORKLOADS):
        assert ev.status is EvaluationStatus.PASSED, ev.log
        ext = ev.solforge
        assert ext.device == "cpu" and ext.held_out == wl.held_out
        assert ext.correctness_trials == 7 and ext.reference_precision == "float64"
        assert ev.correctness.max_relative_error < 1e-5  # float32 rounding, against a float64 reference
        assert ev.performance.latency_ms == ext.timing.median_ms > 0
        assert ext.timing.is_performance_measurement and ext.timing.method == "judge-handshake+cache-flush"
        assert ext.timing.timed_by == "judge" and ext.timing.overhead_ms is not None
        assert len(ext.timing.raw_samples_ms) == ext.timing.count == len(ext.timing.samples_ms)
        if sys.platform == "linux":  # a run-queue reading per timed call, none negative
            waits = ext.timing.run_queue_wait_ms
            assert len(waits) == ext.timing.count and all(w is not None and w >= 0 for w in waits)
        assert ev.environment.hardware and "torch" in ev.environment.libs and ev.timestamp


def test_the_judges_torch_threads_are_one_while_it_times_and_restored_after(monkeypatch):
    import torch

    import solforge.bench.judge as judge

    seen: list[int] = []  # the judge's torch threads each time it makes a call's inputs
    make_inputs = judge.make_inputs

    def spied(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return make_inputs(*args, **kwargs)

    monkeypatch.setattr(judge, "make_inputs", spied)
    original = torch.get_num_threads()
    torch.set_num_threads(2)  # a caller's setting of more than one thread (restored after the test)
    try:
        _judge_threads_checks(seen, 2)
    finally:
        torch.set_num_threads(original)


def _judge_threads_checks(seen: list[int], before: int) -> None:
    import torch

    with judge_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), judge_threads(1):
        raise RuntimeError("a timing that failed")
    assert torch.get_num_threads() == before
    run("honest_rmsnorm.py", workloads=WORKLOADS[:1])
    assert torch.get_num_threads() == before  # an evaluation leaves the caller's setting as it found it
    # the correctness calls' inputs on the caller's threads, the timed calls' (warm-up and samples) on one
    assert seen.count(1) >= CONFIG.timing.min_iters + 1 and seen.count(before) >= 1


def test_honest_destination_passing_passes():
    assert all(ev.status is EvaluationStatus.PASSED for ev in run("honest_rmsnorm_dps.py", dps=True))


def test_honest_numba_prange_passes():
    evs = run("honest_rmsnorm_numba.py", "numba")
    assert all(ev.status is EvaluationStatus.PASSED for ev in evs), [ev.log for ev in evs]


def test_honest_triton_passes_under_the_interpreter_and_is_not_a_measurement():
    for ev in run("honest_rmsnorm_triton.py", "triton"):
        assert ev.status is EvaluationStatus.PASSED, ev.log
        assert ev.solforge.timing.is_performance_measurement is False
        assert any("interpreter" in w for w in ev.solforge.warnings)


@pytest.mark.parametrize("file, dps, status, phrase", [
    ("wrong_scale.py", False, EvaluationStatus.INCORRECT_NUMERICAL, "call 0 (normal inputs): output 'y'"),
    ("wrong_shape.py", False, EvaluationStatus.INCORRECT_SHAPE, "output 'y' has shape (64, 4), expected (4, 64)"),
    ("wrong_dtype.py", False, EvaluationStatus.INCORRECT_DTYPE, "output 'y' is torch.float64, expected torch.float32"),
    ("dps_partial.py", True, EvaluationStatus.INCORRECT_NUMERICAL, "left unwritten"),
    ("mutates_input.py", False, EvaluationStatus.INCORRECT_NUMERICAL, "input 'x' was modified by the call"),
])
def test_faulty_solutions_get_the_status_of_their_fault(file, dps, status, phrase):
    ev = run(file, dps=dps, workloads=WORKLOADS[:1])[0]
    assert ev.status is status, ev.log
    assert phrase in ev.log
    assert ev.performance is None
    if status is EvaluationStatus.INCORRECT_NUMERICAL and "modified" not in phrase:
        assert ev.correctness.max_absolute_error > 1e-3


def test_stale_result_exploit_fails_its_first_call():
    # Uninitialized memory cannot hold the reference's answer: the reference ran in another
    # process, and every earlier output of this one is kept alive, so none is handed back.
    ev = run("stale_result.py", workloads=WORKLOADS[:1])[0]
    assert ev.status is EvaluationStatus.INCORRECT_NUMERICAL, ev.log
    assert ev.log.startswith("call 0 (normal inputs): output 'y': "), ev.log


def test_result_cached_by_input_address_is_a_reward_hack():
    ev = run("cache_by_address.py", workloads=WORKLOADS[:1])[0]
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert "caching" in {f.guard for f in ev.solforge.guard_findings}


def test_static_guard_finding_runs_nothing():
    patched = solution("honest_rmsnorm.py")
    patched.sources[0].content = "import time\ntime.perf_counter = lambda: 0.0\n" + patched.sources[0].content
    ev = evaluate(DEFN, WORKLOADS[:1], patched, "cpu", CONFIG)[0].evaluation
    assert ev.status is EvaluationStatus.REWARD_HACK and ev.log.startswith("static guard: timer patch"), ev.log
    assert ev.solforge.correctness_trials == 0 and ev.solforge.timing is None


def test_a_thread_started_in_the_call_is_caught_at_run_time():
    ev = run("starts_thread.py", workloads=WORKLOADS[:1])[0]
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert "thread-or-process" in {f.guard for f in ev.solforge.guard_findings}, ev.log


def test_a_declared_triton_solution_without_a_kernel_is_a_decoy():
    ev = run("decoy_triton.py", "triton", workloads=WORKLOADS[:1])[0]
    assert ev.status is EvaluationStatus.REWARD_HACK, ev.log
    assert [f.guard for f in ev.solforge.guard_findings] == ["decoy"]


def test_timing_statistics_are_sane_and_keep_every_sample():
    config = CONFIG.model_copy(update={"timing": TimingBudget(warmup_s=0.01, max_time_s=30.0, max_iters=9, min_iters=2)})
    timing = run("honest_rmsnorm.py", workloads=WORKLOADS[:1], config=config)[0].solforge.timing
    samples = timing.samples_ms
    assert timing.count == len(samples) == 9  # max_iters reached long before 30 s
    assert min(samples) == timing.min_ms <= timing.median_ms <= max(samples)
    assert timing.median_ms == pytest.approx(statistics.median(samples))
    assert 0 <= timing.iqr_ms <= max(samples) - min(samples)


def test_run_bench_fills_baselines_speedups_and_sol_reports():
    result = run_bench(DEFN, WORKLOADS, [solution("honest_rmsnorm.py"), solution("wrong_scale.py")], "cpu",
                       baselines=("eager",), config=CONFIG)
    assert result.device.name and result.failed == ["wrong_scale"]
    assert set(result.baselines) == {"eager"} and set(result.solutions) == {"honest_rmsnorm", "wrong_scale"}
    for eager, honest in zip(result.baselines["eager"], result.solutions["honest_rmsnorm"]):
        assert eager.solution == "eager" and eager.evaluation.status is EvaluationStatus.PASSED
        t_b = eager.evaluation.performance.latency_ms
        ev = honest.evaluation
        assert ev.performance.reference_latency_ms == t_b == ev.solforge.baseline_latency_ms["eager"]
        assert ev.performance.speedup_factor == pytest.approx(t_b / ev.performance.latency_ms)
        sol = ev.solforge.sol
        assert sol is not None and sol.bytes_moved >= 4 * 2 * 64 * honest.workload.axes["T"]  # read x, write y
        assert sol.achieved_gb_s > 0
    assert all(t.evaluation.solforge.sol is None for t in result.solutions["wrong_scale"])


def test_torch_compile_baseline_on_one_small_workload():
    result = run_bench(DEFN, WORKLOADS[:1], [solution("honest_rmsnorm.py")], "cpu", baselines=("compile",),
                       config=CONFIG.model_copy(update={"timeout_s": 300.0}))
    compiled = result.baselines["compile"][0].evaluation
    assert compiled.status is EvaluationStatus.PASSED, compiled.log
    honest = result.solutions["honest_rmsnorm"][0].evaluation
    assert honest.solforge.speedup_vs_compile == pytest.approx(
        compiled.performance.latency_ms / honest.performance.latency_ms)
    assert "eager" not in honest.solforge.baseline_latency_ms and honest.performance.speedup_factor == 0.0


def test_honest_solution_passes_the_builtin_smoke_workloads():
    from solforge.bench import solution_from_py
    from solforge.problems import builtin_root, load_builtin, select_workloads

    definition, workloads = load_builtin("rmsnorm_h4096")
    smoke = select_workloads(workloads, "smoke")
    config = CONFIG.model_copy(update={"dataset_root": builtin_root()})
    traces = evaluate(definition, smoke, solution_from_py(KERNELS / "honest_rmsnorm_h4096.py", definition), "cpu", config)
    assert len(traces) == len(smoke) > 0
    for t in traces:
        assert t.evaluation.status is EvaluationStatus.PASSED, t.evaluation.log
        assert t.evaluation.solforge.reference_precision == "float64"


def test_replacing_the_comparison_in_the_solutions_own_process_changes_nothing():
    # The judge compares in its own process: a patched copy in the solution's process is
    # never called, and the wrong output fails as it is.
    ev = run("tamper_compare.py", workloads=WORKLOADS[:1])[0]
    assert ev.status is EvaluationStatus.INCORRECT_NUMERICAL, ev.log
    assert ev.log.startswith("call 0 (normal inputs): output 'y': "), ev.log


def test_the_cache_flush_covers_every_byte_of_each_timed_call():
    # By default the judge evicts the call's own input and output lines from every cache;
    # a flush that does nothing (or misses a buffer) evicts fewer bytes than the call has.
    config = CONFIG.model_copy(update={"flush_bytes": None})
    ev = run("honest_rmsnorm.py", workloads=WORKLOADS[:1], config=config)[0]
    assert ev.status is EvaluationStatus.PASSED, ev.log
    timing = ev.solforge.timing
    call_bytes = (4 * 64 + 64) * 4 + 4 * 64 * 4  # x (T=4 x 64) and w (64) in, y (4 x 64) out, float32
    assert timing.method == "judge-handshake+clflush"
    assert timing.flushed_bytes_per_call >= call_bytes
    # With a configured size the judge writes that buffer instead, every call.
    ev = run("honest_rmsnorm.py", workloads=WORKLOADS[:1])[0]
    assert ev.solforge.timing.method == "judge-handshake+cache-flush"
    assert ev.solforge.timing.flushed_bytes_per_call == 1 << 20


def test_timing_is_cut_past_the_cut_off_and_never_below_it():
    wl = WORKLOADS[:1]
    far = run("honest_rmsnorm.py", workloads=wl, config=CONFIG.model_copy(update={
        "timing": TimingBudget(warmup_s=0.0, max_time_s=30.0, max_iters=200, min_iters=3)}))[0]
    assert far.status is EvaluationStatus.PASSED and not far.solforge.timing.cut
    # A cut-off far below any real latency: stopped after CUT_MIN_SAMPLES (3) samples though min_iters asks for 5
    # (the default CPU budget's), marked cut, still checked and passed.
    cut = evaluate(DEFN, wl, solution("honest_rmsnorm.py"), "cpu", CONFIG.model_copy(update={
        "timing": TimingBudget(warmup_s=0.0, max_time_s=30.0, max_iters=200, min_iters=5)}),
        cutoff_ms={wl[0].uuid: 1e-9})[0].evaluation
    assert cut.status is EvaluationStatus.PASSED, cut.log
    assert cut.solforge.timing.cut and cut.solforge.timing.count == 3
    assert any(w.startswith("cut: timing stopped after 3 samples") for w in cut.solforge.warnings)
    # A cut-off far above: never cut.
    slow = evaluate(DEFN, wl, solution("honest_rmsnorm.py"), "cpu", CONFIG, cutoff_ms={wl[0].uuid: 1e9})[0]
    assert not slow.evaluation.solforge.timing.cut and slow.evaluation.solforge.timing.count == 5


def test_the_cpu_budget_never_stops_a_timing_before_it_can_be_stable():
    from solforge.bench.config import CPU_TIMING
    from solforge.bench.timing import MIN_STABLE_SAMPLES

    assert CPU_TIMING.min_iters >= MIN_STABLE_SAMPLES
    # a loop whose time budget is spent after one call still takes min_iters samples: stable by count
    budget = CPU_TIMING.model_copy(update={"max_time_s": 1e-6, "warmup_s": 0.0})
    timing = run("honest_rmsnorm.py", workloads=WORKLOADS[:1], config=CONFIG.model_copy(update={"timing": budget}))[0]
    assert timing.solforge.timing.count >= MIN_STABLE_SAMPLES


def test_a_gpu_target_cross_compiles_first_and_refuses_what_cannot_run_there():
    config = CONFIG.model_copy(update={"target": "sm_90a"})
    ok = run("honest_rmsnorm_triton.py", "triton", workloads=WORKLOADS[:1], config=config)[0]
    assert ok.status is EvaluationStatus.PASSED, ok.log
    assert ok.solforge.compile_reports and ok.solforge.compile_reports[0].target == "sm_90a"
    assert ok.solforge.compile_reports[0].registers_per_thread > 0
    # 64 warps x 32 threads is above the 1024 threads a block may have on sm_90a: refused
    # with the limit named, and the solution is never run.
    wide = solution("honest_rmsnorm_triton.py", "triton")
    wide.sources[0].content = wide.sources[0].content.replace("BLOCK=triton.next_power_of_2(cols))",
                                                              "BLOCK=triton.next_power_of_2(cols), num_warps=64)")
    assert "num_warps=64" in wide.sources[0].content
    ev = evaluate(DEFN, WORKLOADS[:1], wide, "cpu", config)[0].evaluation
    assert ev.status is EvaluationStatus.COMPILE_ERROR and ev.log.startswith("sm_90a: "), ev.log
    assert ev.solforge.correctness_trials == 0
