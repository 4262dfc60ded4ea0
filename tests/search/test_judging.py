"""Judging fast without judging wrong (issue 15): a candidate that only renames a local
variable is a dedup hit and is never evaluated; the cut-off is 3x the best and never
cuts a candidate faster than the best; a cut or unstable timing is never selected as a
sound one; the evolve table has a torch.compile column on the CPU, with a footnote
where there is no figure; the CPU search workloads are chosen by caps."""

from __future__ import annotations

import pytest
from search_support import FAST_BENCH, ScriptedBackend, ScriptedEvaluator, small_problem

from solforge.knowledge import seeds_for
from solforge.problems import load_builtin
from solforge.search import AddOutcome, Archive, Candidate, OperatorSetup, build_operators
from solforge.search.config import EvolveConfig
from solforge.search.controller import Controller, cutoff_ms
from solforge.search.dedup import normalized_hash
from solforge.search.fitness import Verdict, judge
from solforge.search.workloads import choose_workloads, spread
from solforge.spec import SourceFile, TimingStats

ROWS = "numba/rmsnorm_rows"


def _controller(tmp_path, evaluator, operators, **config):
    definition, workloads = small_problem()
    search = [w for w in workloads if not w.held_out]
    config = EvolveConfig(device="cpu", bench=FAST_BENCH, operators=tuple(operators), lockstep=True, **config)
    archive = Archive.create(definition.name, device="cpu", strategy="lineage", operators=list(operators), seed=0,
                             runs_root=tmp_path, run_id="run")
    kernels = {k.name: k for k in seeds_for(definition, "numba")}
    controller = Controller(definition, search, [w for w in workloads if w.held_out], config, archive, evaluator,
                            operators, kernels)
    controller.restore()
    return controller, archive


class _Scripted:
    """Proposes the candidates it is given, in order (an agent's hand-written edits: no parameters)."""

    name = "scripted"

    def __init__(self, candidates):
        self.queue = list(candidates)

    def propose(self, context):
        return self.queue.pop(0) if self.queue else None


def _renamed(solution, old: str, new: str):
    """The solution with one local variable renamed and a comment edited: the same kernel."""
    src = solution.sources[0]
    content = src.content.replace(old, new).replace("# NaN: keep it", "# a NaN stays")
    assert content != src.content
    return solution.model_copy(update={"name": solution.name + "-renamed",
                                       "sources": [SourceFile(path=src.path, content=content)]})


def test_a_renamed_variable_duplicate_is_a_dedup_hit_and_is_not_evaluated(tmp_path):
    definition, _ = small_problem()
    kernel = next(k for k in seeds_for(definition, "numba") if k.name == ROWS)
    original = kernel.to_solution(definition)
    renamed = _renamed(original, "mean_sq", "avg_square")
    changed = kernel.to_solution(definition, {"FASTMATH": True})
    assert normalized_hash(original) == normalized_hash(renamed) != normalized_hash(changed)
    operator = _Scripted([Candidate(s, "scripted", kernel.name) for s in (original, renamed, changed)])
    evaluator = ScriptedEvaluator(definition)
    controller, archive = _controller(tmp_path, evaluator, {"scripted": operator}, max_candidates=3)
    controller.run_search()
    assert archive.dedup_counts()[AddOutcome.duplicate_normalized] == 1
    kept = [c.solution.name for c in archive.candidates() if c.operator == "scripted"]
    assert kept == [original.name, changed.name]
    evaluated = {r.solution.name for r in evaluator.backend.requests}
    assert original.name in evaluated and renamed.name not in evaluated  # the renamed twin was never evaluated
    # --no-cache turns the normalized key off: the twin is then evaluated like any new source
    operator = _Scripted([Candidate(s, "scripted", kernel.name) for s in (original, renamed)])
    controller, archive = _controller(tmp_path / "nocache", ScriptedEvaluator(definition), {"scripted": operator},
                                      max_candidates=2, cache=False)
    controller.run_search()
    assert len(archive.evaluated_ids()) == 2 and sum(archive.dedup_counts().values()) == 0


class _CuttingBackend(ScriptedBackend):
    """Times like the harness's cut-off: a workload whose latency is past the request's
    cut-off is marked cut; the latency is the scripted one."""

    def evaluate(self, request, device, baselines):
        traces = super().evaluate(request, device, baselines)
        for t in traces:
            latency = t.evaluation.performance.latency_ms
            cut = request.cutoff_ms is not None and latency > request.cutoff_ms[t.workload.uuid]
            t.evaluation.solforge.timing = TimingStats(method="scripted", median_ms=latency, iqr_ms=0.0,
                                                       min_ms=latency, count=3, cut=cut)
        return traces


