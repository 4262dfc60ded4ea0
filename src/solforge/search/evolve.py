"""`evolve()`: one search run from start (or resume) to an exported, held-out-checked winner.

Two steps, so that every mistake is found before anything is measured:
- `prepare(definition, workloads, config, resume)` checks the options, restores a
  resumed run's, splits the workloads, finds the seed kernels, checks that the runs
  root is writable and builds the operators (an unknown LLM provider is refused here).
  It measures nothing and writes nothing but the runs root directory.
- `execute(plan)` calibrates the device when it never was, measures the baselines,
  creates (or reopens) the archive, runs the controller, gates the best candidates on
  the held-out workloads and exports the winner.
`evolve(...)` is both in one call.

The run directory, `<runs_root>/<run-id>/`, holds `archive.sqlite` (every candidate,
evaluation, note and cost) and, when a candidate passes the held-out gate, `winner/`:
the FlashInfer-Trace Solution JSON, its sources as standalone files, and its Traces
(search and held-out) as JSON lines. A new run that fails before its first evaluated
candidate leaves no run directory (`RunFailed` says why). An interrupted run (Ctrl-C, SIGTERM, SIGHUP: see
`interrupt_on_signals`) is marked `interrupted` and raises `RunInterrupted` with its id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from solforge.bench import BenchConfig
from solforge.knowledge import load_seeds, seeds_for
from solforge.search.archive import Archive
from solforge.search.archive_schema import RunInfo, RunStatus
from solforge.search.config import EvolveConfig, check, restore
from solforge.search.controller import Controller, ProgressSnapshot
from solforge.search.evaluator import (
    EvaluationRequest,
    Evaluator,
    HarnessBackend,
    LocalEvaluator,
    RayEvaluator,
    compile_cache_dir,
    compile_cache_env,
    default_device,
    device_kind,
    ensure_ceilings,
    evaluation_devices,
    merge_per_baseline,
)
from solforge.search.operators import Operator, OperatorSetup, build_operators, choose_operators
from solforge.search.workloads import WorkloadChoice, choose_workloads
from solforge.spec import Definition, SpecError, Workload, dump_json, write_jsonl


class RunFailed(Exception):
    """A new run ended before any candidate was evaluated (e.g. the harness failed every
    evaluation); the message says why. Its run directory is removed."""


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C, SIGTERM, SIGHUP). `run_id` is None when it was
    interrupted before its archive existed (nothing to resume)."""

    def __init__(self, signal_number: int = signal.SIGINT, run_id: str | None = None,
                 run_dir: Path | None = None) -> None:  # fmt: skip
        super().__init__(signal_number)
        self.signal_number, self.run_id, self.run_dir = signal_number, run_id, run_dir


@contextlib.contextmanager
def interrupt_on_signals(signals: tuple[str, ...] = ("SIGTERM", "SIGHUP")) -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP (`timeout`, a closed terminal) interrupt the
    main thread as Ctrl-C does: a run then ends marked `interrupted`, resumable. Outside
    the main thread (where Python cannot take signals) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise RunInterrupted(signum)

    taken = [getattr(signal, name) for name in signals if hasattr(signal, name)]
    previous = {s: signal.signal(s, handler) for s in taken}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def seed_language(device: str, compile_only: bool = False) -> str:
    """The language of the seed kernels a search on `device` starts from: numba on the
    CPU, Triton on a GPU and in a compile-only run (which compiles for a GPU target)."""
    return "numba" if device_kind(device) == "cpu" and not compile_only else "triton"


