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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from solforge.bench import BenchConfig
from solforge.knowledge import load_seeds, seeds_for
from solforge.problems import WorkloadSplit, split_workloads
from solforge.search.archive import Archive
from solforge.search.archive_schema import RunInfo, RunStatus
from solforge.search.config import EvolveConfig, check, restore
from solforge.search.controller import Controller, ProgressSnapshot
from solforge.search.evaluator import (
    Evaluator,
    LocalEvaluator,
    default_device,
    device_kind,
    ensure_ceilings,
    evaluation_devices,
)
from solforge.search.operators import Operator, OperatorSetup, build_operators, choose_operators
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


def seed_language(device: str) -> str:
    """The language of the seed kernels a search on `device` starts from."""
    return "numba" if device_kind(device) == "cpu" else "triton"


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
    split: WorkloadSplit
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
    device = config.device or default_device()
    bench = config.bench or BenchConfig(device=device, dataset_root=config.dataset_root)
    devices = evaluation_devices(device)
    split = split_workloads(workloads, device)
    if not split.search:
        raise SpecError(f"definition '{definition.name}': no search workloads")
    language = seed_language(device)
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
    evaluator = LocalEvaluator(definition, devices, bench)
    setup = OperatorSetup(definition=definition, device=device, language=language,
                          search_workloads=tuple(split.search),
                          evaluate=lambda solution: evaluator.evaluate(solution, split.search, devices[0]),
                          options=options, dataset_root=bench.dataset_root)  # fmt: skip
    operators = build_operators(names, setup)
    return RunPlan(definition, split, config, language, kernels, evaluator, operators, resume_dir,
                   tuple(restored), tuple(notices))  # fmt: skip


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
                 baselines: dict[str, dict[str, float]]) -> list[WorkloadRow]:
    """Per workload: best vs eager vs torch.compile vs SOL (ms), search then held-out."""
    by_uuid = {}
    if candidate_id is not None:
        for held_out in (False, True):
            for r in archive.evaluations(candidate_id, held_out=held_out)[-1:]:
                by_uuid.update({w.workload_uuid: w for w in r.workloads})
    rows = []
    for wl in workloads:
        w = by_uuid.get(wl.uuid)
        if w is None:
            continue
        sol = w.trace.evaluation.solforge.sol if w.trace.evaluation else None
        sol_ms = None
        if sol is not None:
            sol_ms = sol.sol_time_calibrated_ms if sol.sol_time_calibrated_ms is not None else sol.sol_time_ms
        rows.append(WorkloadRow(
            label=wl.label, held_out=wl.held_out, eager_ms=baselines.get("eager", {}).get(wl.uuid),
            compile_ms=baselines.get("compile", {}).get(wl.uuid), best_ms=w.latency_ms, sol_ms=sol_ms,
            sol_fraction=w.sol_fraction, status=w.status.value,
        ))
    return rows


def _open_archive(plan: RunPlan) -> Archive:
    """A new run's archive (after measuring its baselines), or the resumed run's."""
    config, evaluator = plan.config, plan.evaluator
    if plan.resume_dir is not None:
        archive = Archive.open(plan.resume_dir)
        evaluator.baselines = dict(archive.run.config.get("baselines", {}))
        archive.set_status(RunStatus.running)
        return archive
    names = config.baselines or (("eager", "compile") if config.device == "cuda" else ("eager",))
    baselines = evaluator.measure_baselines(plan.split.search + plan.split.held_out, names)
    return Archive.create(
        plan.definition.name, device=config.device, strategy=config.strategy, operators=list(config.operators),
        seed=config.random_seed, budget=config.budget, config={**config.stored(), "baselines": baselines},
        runs_root=config.runs_root,
    )


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
    best = archive.best(1)
    best_id = best[0].id if best else None
    seconds_to_best = None
    reached = next((h for h in archive.history() if h.candidate_id == best_id), None)
    if reached is not None:
        seconds_to_best = reached.evaluated_at - archive.run.created_at
    rows = summary_rows(archive, winner_id if winner_id is not None else best_id, split.search + split.held_out,
                        plan.evaluator.baselines or {})
    archive.set_status(RunStatus.finished)
    return EvolveResult(
        run_id=archive.run.run_id, run_dir=archive.path.parent, evaluated=controller.evaluated,
        first_fitness=controller.first_fitness, best_id=best_id, best_fitness=best[0].fitness if best else None,
        winner_id=winner_id, generalizes=generalizes, seconds_to_best=seconds_to_best, rows=rows,
        exported=exported, stop_reason=reason,
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
    "WorkloadRow",
    "ensure_ceilings",
    "evolve",
    "execute",
    "export_winner",
    "interrupt_on_signals",
    "prepare",
    "summary_rows",
]