def test_the_cut_off_is_three_times_the_best_and_never_cuts_a_faster_candidate(tmp_path):
    definition, _ = small_problem()
    evaluator = ScriptedEvaluator(definition)
    evaluator.backend = _CuttingBackend(definition)
    setup = OperatorSetup(definition=definition, device="cpu", language="numba", search_workloads=(),
                          evaluate=lambda s: [])
    controller, archive = _controller(tmp_path, evaluator, build_operators(("tune", "seed"), setup),
                                      max_candidates=20)
    controller.run_search()
    requests = evaluator.backend.requests
    assert requests[0].cutoff_ms is None  # nothing to compare with yet
    assert any(r.cutoff_ms for r in requests)
    best_latency: dict[str, float] = {}
    for request, c in zip(requests, [c for c in archive.candidates() if c.fitness is not None]):
        round_ = archive.evaluations(c.id)[0]
        latencies = {w.workload_uuid: w.latency_ms for w in round_.workloads}
        if request.cutoff_ms:
            for uuid, cut in request.cutoff_ms.items():
                assert cut >= 3 * best_latency[uuid] * (1 - 1e-12)  # never below 3x the best so far
        faster = best_latency and all(latencies[u] <= best_latency[u] for u in latencies)
        if faster:
            assert round_.verdict != Verdict.cut.value, f"#{c.id} is faster than the best and was cut"
        if round_.verdict == Verdict.scored.value:
            for u, ms in latencies.items():
                best_latency[u] = min(best_latency.get(u, ms), ms)
    # cut candidates are kept, never committed
    cut_ids = {c.id for c in archive.candidates() if c.verdict == Verdict.cut.value}
    assert not cut_ids & {e.candidate_id for e in archive.lineage()}


def test_the_cut_off_is_per_workload_and_skips_workloads_without_a_latency():
    from search_support import scripted_trace

    from solforge.search import EvaluationRound, WorkloadEvaluation

    definition, workloads = small_problem()
    sol = seeds_for(definition, "numba")[0].to_solution(definition)
    trace = scripted_trace(definition, sol, workloads[0], 0.5)
    evals = (WorkloadEvaluation("a", trace.evaluation.status, 0.2, None, None, trace),
             WorkloadEvaluation("b", trace.evaluation.status, None, None, None, trace))
    best = EvaluationRound(1, 1, 0, False, 0.5, {}, evals, 0.0)
    assert cutoff_ms(best, 3.0) == {"a": pytest.approx(0.6)}
    assert cutoff_ms(None, 3.0) is None


def _trace_with(timing: TimingStats | None, score: float = 0.6):
    from search_support import scripted_trace

    definition, workloads = small_problem()
    kernel = seeds_for(definition, "numba")[0]
    t = scripted_trace(definition, kernel.to_solution(definition), workloads[0], score)
    t.evaluation.solforge.timing = timing
    return t


def test_a_cut_or_unstable_timing_is_never_sound():
    stats = dict(method="x", median_ms=1.0, iqr_ms=0.1, min_ms=0.9, count=5)
    assert judge([_trace_with(TimingStats(**stats))]).verdict is Verdict.scored
    cut = judge([_trace_with(TimingStats(**stats, cut=True))])
    unstable = judge([_trace_with(TimingStats(**stats, unstable=True))])
    assert cut.verdict is Verdict.cut and "smoke t=1" in cut.reason and cut.selection_value == 0
    assert unstable.verdict is Verdict.unstable and unstable.selection_value == 0
    assert cut.value == pytest.approx(0.6)  # the figure is kept, for the tuner, but not selected on


def test_the_evolve_table_has_a_compile_column_with_a_footnote_where_compile_has_no_figure(tmp_path):
    from solforge.cli.evolve import summary_table
    from solforge.search.evolve import EvolveResult, WorkloadRow

    rows = [WorkloadRow("decode b=64", False, 0.5, 0.3, 0.2, 0.07, 0.35, "PASSED", floor_ms=0.002),
            WorkloadRow("prefill t=512", False, 2.0, None, 1.5, 0.55, 0.37, "PASSED", floor_ms=0.002,
                        compile_failure="COMPILE_ERROR: inductor: no C++ compiler")]
    result = EvolveResult("r", tmp_path, 2, 0.5, 1, 0.6, 1, True, 1.0, rows, {}, "2 candidates evaluated",
                          sol_source="calibrated")
    table, notes = summary_table(result)
    headers = [c.header for c in table.columns]
    assert headers[3:8] == ["eager", "compile", "best", "SOL (calibrated)", "floor"]
    cells = list(table.columns[4].cells)
    assert cells == ["0.3000", "[1]"] and notes == ["[1] torch.compile: COMPILE_ERROR: inductor: no C++ compiler"]