def _check_writable(directory: Path, flag: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise SpecError(f"{flag} {directory}: not writable ({exc.strerror or exc})") from None


def find_run(resume: str | Path, runs_root: Path) -> Path:
    """The run directory of `resume`: a run directory, or a run id under `runs_root`.
    Raises SpecError when there is none."""
    run_dir = Path(resume)
    if not (run_dir / "archive.sqlite").is_file():
        run_dir = Path(runs_root) / str(resume)
    if not run_dir.is_dir():
        raise SpecError(f"--resume {resume}: no such run (looked in {runs_root})")
    return run_dir


@dataclass
class RunPlan:
    """A checked run, ready to execute; nothing measured yet."""

    definition: Definition
    split: WorkloadChoice
    config: EvolveConfig  # resolved: device, operators and bench set; a resumed run's options restored
    language: str
    seed_kernels: dict
    evaluator: Evaluator
    operators: dict[str, Operator]
    resume_dir: Path | None = None
    restored: tuple[str, ...] = ()  # what resume restored, one phrase each, for the user
    notices: tuple[str, ...] = ()  # e.g. an operator left out for want of an LLM


def _no_seed_kernel(definition: Definition, language: str, device: str) -> SpecError:
    have = sorted({k.op_type for k in load_seeds(language)})
    return SpecError(f"definition '{definition.name}' (op_type '{definition.op_type}'): the knowledge base has no "
                     f"{language} seed kernel for it, so a search on {device} has nothing to start from; "
                     f"op types with one: {', '.join(have)}")


def prepare(definition: Definition, workloads: list[Workload], config: EvolveConfig,
            resume: str | Path | None = None) -> RunPlan:  # fmt: skip
    """Check everything a run needs without measuring anything; see the module docstring.

    Raises SpecError, one line naming the flag or file, for: an option out of range, an
    unknown run or one of another problem, a device this machine lacks, no search
    workloads, no seed kernel for the op type on this device (listing the op types that
    have one), an unwritable runs root or run directory, an unknown or unbuildable operator.
    """
    resume_dir, restored = None, []
    if resume is not None:
        resume_dir = find_run(resume, config.runs_root)
        with Archive.open(resume_dir, read_only=True) as ro:
            run: RunInfo = ro.run
        if run.problem != definition.name:
            raise SpecError(f"--resume {resume}: that run is of '{run.problem}', not '{definition.name}'")
        config, restored = restore(config, run)
    check(config, resuming=resume is not None)
    device = config.device or ("cpu" if config.compile_only else default_device())
    bench = config.bench or BenchConfig(device=device, dataset_root=config.dataset_root)
    devices = ["cpu"] if config.compile_only else evaluation_devices(device)
    # a compile-only run compiles for a GPU: the GPU's search workloads
    split = choose_workloads(definition, workloads, "cuda" if config.compile_only else device, config.workloads)
    if resume_dir is not None:
        split = _resumed_workloads(resume_dir, split, workloads)
    if not split.search:
        raise SpecError(f"definition '{definition.name}': no search workloads")
    language = seed_language(device, config.compile_only)
    kernels = {k.name: k for k in seeds_for(definition, language)}
    if not kernels:
        raise _no_seed_kernel(definition, language, device)
    options = config.operator_options()
    names, notices = choose_operators(config.operators, options)
    if resume_dir is None:
        _check_writable(Path(config.runs_root), "--runs-root")
    else:
        _check_writable(resume_dir, "--resume")
    config = dataclasses.replace(config, device=device, bench=bench, operators=names)
    # the compile caches are this machine's, not an option of the run: the harness gets
    # them, the run's stored config does not (a resumed run finds them where it resumes)
    harness = bench if bench.compile_cache_dir is not None else bench.model_copy(
        update={"compile_cache_dir": compile_cache_dir(config.cache)})
    if config.build_ahead and config.ray is None and device_kind(device) == "cpu" and not harness.sandbox \
            and config.target is None:  # a cross-compile (ptxas) before each evaluation would run during timing
        harness = harness.model_copy(update={"build_ahead": True})  # this machine's way to evaluate, not stored
    backend = HarnessBackend(definition, harness, target=config.target, compile_only=config.compile_only,
                             cache_env=compile_cache_env(config.cache))
    if config.ray is not None:
        evaluator: Evaluator = RayEvaluator(backend, device, config.ray, workers=config.workers)
    else:
        evaluator = LocalEvaluator(backend, devices)
    search = tuple(split.search)
    setup = OperatorSetup(definition=definition, device=device, language=language, search_workloads=search,
                          evaluate=lambda solution: evaluator.submit(EvaluationRequest(solution, search)).result(),
                          options=options, dataset_root=bench.dataset_root)  # fmt: skip
    operators = build_operators(names, setup)
    if split.note:
        notices.append(split.note)
    return RunPlan(definition, split, config, language, kernels, evaluator, operators, resume_dir,
                   tuple(restored), tuple(notices))  # fmt: skip


def _resumed_workloads(resume_dir: Path, choice: WorkloadChoice, workloads: list[Workload]) -> WorkloadChoice:
    """The workloads the resumed run searched (its `search_workloads` fact), so that its
    fitness means the same thing after a resume whatever the caps choose today."""
    with Archive.open(resume_dir, read_only=True) as ro:
        kept = ro.fact("search_workloads")
    if not isinstance(kept, list):
        return choice
    by_uuid = {w.uuid: w for w in workloads}
    missing = [u for u in kept if u not in by_uuid]
    if missing:
        raise SpecError(f"--resume {resume_dir.name}: the run searched workload(s) {', '.join(missing[:3])}, "
                        "which the definition no longer has")
    return dataclasses.replace(choice, search=[by_uuid[u] for u in kept], rule="resumed", note="")


@dataclass
class WorkloadRow:
    """One workload of the final summary, latencies in ms."""

    label: str
    held_out: bool
    eager_ms: float | None
    compile_ms: float | None
    best_ms: float | None
    sol_ms: float | None
    sol_fraction: float | None
    status: str
    floor_ms: float | None = None  # the harness's call-overhead floor (the bare handshake's median), ms
    compile_failure: str | None = None  # why there is no torch.compile figure (one line), when there is none
    verdict: str | None = None  # the round's `fitness.Verdict` value: "cut"/"unstable" figures are not sound
    # the stability of each figure: (IQR / median of its timed samples, a fraction; whether
    # the harness marked it unstable), None where there is no figure or no record of it
    eager_spread: tuple[float, bool] | None = None
    compile_spread: tuple[float, bool] | None = None
    best_spread: tuple[float, bool] | None = None


@dataclass
class EvolveResult:
    run_id: str
    run_dir: Path
    evaluated: int
    first_fitness: float | None
    best_id: int | None
    best_fitness: float | None
    winner_id: int | None
    generalizes: bool | None  # None: no held-out workloads
    seconds_to_best: float | None
    rows: list[WorkloadRow]
    exported: dict[str, Path]
    stop_reason: str
    duplicates: dict[str, int] = dataclasses.field(default_factory=dict)  # dedup hits by kind
    cut: int = 0  # evaluations whose timing was cut at the cut-off
    compile_only: bool = False  # the fitness was compile-level: no timing at all
    sol_source: str | None = None  # "calibrated" or "datasheet": the peaks the SOL column is at
    workload_rule: str = ""  # how the search workloads were chosen (`WorkloadChoice.rule`)
    evaluator: str = ""  # the evaluator, e.g. "local: cpu", "ray: 4 actor(s), 1 GPU each"


def export_winner(archive: Archive, candidate_id: int) -> dict[str, Path]:
    """Write the winner under `<run dir>/winner/`; returns the paths written by kind."""
    c = archive.candidate(candidate_id)
    out = archive.path.parent / "winner"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"solution": out / "solution.json"}
    paths["solution"].write_text(dump_json(c.solution) + "\n")
    for src in c.solution.sources:
        target = out / Path(src.path).name
        target.write_text(src.content)
        if src.path == c.solution.spec.entry_file:
            paths["source"] = target
    traces = [w.trace for r in archive.evaluations(candidate_id)[-1:] for w in r.workloads]
    traces += [w.trace for r in archive.evaluations(candidate_id, held_out=True)[-1:] for w in r.workloads]
    paths["traces"] = out / "traces.jsonl"
    write_jsonl(paths["traces"], traces)
    return paths


