"""`evaluate` a solution on workloads, and `run_bench` baselines plus solutions with SOL reports.

The flow of one solution: static guards in this process (any finding: REWARD_HACK on
every workload, nothing executed); then the judge (`judge`) starts a fresh process for
the solution, builds it there, and per workload runs the correctness calls and the
timing, deciding every verdict itself. A failed workload ends that process; the next
workload starts a fresh one. A build failure (COMPILE_ERROR) or a reward hack found at
build time applies to every workload.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from solforge.bench.build import compile_solution, eager_solution
from solforge.bench.config import BenchConfig
from solforge.bench.judge import WorkloadOutcome, outside_timing, run_judged
from solforge.bench.timing import flush_bytes_for
from solforge.hardware import Device
from solforge.roofline import attach_sol, baseline_latencies
from solforge.spec import (
    Correctness,
    Definition,
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    Performance,
    Solution,
    SpecError,
    Trace,
    Workload,
    check_solution,
    check_workload,
)

PASSED = EvaluationStatus.PASSED


@dataclass
class BenchResult:
    """The outcome of `run_bench`."""

    device: Device
    baselines: dict[str, list[Trace]] = field(default_factory=dict)  # "eager", "compile" -> one trace per workload
    solutions: dict[str, list[Trace]] = field(default_factory=dict)  # solution name -> one trace per workload
    failed: list[str] = field(default_factory=list)  # solutions not PASSED on every workload


@functools.lru_cache(maxsize=1)
def _libs() -> dict[str, str]:
    """Versions for `Environment.libs`: python, torch, triton, numba, solforge, CUDA."""
    libs = {"python": platform.python_version()}
    for name in ("torch", "triton", "numba", "solforge"):
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    import torch

    if torch.version.cuda:
        libs["cuda"] = torch.version.cuda
    return libs


def _tracer(definition: Definition, solution: Solution, device: Device) -> Callable[..., Trace]:
    """A function that makes one workload's Trace from the judge's outcome."""
    environment = Environment(hardware=device.name, libs=dict(_libs()))

    def emit(workload: Workload, status: EvaluationStatus, log: str, ext: dict[str, Any]) -> Trace:
        outcome: WorkloadOutcome | None = ext.pop("outcome", None)
        correctness = performance = None
        extension: dict[str, Any] = {"guard_findings": ext.get("guard_findings", [])}
        if ext.get("skipped"):
            extension["skipped"] = ext["skipped"]
        if status is EvaluationStatus.INCORRECT_NUMERICAL:
            correctness = Correctness(max_absolute_error=ext.get("max_absolute_error", 0.0),
                                      max_relative_error=ext.get("max_relative_error", 0.0))
        if outcome is not None:
            correctness = Correctness(max_absolute_error=outcome.max_absolute_error,
                                      max_relative_error=outcome.max_relative_error)
            performance = Performance(latency_ms=outcome.timing.median_ms)
            extension.update(timing=outcome.timing, warnings=outcome.warnings, clocks=outcome.clocks,
                             correctness_trials=outcome.calls, reference_precision=outcome.reference_precision)
        return Trace(
            definition=definition.name,
            workload=workload,
            solution=solution.name,
            evaluation=Evaluation(
                status=status,
                environment=environment,
                timestamp=datetime.now(timezone.utc).isoformat(),
                log=log,
                correctness=correctness,
                performance=performance,
                solforge=EvaluationExtension(device=device.canonical, held_out=workload.held_out, **extension),
            ),
        )

    return emit


def evaluate(
    definition: Definition,
    workloads: list[Workload],
    solution: Solution,
    device: str | Device | None = None,
    config: BenchConfig | None = None,
    cutoff_ms: Mapping[str, float] | None = None,
) -> list[Trace]:
    """Evaluate `solution` on each workload: one Trace per workload, in order.

    `cutoff_ms` (workload uuid -> latency, ms; e.g. 3x the search's best): timing on the
    host stops early once its median is past it (`timing.cut`; the checks of timed
    outputs still run). Correctness is never cut.

    `device` ('cpu', 'cuda', 'cuda:N' or a Device; default `config.device`). Status
    PASSED carries `performance.latency_ms` (the median, ms) and the timing statistics
    with every sample in `evaluation.solforge.timing`; failures carry the log, and for
    INCORRECT_NUMERICAL the maximum absolute and relative errors. SOL reports and
    baseline latencies are filled by `run_bench`, not here.
    Raises SpecError for a workload that does not fit the definition or bad problem
    data, ChildStartError when no process can be started.
    """
    return _evaluate(definition, workloads, solution, device, config or BenchConfig(), trusted=False,
                     cutoff_ms=cutoff_ms)


def _evaluate(definition: Definition, workloads: list[Workload], solution: Solution, device: str | Device | None,
              config: BenchConfig, trusted: bool, cutoff_ms: Mapping[str, float] | None = None) -> list[Trace]:
    dev = device if isinstance(device, Device) else Device.parse(device or config.device)
    # built ahead, another evaluation may be timing meanwhile: this process's own checks wait for it
    with outside_timing() if config.build_ahead else contextlib.nullcontext():
        for wl in workloads:
            problems = check_workload(definition, wl)
            if problems:
                raise SpecError(f"workload {wl.uuid}: {problems[0]}")
        emit = _tracer(definition, solution, dev)
        findings = []
        if not trusted:
            from solforge.bench.guards import static_findings

            findings = static_findings(solution, definition)
        problems = check_solution(definition, solution)
    if findings:
        log = "static guard: " + "; ".join(f.message for f in findings)
        return [emit(wl, EvaluationStatus.REWARD_HACK, log, {"guard_findings": findings}) for wl in workloads]
    if problems:
        return [emit(wl, EvaluationStatus.COMPILE_ERROR, problems[0], {}) for wl in workloads]
    reports: dict[str, Any] = {}
    target = None if trusted else target_of(config, dev)
    if target is not None:
        from solforge.bench.crosscompile import CrossCompileError, reports_for_workload
        from solforge.bench.languages import plugin_for

        try:
            compiled = plugin_for(solution.spec.language).cross_compile(solution, definition, workloads, target)
        except CrossCompileError as exc:  # rejected before it costs device time
            return [emit(wl, EvaluationStatus.COMPILE_ERROR, f"{target}: {exc.message}", {}) for wl in workloads]
        if compiled is not None:
            reports = {wl.uuid: reports_for_workload(compiled, wl.uuid) for wl in workloads}
    flush = flush_bytes_for(config.flush_bytes, dev.cache_bytes)
    traces = run_judged(definition, solution, workloads, dev.canonical, config, trusted, flush, emit, cutoff_ms)
    for trace in traces:
        if trace.evaluation is not None and reports.get(trace.workload.uuid):
            trace.evaluation.solforge.compile_reports = reports[trace.workload.uuid]
    return traces


def target_of(config: BenchConfig, device: Device) -> str | None:
    """The GPU target a solution is cross-compiled for before it runs: `config.target`,
    else the CUDA device's own ('sm_90a' for compute capability 9.0), else None."""
    if config.target is not None:
        return config.target
    cc = getattr(device, "compute_capability", None)
    if device.kind.name != "cuda" or not cc:
        return None
    from solforge.hardware.targets import TARGETS

    name = f"sm_{cc[0]}{cc[1]}" + ("a" if cc[0] >= 9 else "")
    return name if name in TARGETS else None


# -- run_bench -------------------------------------------------------------------------------


BASELINES = {"eager": eager_solution, "compile": compile_solution}


def run_bench(
    definition: Definition,
    workloads: list[Workload],
    solutions: list[Solution],
    device: str | Device | None = None,
    baselines: tuple[str, ...] = ("eager", "compile"),
    config: BenchConfig | None = None,
    on_trace: Callable[[str, Trace], None] | None = None,
) -> BenchResult:
    """Evaluate the baselines, then every solution, on every workload, with SOL reports.

    Baselines: "eager" is the definition's reference as a pytorch solution, "compile"
    its `torch.compile`; both are trusted (no reward-hack guards). Every PASSED trace
    with a real measurement gets `evaluation.solforge.sol` from
    `roofline.sol_report(work, latency, T_b = eager median, datasheet, calibrated)`,
    `performance.reference_latency_ms` and `speedup_factor` (eager / latency),
    `baseline_latency_ms` and `speedup_vs_compile`. `on_trace(name, trace)` is called
    with each trace (SOL report attached) as it lands, baselines first. Raises SpecError
    for an unknown baseline name or two solutions of the same name.
    """
    config = config or BenchConfig()
    dev = device if isinstance(device, Device) else Device.parse(device or config.device)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise SpecError(f"baselines: unknown '{unknown[0]}' (expected one of {', '.join(BASELINES)})")
    names = [s.name for s in solutions]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise SpecError(f"solutions: two solutions are named '{duplicate}'")
    result = BenchResult(device=dev)
    for name in baselines:
        result.baselines[name] = _evaluate(definition, workloads, BASELINES[name](definition), dev, config,
                                           trusted=True)
    latencies = baseline_latencies(result.baselines)
    for name, traces in result.baselines.items():
        attach_sol(definition, traces, latencies, dev)
        for trace in traces if on_trace else ():
            on_trace(name, trace)
    for solution in solutions:
        traces = result.solutions[solution.name] = evaluate(definition, workloads, solution, dev, config)
        attach_sol(definition, traces, latencies, dev)
        for trace in traces if on_trace else ():
            on_trace(solution.name, trace)
    result.failed = [name for name, traces in result.solutions.items()
                     if any(t.evaluation is None or t.evaluation.status is not PASSED for t in traces)]
    return result