def test_a_cpu_run_times_torch_compile_by_default(tmp_path):
    from solforge.search.evolve import execute, prepare

    definition, workloads = small_problem()
    plan = prepare(definition, workloads, EvolveConfig(device="cpu", max_candidates=1, runs_root=tmp_path,
                                                       bench=FAST_BENCH, operators=("seed",), workloads="smoke"))
    asked = []

    class _Recording(ScriptedEvaluator):
        def measure_baselines(self, workloads, names):
            asked.append(tuple(names))
            return super().measure_baselines(workloads, names)

    plan.evaluator = _Recording(definition)
    execute(plan)
    assert asked == [("eager", "compile")]


def test_cpu_search_workloads_are_chosen_by_memory_and_time_caps():
    definition, workloads = load_builtin("rmsnorm_h4096")
    choice = choose_workloads(definition, workloads, "cpu", max_bytes=64 << 20, max_sol_ms=1e9, min_sol_ms=0.0)
    assert choice.rule == "cpu caps" and len(choice.search) == 3
    assert not any(w.smoke or w.held_out for w in choice.search)
    from solforge.roofline import count_work

    sizes = [count_work(definition, w).bytes_moved for w in choice.search]
    assert max(sizes) <= 64 << 20 and sizes == sorted(sizes)
    within = [w for w in workloads if not w.smoke and not w.held_out and count_work(definition, w).bytes_moved
              <= 64 << 20]
    assert min(sizes) == min(count_work(definition, w).bytes_moved for w in within)  # the range's two ends
    assert max(sizes) == max(count_work(definition, w).bytes_moved for w in within)
    smoke = choose_workloads(definition, workloads, "cpu", selection="smoke")
    assert smoke.rule == "smoke" and all(w.smoke for w in smoke.search)
    tiny, _ = small_problem()  # only smoke workloads: the caps choose nothing, and say so
    fallback = choose_workloads(tiny, small_problem()[1], "cpu")
    assert fallback.rule == "smoke" and "only smoke workloads" in fallback.note


def test_given_workloads_are_searched_uncapped_on_any_device():
    definition, workloads = load_builtin("rmsnorm_h4096")
    real = [w for w in workloads if not w.smoke and not w.held_out]
    for device in ("cpu", "cuda"):
        choice = choose_workloads(definition, workloads, device, selection="given")
        assert choice.rule == "given" and [w.uuid for w in choice.search] == [w.uuid for w in real]
        assert choice.held_out == [w for w in workloads if w.held_out]  # every held-out one, of any size
    with pytest.raises(ValueError, match="given"):
        choose_workloads(definition, [w for w in workloads if w.smoke or w.held_out], "cpu", selection="given")


def test_spread_takes_the_ends_then_the_middles():
    sizes = {"a": 1, "b": 10, "c": 100, "d": 1000, "e": 10000}
    assert spread(sizes, 3) == ["a", "c", "e"]
    assert spread(sizes, 2) == ["a", "e"] and spread({"x": 5}, 3) == ["x"]