def summary_rows(archive: Archive, candidate_id: int | None, workloads: list[Workload],
                 baselines: dict[str, dict[str, float]],
                 baseline_failures: dict[str, dict[str, str]] | None = None,
                 baseline_spreads: dict[str, dict[str, Sequence]] | None = None) -> list[WorkloadRow]:  # fmt: skip
    """Per workload: best vs eager vs torch.compile vs SOL vs the overhead floor (ms),
    search then held-out; where torch.compile has no figure, why (`compile_failure`); the
    spread of each figure (`baseline_spreads`: baseline -> uuid -> (IQR / median, unstable))."""
    from solforge.roofline.attach import timing_spread

    spreads = baseline_spreads or {}

    def spread_of(name: str, uuid: str) -> tuple[float, bool] | None:
        s = spreads.get(name, {}).get(uuid)
        return (float(s[0]), bool(s[1])) if s is not None else None

    by_uuid, verdicts = {}, {}
    if candidate_id is not None:
        for held_out in (False, True):
            for r in archive.evaluations(candidate_id, held_out=held_out)[-1:]:
                by_uuid.update({w.workload_uuid: w for w in r.workloads})
                verdicts.update({w.workload_uuid: r.verdict for w in r.workloads})
    failures = (baseline_failures or {}).get("compile", {})
    rows = []
    for wl in workloads:
        w = by_uuid.get(wl.uuid)
        if w is None:
            continue
        ev = w.trace.evaluation
        sol = ev.solforge.sol if ev else None
        sol_ms = None
        if sol is not None:
            sol_ms = sol.sol_time_calibrated_ms if sol.sol_time_calibrated_ms is not None else sol.sol_time_ms
        timing = ev.solforge.timing if ev else None
        compile_ms = baselines.get("compile", {}).get(wl.uuid)
        why = None
        if compile_ms is None:
            why = failures.get(wl.uuid) or ("not measured (--baselines)" if "compile" not in baselines
                                            else "no figure (the run's baselines did not time it)")
        rows.append(WorkloadRow(
            label=wl.label, held_out=wl.held_out, eager_ms=baselines.get("eager", {}).get(wl.uuid),
            compile_ms=compile_ms, best_ms=w.latency_ms, sol_ms=sol_ms, sol_fraction=w.sol_fraction,
            status=w.status.value, floor_ms=timing.overhead_ms if timing is not None else None,
            compile_failure=why, verdict=verdicts.get(wl.uuid), eager_spread=spread_of("eager", wl.uuid),
            compile_spread=spread_of("compile", wl.uuid), best_spread=timing_spread(w.trace),
        ))
    return rows


