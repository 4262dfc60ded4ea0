"""kill -9 at random moments: the archive stays consistent, a resumed run loses at most
the candidate in flight, and nothing is evaluated twice.

The writer is this file run as a script (`python test_archive_crash.py RUN_DIR TOTAL`):
it re-queues whatever `in_flight()` lists, then adds, evaluates, re-times, commits and
notes candidates 0..TOTAL-1 in order, skipping those already evaluated.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solforge.search import ARCHIVE_FILE, Archive, CandidateState, NoteKind, ResourceUsage, RunStatus, source_hash
from solforge.spec import (
    BuildSpec,
    Environment,
    Evaluation,
    EvaluationExtension,
    Performance,
    SolReport,
    Solution,
    SourceFile,
    Trace,
    Workload,
)

PROBLEM = "softmax_v1"
WORKLOADS = 6  # per round
GPU_SECONDS_PER_ROUND = 1.5
KILLS = 5

pytestmark = pytest.mark.timeout(240)


# -- the writer ---------------------------------------------------------------------------


def _solution(k: int) -> Solution:
    body = f"def run(x, out):\n    BLOCK = {k}\n" + "    # padding so a round's JSON is not tiny\n" * 20
    return Solution(name=f"k{k}", definition=PROBLEM, spec=BuildSpec(language="triton", entry_point="main.py::run"),
                    sources=[SourceFile(path="main.py", content=body)])


def _traces(sol: Solution, k: int, round_index: int) -> list[Trace]:
    failed = k % 5 == 4  # every fifth candidate fails a workload: fitness 0
    out = []
    for w in range(WORKLOADS):
        status = "RUNTIME_ERROR" if failed and w == 0 else "PASSED"
        score = 0.3 + 0.6 * ((k * 7 + w + round_index) % 10) / 10
        evaluation = Evaluation(
            status=status,
            environment=Environment(hardware="NVIDIA H100"),
            timestamp="2026-01-01T00:00:00Z",
            log="sample log line\n" * 50,
            performance=Performance(latency_ms=0.01 / score) if status == "PASSED" else None,
            solforge=EvaluationExtension(sol=SolReport(sol_time_ms=0.01, sol_fraction=score, sol_score=score)),
        )
        out.append(Trace(definition=PROBLEM, workload=Workload(uuid=f"w{w}", axes={"n": 1024 * (w + 1)}),
                         solution=sol.name, evaluation=evaluation))
    return out


def _evaluate(archive: Archive, cid: int, k: int) -> None:
    sol = archive.start_evaluation(cid).solution
    archive.record_evaluation(cid, _traces(sol, k, 0), usage=ResourceUsage(gpu_seconds=GPU_SECONDS_PER_ROUND))
    if k % 3 == 0:
        archive.record_evaluation(cid, _traces(sol, k, 1), retimed=True,
                                  usage=ResourceUsage(gpu_seconds=GPU_SECONDS_PER_ROUND))
    cand = archive.candidate(cid)
    best = archive.lineage()
    if cand.fitness and (not best or cand.fitness >= best[-1].fitness):
        archive.commit(cid, "at least as fast as the best")
    archive.set_elite(k % 2, (k % 4,), cid)


def write(run_dir: Path, total: int) -> None:
    with Archive.open(run_dir) as archive:
        archive.set_status(RunStatus.running)
        for cand in archive.in_flight():
            _evaluate(archive, cand.id, int(cand.solution.name[1:]))
        for k in range(total):
            sol = _solution(k)
            if archive.is_evaluated(source_hash(sol)):
                continue
            best = archive.best(1)
            added = archive.add_candidate(sol, operator="tune", family="softmax", parameters={"BLOCK": k},
                                          parent_ids=[best[0].id] if best else [], rationale=f"BLOCK={k}",
                                          usage=ResourceUsage(wall_seconds=0.5))
            assert not added.is_duplicate, f"candidate {k} was already there but neither evaluated nor in flight"
            _evaluate(archive, added.candidate.id, k)
            if k % 4 == 0:
                archive.add_note(NoteKind.supervisor, f"checkpoint after {k}")
        archive.set_status(RunStatus.finished)


# -- the checks ---------------------------------------------------------------------------


def _check_consistent(db: Path) -> tuple[int, int]:
    """Check the invariants with plain SQL; return (evaluated, in flight) candidate counts."""
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        # Every round holds every workload: no half-written evaluation.
        short = raw.execute(
            "SELECT r.id, count(e.id) FROM rounds r LEFT JOIN evaluations e ON e.round_id = r.id"
            " GROUP BY r.id HAVING count(e.id) != ?",
            (WORKLOADS,),
        ).fetchall()
        assert short == []
        # Evaluated candidates have exactly one first search round; the others none.
        rows = raw.execute(
            "SELECT c.id, c.state, c.fitness,"
            " (SELECT count(*) FROM rounds r WHERE r.candidate_id = c.id AND r.round_index = 0 AND NOT r.held_out),"
            " (SELECT fitness FROM rounds r WHERE r.candidate_id = c.id ORDER BY round_index DESC LIMIT 1),"
            " (SELECT count(*) FROM rounds r WHERE r.candidate_id = c.id),"
            " (SELECT coalesce(sum(gpu_seconds), 0) FROM costs WHERE candidate_id = c.id)"
            " FROM candidates c"
        ).fetchall()
        for cid, state, fitness, first_rounds, last_fitness, n_rounds, gpu_s in rows:
            evaluated = state == CandidateState.evaluated.value
            assert first_rounds == (1 if evaluated else 0), (cid, state, first_rounds)
            assert fitness == last_fitness, cid  # the round and the candidate's state moved together
            assert gpu_s == pytest.approx(n_rounds * GPU_SECONDS_PER_ROUND), cid  # and so did its cost
        (orphans,) = raw.execute(
            "SELECT count(*) FROM candidates c WHERE c.id > (SELECT min(id) FROM candidates)"
            " AND NOT EXISTS (SELECT 1 FROM candidate_parents p WHERE p.child_id = c.id)"
        ).fetchone()
        assert orphans == 0  # every candidate after the first was written with its parent
    finally:
        raw.close()
    with Archive.open(db.parent, read_only=True) as archive:
        in_flight = len(archive.in_flight())
        assert in_flight <= 1  # the writer handles one candidate at a time
        return len(archive.evaluated_ids()), in_flight


def _evaluated_count(run_dir: Path) -> int:
    try:
        with Archive.open(run_dir, read_only=True) as archive:
            return len(archive.evaluated_ids())
    except sqlite3.OperationalError:  # caught mid-checkpoint; ask again
        return -1


def test_kill_9_at_random_moments_loses_only_work_in_flight(tmp_path):
    Archive.create(PROBLEM, device="cuda:0", strategy="lineage", operators=["tune"], seed=0,
                   runs_root=tmp_path, run_id="crash").close()
    run_dir = tmp_path / "crash"
    db = run_dir / ARCHIVE_FILE
    rng = random.Random(20260101)
    done = 0
    for life in range(KILLS):
        proc = subprocess.Popen([sys.executable, __file__, str(run_dir), "1000000"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _evaluated_count(run_dir) <= done:  # wait until this life has made progress of its own
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        evaluated, in_flight = _check_consistent(db)
        assert evaluated > done, f"life {life}: no progress survived the kill"
        done = evaluated

    # Resume and finish: every candidate 0..total-1 evaluated exactly once, none lost.
    with Archive.open(run_dir, read_only=True) as archive:
        total = len(archive.candidates()) + 3
    result = subprocess.run([sys.executable, __file__, str(run_dir), str(total)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    evaluated, in_flight = _check_consistent(db)
    assert (evaluated, in_flight) == (total, 0)
    with Archive.open(run_dir, read_only=True) as archive:
        cands = archive.candidates()
        assert sorted(c.solution.name for c in cands) == sorted(f"k{k}" for k in range(total))
        # A kill between a first round and its re-timing leaves one round: the re-timing was in flight.
        rounds = [len(archive.evaluations(c.id)) for c in cands]
        assert set(rounds) <= {1, 2} and sum(rounds) > total
        assert archive.run.status is RunStatus.finished
        assert archive.totals().run.gpu_seconds == pytest.approx(GPU_SECONDS_PER_ROUND * sum(rounds))
        lineage = archive.lineage()
        assert [e.version for e in lineage] == list(range(1, len(lineage) + 1))
        assert all(a.fitness <= b.fitness for a, b in zip(lineage, lineage[1:]))


if __name__ == "__main__":
    write(Path(sys.argv[1]), int(sys.argv[2]))