@pytest.mark.slow
def test_the_harness_never_cuts_the_best_itself_at_three_times_its_latency(cache_dir):
    """The real harness: the seed kernel timed again with a cut-off of 3x its own median
    is not cut (it is as fast as the best, because it is the best) unless the samples it
    took this time were themselves past the cut-off (a machine whose load tripled the same
    kernel's time): the harness cuts on what it measured, never on a guess."""
    from solforge.bench import evaluate

    definition, workloads = small_problem()
    search = [w for w in workloads if not w.held_out]
    solution = seeds_for(definition, "numba")[0].to_solution(definition)
    first = evaluate(definition, search, solution, "cpu", FAST_BENCH)
    cut = {t.workload.uuid: 3 * t.evaluation.performance.latency_ms for t in first}
    again = evaluate(definition, search, solution, "cpu", FAST_BENCH, cutoff_ms=cut)
    assert [t.evaluation.status.value for t in again] == ["PASSED", "PASSED"]
    for t in again:
        timing = t.evaluation.solforge.timing
        if timing.cut:
            raw = sorted(timing.raw_samples_ms)  # the judge's own readings, overhead included
            assert raw and raw[len(raw) // 2] > cut[t.workload.uuid], timing


def test_the_evolve_table_shows_the_stability_of_each_figure(tmp_path):
    """Each timed figure carries its spread (IQR / median); one the harness marked unstable
    is flagged and footnoted, so a noisy figure is never read as a sound one."""
    from solforge.cli.evolve import summary_table
    import dataclasses

    from solforge.search.evolve import EvolveResult, WorkloadRow

    rows = [WorkloadRow("decode b=64", False, 0.5, 0.3, 0.2, 0.07, 0.35, "PASSED", floor_ms=0.002,
                        eager_spread=(0.031, False), compile_spread=(0.5, True), best_spread=(0.004, False)),
            WorkloadRow("prefill t=512", False, 2.0, None, 1.5, 0.55, 0.37, "PASSED",
                        compile_failure="not measured (--baselines)")]
    result = EvolveResult("r", tmp_path, 2, 0.5, 1, 0.6, 1, True, 1.0, rows, {}, "2 candidates evaluated")
    table, notes = summary_table(result)
    eager, compiled, best = (list(table.columns[i].cells) for i in (3, 4, 5))
    assert eager == ["0.5000 ±3%", "2.0000"] and best == ["0.2000 ±0%", "1.5000"]
    assert compiled == ["0.3000 ±50%!", "[1]"]
    assert notes[-1].startswith("±: the spread of the timed samples (IQR / median); !: unstable")

    steady = dataclasses.replace(rows[0], compile_spread=(0.02, False))
    _, notes = summary_table(dataclasses.replace(result, rows=[steady]))
    assert notes == ["±: the spread of the timed samples (IQR / median)"]  # no '!' note without an unstable figure


def test_the_summary_rows_carry_the_spread_of_the_baselines_and_of_the_best(tmp_path):
    from solforge.roofline.attach import timing_spread
    from solforge.search.evolve import summary_rows

    definition, _ = small_problem()
    stats = TimingStats(method="x", median_ms=2.0, iqr_ms=0.5, min_ms=1.5, count=9, unstable=True)
    trace = _trace_with(stats)
    wl = trace.workload
    assert timing_spread(trace) == (0.25, True)
    archive = Archive.create(definition.name, device="cpu", strategy="lineage", operators=["seed"], seed=0,
                             runs_root=tmp_path, run_id="run")
    added = archive.add_candidate(seeds_for(definition, "numba")[0].to_solution(definition),
                                  operator="seed", family=ROWS)
    archive.start_evaluation(added.candidate.id)
    archive.record_evaluation(added.candidate.id, [trace])
    (row,) = summary_rows(archive, added.candidate.id, [wl], {"eager": {wl.uuid: 3.0}}, {},
                          {"eager": {wl.uuid: [0.1, False]}})
    assert row.eager_spread == (0.1, False) and row.best_spread == (0.25, True) and row.compile_spread is None
    (bare,) = summary_rows(archive, added.candidate.id, [wl], {"eager": {wl.uuid: 3.0}})
    assert bare.eager_spread is None  # a run recorded before spreads were kept shows the figure alone


@pytest.mark.parametrize("cut", [True, False])
def test_first_timings_are_screenings_and_a_would_be_best_is_retimed_with_the_full_budget(tmp_path, cut):
    """Without --no-cut a candidate's first timing has the screening budget; its
    re-timing as a would-be new best (the figure it is accepted on) has the full one.
    --no-cut times everything with the full budget."""
    definition, _ = small_problem()
    evaluator = ScriptedEvaluator(definition)
    setup = OperatorSetup(definition=definition, device="cpu", language="numba", search_workloads=(),
                          evaluate=lambda s: [])
    controller, archive = _controller(tmp_path, evaluator, build_operators(("tune", "seed"), setup),
                                      max_candidates=8, cut=cut)
    controller.run_search()
    controller.held_out_gate()
    search = [r for r in evaluator.backend.requests if not any(w.held_out for w in r.workloads)]
    seen: set[str] = set()
    retimes = 0
    for request in search:
        again = request.solution.sources[0].content in seen
        seen.add(request.solution.sources[0].content)
        retimes += again
        assert request.screening is (cut and not again), (request.solution.name, again)
    assert retimes >= 1  # the first candidate at least was a would-be new best
    held_out = [r for r in evaluator.backend.requests if any(w.held_out for w in r.workloads)]
    assert held_out and not any(r.screening for r in held_out)


def test_the_screening_budget_is_a_third_of_the_full_one_and_the_harness_keeps_to_it():
    from solforge.bench import BenchConfig, evaluate
    from solforge.bench.config import CPU_TIMING, screening_budget

    screen = screening_budget(CPU_TIMING)
    assert screen.max_iters == CPU_TIMING.max_iters // 3 and screen.min_iters == CPU_TIMING.min_iters
    assert screen.max_time_s == pytest.approx(CPU_TIMING.max_time_s / 3)
    tiny = CPU_TIMING.model_copy(update={"max_iters": 4, "min_iters": 3})
    assert screening_budget(tiny).max_iters == 3  # never below the minimum
    definition, workloads = small_problem()
    kernel = next(k for k in seeds_for(definition, "numba") if k.name == ROWS)
    config = BenchConfig(device="cpu").screening("cpu")
    traces = evaluate(definition, [workloads[0]], kernel.to_solution(definition), "cpu", config)
    timing = traces[0].evaluation.solforge.timing
    assert traces[0].evaluation.status.value == "PASSED", traces[0].evaluation.log
    assert timing.count <= screen.max_iters * (1 + timing.reruns)
