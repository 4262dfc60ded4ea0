"""`evaluate` a solution on workloads, and `run_bench` baselines plus solutions with SOL reports.

The flow of one solution: static guards in this process (any finding: REWARD_HACK on
every workload, nothing executed); then, in the device's worker, the build (once per
worker), and per workload the correctness trials and the timing, each one request
under its own hard limit. A failed workload recycles the worker; the next workload
rebuilds in a fresh one. A build failure (COMPILE_ERROR) or a reward hack found at
build time applies to every workload.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solforge.bench.build import compile_solution, eager_solution
from solforge.bench.config import BenchConfig
from solforge.bench.sol import attach_sol, baseline_latencies, detect_device, normalize_device
from solforge.bench.timing import flush_bytes_for
from solforge.bench.worker import LOG_NAME, WorkerLost, device_lock, get_worker, retire_worker
from solforge.spec import (
    Correctness,
    Definition,
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    GuardFinding,
    Performance,
    Solution,
    SpecError,
    TimingStats,
    Trace,
    Workload,
    check_solution,
    check_workload,
)

if TYPE_CHECKING:
    from solforge.hardware import DetectedDevice

PASSED = EvaluationStatus.PASSED
_LOG_TAIL_CHARS = 3000


@dataclass
class BenchResult:
    """The outcome of `run_bench`."""

    device: DetectedDevice
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


def _log_tail(workdir: Path) -> str:
    try:
        text = (workdir / LOG_NAME).read_text(errors="replace")
    except OSError:
        return ""
    return text[-_LOG_TAIL_CHARS:].strip()


@dataclass
class _Run:
    """One solution's evaluation in progress: what every trace of it shares."""

    definition: Definition
    solution: Solution
    device: str
    config: BenchConfig
    environment: Environment
    trusted: bool
    workdir: Path

    def trace(self, workload: Workload, status: EvaluationStatus, log: str = "", **ext: Any) -> Trace:
        correctness = ext.pop("correctness", None)
        performance = ext.pop("performance", None)
        return Trace(
            definition=self.definition.name,
            workload=workload,
            solution=self.solution.name,
            evaluation=Evaluation(
                status=status,
                environment=self.environment,
                timestamp=datetime.now(timezone.utc).isoformat(),
                log=log,
                correctness=correctness,
                performance=performance,
                solforge=EvaluationExtension(device=self.device, held_out=workload.held_out, **ext),
            ),
        )

    def failure(self, workload: Workload, reply: dict[str, Any], **ext: Any) -> Trace:
        status = EvaluationStatus(reply["status"])
        findings = [GuardFinding.model_validate(f) for f in reply.get("findings", [])]
        correctness = None
        if status is EvaluationStatus.INCORRECT_NUMERICAL:
            correctness = Correctness(max_absolute_error=reply.get("max_absolute_error", 0.0),
                                      max_relative_error=reply.get("max_relative_error", 0.0))
        return self.trace(workload, status, reply["log"], correctness=correctness, guard_findings=findings,
                          reference_precision=reply.get("reference_precision"), **ext)


def evaluate(
    definition: Definition,
    workloads: list[Workload],
    solution: Solution,
    device: str | None = None,
    config: BenchConfig | None = None,
) -> list[Trace]:
    """Evaluate `solution` on each workload: one Trace per workload, in order.

    `device` ('cpu', 'cuda', 'cuda:N'; default `config.device`). Status PASSED carries
    `performance.latency_ms` (the median, ms) and the timing statistics with every
    sample in `evaluation.solforge.timing`; failures carry the log, and for
    INCORRECT_NUMERICAL the maximum absolute and relative errors. SOL reports and
    baseline latencies are filled by `run_bench`, not here.
    Raises SpecError for a workload that does not fit the definition or bad input data,
    WorkerStartError when no worker can be started.
    """
    return _evaluate(definition, workloads, solution, device, config or BenchConfig(), trusted=False)


def _evaluate(
    definition: Definition, workloads: list[Workload], solution: Solution, device: str | None,
    config: BenchConfig, trusted: bool,
) -> list[Trace]:
    device = normalize_device(device or config.device)
    for wl in workloads:
        problems = check_workload(definition, wl)
        if problems:
            raise SpecError(f"workload {wl.uuid}: {problems[0]}")
    detected = detect_device(device)
    run = _Run(definition, solution, device, config, Environment(hardware=detected.name, libs=dict(_libs())), trusted,
               Path(tempfile.mkdtemp(prefix="solforge-")))
    try:
        with device_lock(device):
            return _evaluate_in(run, workloads, detected)
    finally:
        shutil.rmtree(run.workdir, ignore_errors=True)


