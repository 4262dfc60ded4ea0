"""`evolve()`: one search run from start (or resume) to an exported, held-out-checked winner.

The run directory, `<runs_root>/<run-id>/`, holds `archive.sqlite` (every candidate,
evaluation, note and cost) and, when a candidate passes the held-out gate,
`winner/`: the FlashInfer-Trace Solution JSON, its sources as standalone files, and
its Traces (search and held-out) as JSON lines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from solforge.search.archive import Archive
from solforge.search.archive_schema import RunStatus
from solforge.search.controller import (
    Controller,
    EvolveConfig,
    EvolveResult,
    ProgressSnapshot,
    WorkloadRow,
    open_run,
)
from solforge.spec import Definition, SpecError, Workload, dump_json, write_jsonl


def ensure_ceilings(device: str) -> None:
    """Calibrate the device once (cached) when no ceilings are cached: on the CPU there is
    no datasheet, and without peaks there is no SOL score to search on."""
    from solforge.hardware import calibrate, detect

    if detect(device).ceilings is None:
        calibrate(device)


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


def evolve(
    definition: Definition,
    workloads: list[Workload],
    config: EvolveConfig,
    resume: str | Path | None = None,
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
) -> EvolveResult:
    """Search for a faster correct kernel for `definition`; see the module docstring.

    On resume, the run's own device, strategy, operators and seed are used, and
    `config.max_candidates` (when given) still counts the whole run. Raises SpecError for
    bad input (an unknown run, no seed kernel for the op type, no search workloads).
    KeyboardInterrupt marks the run interrupted (resume it with `resume=`) and propagates.
    """
    if resume is not None:
        probe = Path(resume) if Path(resume).is_dir() else Path(config.runs_root) / str(resume)
        if not probe.is_dir():
            raise SpecError(f"--resume {resume}: no such run (looked in {config.runs_root})")
        with Archive.open(probe, read_only=True) as ro:
            run = ro.run
        config = dataclasses.replace(
            config, device=run.device, strategy=run.strategy, operators=tuple(run.operators), seed=run.seed,
            max_candidates=config.max_candidates or run.budget.max_candidates,
            max_cost_usd=config.max_cost_usd if config.max_cost_usd is not None else run.budget.max_cost_usd,
        )
    ensure_ceilings(config.device if config.device == "cpu" else "cuda")
    archive = open_run(definition, workloads, config, resume)
    try:
        controller = Controller(definition, workloads, config, archive, on_progress)
        controller.restore()
        t0 = archive.run.created_at
        try:
            reason = controller.run_search()
        except KeyboardInterrupt:
            archive.set_status(RunStatus.interrupted)
            raise
        winner_id, generalizes = controller.held_out_gate()
        exported = export_winner(archive, winner_id) if winner_id is not None else {}
        best = archive.best(1)
        best_id = best[0].id if best else None
        history = archive.history()
        seconds_to_best = None
        if history and best_id is not None:
            reached = next((h for h in history if h.candidate_id == best_id), None)
            seconds_to_best = reached.evaluated_at - t0 if reached else None
        rows = summary_rows(archive, winner_id if winner_id is not None else best_id,
                            controller.search_wls + controller.heldout_wls, controller.baselines)
        archive.set_status(RunStatus.finished)
        return EvolveResult(
            run_id=archive.run.run_id, run_dir=archive.path.parent, evaluated=controller.evaluated_count(),
            first_fitness=controller.first_fitness, best_id=best_id,
            best_fitness=best[0].fitness if best else None, winner_id=winner_id, generalizes=generalizes,
            seconds_to_best=seconds_to_best, rows=rows, exported=exported, stop_reason=reason,
        )
    finally:
        archive.close()


__all__ = ["EvolveConfig", "EvolveResult", "ProgressSnapshot", "WorkloadRow", "evolve", "export_winner", "summary_rows"]
