"""Helpers for the report tests: a run written through the real `Archive` API (a real
SQLite file) with real seed kernels as candidates and Traces whose SOL reports come from
`solforge.roofline` on the real definition. Only the latencies are made up, so the tests
that use it run in seconds; `test_report_browser.py` makes a report from a real run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from solforge.hardware import Peaks
from solforge.knowledge import seeds_for
from solforge.problems import load_builtin
from solforge.roofline import count_work, sol_report
from solforge.search import Archive, NoteKind, ResourceUsage, RunStatus
from solforge.spec import (
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    Performance,
    Solution,
    Trace,
    Workload,
)

PROBLEM = "rmsnorm_h4096"
HARDWARE = "Synthetic Test CPU"  # not this machine's name: the report must not draw this machine's roofs
CALIBRATED = Peaks({}, simt_tflops=0.5, dram_bandwidth_gb_s=20.0, source="calibrated")
NUMERICAL_LOG = "trial 2 (normal inputs): output 'output' max abs error 3.5 > atol 0.01 at [0, 17]"


def _trace(definition, workload: Workload, solution: Solution, status: EvaluationStatus, latency_ms: float | None,
           eager_ms: float, log: str = "") -> Trace:
    passed = status is EvaluationStatus.PASSED
    report = sol_report(count_work(definition, workload), latency_ms if passed else None,
                        eager_ms if passed else None, None, CALIBRATED)
    ev = Evaluation(status=status, environment=Environment(hardware=HARDWARE), timestamp="2026-01-01T00:00:00+00:00",
                    log=log, performance=Performance(latency_ms=latency_ms) if passed else None,
                    solforge=EvaluationExtension(device="cpu", sol=report, held_out=workload.held_out))
    return Trace(definition=definition.name, workload=workload, solution=solution.name, evaluation=ev)


def synthetic_run(runs_root: Path, run_id: str = "synthetic-run") -> Path:
    """A finished lineage run of rmsnorm_h4096 on 'cpu' with:
    #1 seed (PASSED, lineage v1), #2 tune of #1 (PASSED, re-timed, held-out PASSED, lineage v2),
    #3 crossover of #2 and #1 (INCORRECT_NUMERICAL on one workload), #4 tune of #2 (dropped:
    a harness error), #5 tune of #1 (still in flight). Costs include an agent's tokens and USD."""
    definition, workloads = load_builtin(PROBLEM)
    search = [w for w in workloads if w.smoke]
    held_out = [w for w in workloads if w.held_out][:1]
    eager = {w.uuid: 0.40 + 0.01 * i for i, w in enumerate(search + held_out)}
    compiled = {uuid: 0.8 * ms for uuid, ms in eager.items()}  # torch.compile's latency per workload, ms
    seed = next(s for s in seeds_for(definition, "numba") if s.name == "numba/rmsnorm_rows")
    param_sets = [seed.resolve_params(p) for p in (
        {}, {"FASTMATH": True}, {"FASTMATH": True, "ACCUMULATORS": 4}, {"ROWS_PER_CHUNK": 4}, {"ROWS_PER_CHUNK": 2})]
    archive = Archive.create(PROBLEM, device="cpu", strategy="lineage", operators=["tune", "crossover", "seed"],
                             seed=0, config={"baselines": {"eager": eager, "compile": compiled}}, runs_root=runs_root,
                             run_id=run_id)
    with archive:
        def add(i: int, operator: str, parents: list[int]) -> int:
            result = archive.add_candidate(seed.to_solution(definition, param_sets[i]), operator=operator,
                                           family=seed.name, parent_ids=parents, parameters=param_sets[i],
                                           rationale=f"{operator} step {i}",
                                           usage=ResourceUsage(wall_seconds=1.0))
            return result.candidate.id

        def evaluate(cid: int, wls: list[Workload], scale: float, status=EvaluationStatus.PASSED, retimed=False):
            sol = archive.candidate(cid).solution
            traces = [_trace(definition, w, sol, status if i == 0 else EvaluationStatus.PASSED,
                             eager[w.uuid] * scale, eager[w.uuid], NUMERICAL_LOG if status is not
                             EvaluationStatus.PASSED and i == 0 else "") for i, w in enumerate(wls)]
            archive.record_evaluation(cid, traces, retimed=retimed, usage=ResourceUsage(wall_seconds=2.0))

        c1 = add(0, "seed", [])
        archive.start_evaluation(c1)
        evaluate(c1, search, 0.9)
        archive.commit(c1, "committed as version 1")
        c2 = add(1, "tune", [c1])
        archive.start_evaluation(c2)
        evaluate(c2, search, 0.6)
        evaluate(c2, search, 0.55, retimed=True)
        archive.commit(c2, "faster than version 1")
        evaluate(c2, held_out, 0.6)
        c3 = add(2, "crossover", [c2, c1])
        archive.start_evaluation(c3)
        evaluate(c3, search, 0.5, status=EvaluationStatus.INCORRECT_NUMERICAL)
        c4 = add(3, "tune", [c2])
        archive.start_evaluation(c4)
        archive.drop(c4, "harness error: BrokenPipeError: the worker died", operator="tune")
        add(4, "tune", [c1])
        archive.charge("agent", ResourceUsage(wall_seconds=30.0, llm_input_tokens=12000, llm_output_tokens=3400,
                                              cost_usd=0.0875))
        archive.add_note(NoteKind.supervisor, "no improvement in 6 steps: favour crossover", operator="supervisor")
        archive.set_status(RunStatus.finished)
    return runs_root / run_id


def checkpoint(run_dir: Path) -> Path:
    """Fold the WAL into archive.sqlite, so that the file alone holds the whole archive
    (what a copy of a cleanly closed run looks like); returns the archive's path."""
    path = run_dir / "archive.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return path