def _evaluate_in(run: _Run, workloads: list[Workload], detected: DetectedDevice) -> list[Trace]:
    definition, solution, config, device = run.definition, run.solution, run.config, run.device
    if not run.trusted:
        from solforge.bench.guards import static_findings

        findings = static_findings(solution, definition)
        if findings:
            log = "static guard: " + "; ".join(f.message for f in findings)
            return [run.trace(wl, EvaluationStatus.REWARD_HACK, log, guard_findings=findings) for wl in workloads]
    problems = check_solution(definition, solution)
    if problems:
        return [run.trace(wl, EvaluationStatus.COMPILE_ERROR, problems[0]) for wl in workloads]
    budget = config.timing_for(device)
    common = {"seed": config.seed, "dataset_root": str(config.dataset_root) if config.dataset_root else None}
    load = {"kind": "load", "definition": definition.model_dump(mode="json"),
            "solution": solution.model_dump(mode="json"), "workdir": str(run.workdir), "trusted": run.trusted,
            "build_timeout_s": config.build_timeout_s}
    traces: list[Trace] = []
    loaded = False
    rest: list[Trace] | None = None  # set when the build decides every remaining workload
    for wl in workloads:
        worker = get_worker(device, config.startup_timeout_s)
        steps = [] if loaded else [(load, config.build_timeout_s)]
        steps += [
            ({"kind": "check", "workload": wl.model_dump(mode="json"), "trials": config.trials, **common},
             config.timeout_s),
            ({"kind": "time", "workload": wl.model_dump(mode="json"), "budget": budget.model_dump(),
              "flush_bytes": flush_bytes_for(config.flush_bytes, detected.l2_bytes),
              "checks": config.timing_checks, "cuda_graph": config.cuda_graph, "lock_clocks": config.lock_clocks,
              **common},
             config.timeout_s + budget.warmup_s + budget.max_time_s),
        ]
        replies: dict[str, dict[str, Any]] = {}
        trace: Trace | None = None
        for message, limit in steps:
            try:
                reply = worker.request(message, limit)
            except WorkerLost as lost:
                retire_worker(device)
                loaded = False
                tail = _log_tail(run.workdir)
                trace = run.trace(wl, lost.status, f"{message['kind']}: {lost.message}" + (f"\n{tail}" if tail else ""))
                break
            if reply["kind"] == "spec_error":
                retire_worker(device)
                raise SpecError(reply["message"])
            if reply["kind"] == "failed":
                retire_worker(device)
                loaded = False
                trace = run.failure(wl, reply, correctness_trials=replies.get("check", {}).get("calls", 0))
                if message["kind"] == "load":  # a build failure is every workload's
                    rest = [run.failure(w, reply) for w in workloads[len(traces):]]
                break
            replies[message["kind"]] = reply
            if message["kind"] == "load":
                loaded = True
                if not reply["runnable"]:  # CUDA C++ on the CPU: built, cannot run
                    rest = [run.trace(w, EvaluationStatus.RUNTIME_ERROR, reply["log"]) for w in workloads[len(traces):]]
                    break
        if rest is not None:
            traces += rest
            break
        traces.append(trace if trace is not None else _passed(run, wl, replies))
    if loaded:
        try:
            get_worker(device, config.startup_timeout_s).request({"kind": "unload"}, 60.0)
        except WorkerLost:
            retire_worker(device)
    return traces


def _passed(run: _Run, wl: Workload, replies: dict[str, dict[str, Any]]) -> Trace:
    check, timed = replies["check"], replies["time"]
    stats = TimingStats.model_validate(timed["stats"])
    return run.trace(
        wl,
        PASSED,
        replies.get("load", {}).get("log", ""),
        correctness=Correctness(max_absolute_error=check["max_absolute_error"],
                                max_relative_error=check["max_relative_error"]),
        performance=Performance(latency_ms=stats.median_ms),
        timing=stats,
        warnings=timed["warnings"],
        clocks=timed["clocks"],
        correctness_trials=check["calls"],
        reference_precision=check["reference_precision"],
    )


# -- run_bench -------------------------------------------------------------------------------


BASELINES = {"eager": eager_solution, "compile": compile_solution}


def run_bench(
    definition: Definition,
    workloads: list[Workload],
    solutions: list[Solution],
    device: str | None = None,
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
    device = normalize_device(device or config.device)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise SpecError(f"baselines: unknown '{unknown[0]}' (expected one of {', '.join(BASELINES)})")
    names = [s.name for s in solutions]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise SpecError(f"solutions: two solutions are named '{duplicate}'")
    result = BenchResult(device=detect_device(device))
    for name in baselines:
        result.baselines[name] = _evaluate(definition, workloads, BASELINES[name](definition), device, config,
                                           trusted=True)
    latencies = baseline_latencies(result.baselines)
    for name, traces in result.baselines.items():
        attach_sol(definition, traces, latencies, result.device)
        for trace in traces if on_trace else ():
            on_trace(name, trace)
    for solution in solutions:
        traces = result.solutions[solution.name] = evaluate(definition, workloads, solution, device, config)
        attach_sol(definition, traces, latencies, result.device)
        for trace in traces if on_trace else ():
            on_trace(solution.name, trace)
    result.failed = [name for name, traces in result.solutions.items()
                     if any(t.evaluation is None or t.evaluation.status is not PASSED for t in traces)]
    return result