def _open_archive(plan: RunPlan) -> Archive:
    """A new run's archive (after measuring its baselines), or the resumed run's; the
    baselines of any workload the run's record lacks are measured now."""
    config, evaluator = plan.config, plan.evaluator
    workloads = plan.split.search + plan.split.held_out
    names = () if config.compile_only else (config.baselines or ("eager", "compile"))
    if plan.resume_dir is not None:
        archive = Archive.open(plan.resume_dir)
        evaluator.baselines = _recorded(archive, "baselines")
        # an earlier resume's spreads are kept with those measured now (the fact holds them all)
        evaluator.baseline_spreads = _recorded(archive, "baseline_spreads")
        missing = [w for w in workloads if names and w.uuid not in evaluator.baselines.get("eager", {})]
        if missing:
            evaluator.measure_baselines(missing, names)
            archive.set_fact("baselines", evaluator.baselines)
            archive.set_fact("baseline_spreads", evaluator.baseline_spreads)
        archive.set_status(RunStatus.running)
        return archive
    baselines = evaluator.measure_baselines(workloads, names) if names else {}
    evaluator.baselines = baselines
    archive = Archive.create(
        plan.definition.name, device=config.device, strategy=config.strategy, operators=list(config.operators),
        seed=config.random_seed, budget=config.budget,
        config={**config.stored(), "baselines": baselines,
                "baseline_failures": getattr(evaluator, "baseline_failures", {}),
                "baseline_spreads": getattr(evaluator, "baseline_spreads", {})},
        runs_root=config.runs_root,
    )
    archive.set_fact("search_workloads", [w.uuid for w in plan.split.search])
    archive.set_fact("device", _device_fact(config))
    return archive


def _recorded(archive: Archive, key: str) -> dict[str, dict]:
    """What the run recorded under `key` ("baselines": latencies in ms, or "baseline_spreads":
    (IQR / median, unstable)), baseline name -> workload uuid -> value: the run config's entry
    at its start, updated by the fact of that name written for workloads measured on a resume.
    Fresh dicts, safe to mutate."""
    return merge_per_baseline(archive.run.config.get(key), archive.fact(key))


def _device_fact(config: EvolveConfig) -> dict:
    """The device's identity and its datasheet and calibrated peaks (None where unknown),
    so a report drawn on another machine has the roofs the run was scored against."""
    from solforge.hardware import Device

    if config.compile_only:
        return {"device": f"target:{config.target}", "name": None, "datasheet": None, "calibrated": None}
    dev = Device.parse(config.device)
    peaks = dev.peaks
    as_json = (lambda p: dataclasses.asdict(p) if p is not None else None)  # noqa: E731
    return {"device": dev.canonical, "name": dev.name, "datasheet": as_json(peaks.datasheet),
            "calibrated": as_json(peaks.calibrated), "used": peaks.source, "reason": peaks.reason}


def execute(plan: RunPlan, on_progress: Callable[[ProgressSnapshot], None] | None = None) -> EvolveResult:
    """Run a prepared plan to its winner; see the module docstring. Raises RunInterrupted
    (marking the run `interrupted`) on Ctrl-C or a signal taken by `interrupt_on_signals`."""
    archive = None
    try:
        plan.evaluator.start()
        archive = _open_archive(plan)
        return _run(plan, archive, on_progress)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signal_number", signal.SIGINT)
        if archive is None:
            raise RunInterrupted(signum) from None
        archive.set_status(RunStatus.interrupted)
        raise RunInterrupted(signum, archive.run.run_id, archive.path.parent) from None
    except BaseException:
        if archive is not None and plan.resume_dir is None and _nothing_evaluated(archive):
            run_dir = archive.path.parent
            archive.close()
            archive = None
            shutil.rmtree(run_dir, ignore_errors=True)  # a new run that never evaluated a candidate
        raise
    finally:
        plan.evaluator.close()
        if archive is not None:
            archive.close()


def _nothing_evaluated(archive: Archive) -> bool:
    try:
        return not archive.evaluated_ids()
    except Exception:  # noqa: BLE001 - the archive itself failed: keep it for inspection
        return False


def _run(plan: RunPlan, archive: Archive, on_progress: Callable[[ProgressSnapshot], None] | None) -> EvolveResult:
    split = plan.split
    controller = Controller(plan.definition, split.search, split.held_out, plan.config, archive, plan.evaluator,
                            plan.operators, plan.seed_kernels, on_progress)  # fmt: skip
    controller.restore()
    reason = controller.run_search()
    if plan.resume_dir is None and controller.evaluated == 0:
        raise RunFailed(f"the run stopped before any candidate was evaluated: {reason}")
    winner_id, generalizes = controller.held_out_gate()
    exported = export_winner(archive, winner_id) if winner_id is not None else {}
    how = {True: "the best candidate, which passed every held-out workload",
           False: "the best candidate failed held-out; the fittest one that passed",
           None: "the best candidate (no held-out workloads)"}[generalizes]
    if winner_id is None:
        how = "no candidate passed every search and held-out workload"
    archive.record_winner(winner_id, generalizes=generalizes, how=how)
    best = archive.best(1, sound_only=True) or archive.best(1)
    best_id = best[0].id if best else None
    seconds_to_best = None
    reached = next((h for h in archive.history() if h.candidate_id == best_id), None)
    if reached is not None:
        seconds_to_best = reached.evaluated_at - archive.run.created_at
    rows = summary_rows(archive, winner_id if winner_id is not None else best_id, split.search + split.held_out,
                        plan.evaluator.baselines or {}, archive.run.config.get("baseline_failures") or {},
                        _recorded(archive, "baseline_spreads"))
    archive.set_status(RunStatus.finished)
    device = archive.fact("device") or {}
    return EvolveResult(
        run_id=archive.run.run_id, run_dir=archive.path.parent, evaluated=controller.evaluated,
        first_fitness=controller.first_fitness, best_id=best_id, best_fitness=best[0].fitness if best else None,
        winner_id=winner_id, generalizes=generalizes, seconds_to_best=seconds_to_best, rows=rows,
        exported=exported, stop_reason=reason,
        duplicates={k.value: v for k, v in archive.dedup_counts().items()}, cut=controller.cut_count,
        compile_only=archive.compile_only, sol_source=device.get("used"), workload_rule=split.rule,
        evaluator=getattr(plan.evaluator, "description", ""),
    )


def evolve(definition: Definition, workloads: list[Workload], config: EvolveConfig, resume: str | Path | None = None,
           on_progress: Callable[[ProgressSnapshot], None] | None = None) -> EvolveResult:  # fmt: skip
    """Search for a faster correct kernel for `definition`: `execute(prepare(...))`.

    On resume, the run's own device, strategy, operators and random seed are used, and
    its budgets, bench and agent options wherever `config` leaves them unset;
    `max_candidates` counts the whole run, `max_wall_seconds` this invocation. Raises
    SpecError for bad input (see `prepare`), RunInterrupted when interrupted.
    """
    return execute(prepare(definition, workloads, config, resume), on_progress)


__all__ = [
    "EvolveConfig",
    "EvolveResult",
    "ProgressSnapshot",
    "RunFailed",
    "RunInterrupted",
    "RunPlan",
    "WorkloadChoice",
    "WorkloadRow",
    "ensure_ceilings",
    "evolve",
    "execute",
    "export_winner",
    "interrupt_on_signals",
    "prepare",
    "summary_rows",
]
