"""The archive stores a run faithfully, refuses duplicates, and keeps held-out results apart."""

from __future__ import annotations

import math
import sqlite3

import pytest

from solforge.search import (
    ARCHIVE_FILE,
    AddOutcome,
    Archive,
    CandidateState,
    EliteOutcome,
    NoteKind,
    ResourceUsage,
    RunBudget,
    RunStatus,
    StateError,
    Verdict,
    fitness_of,
    judge,
    solution_diff,
    source_hash,
)
from solforge.search.archive_schema import SCHEMA_VERSION
from solforge.spec import (
    BuildSpec,
    Environment,
    Evaluation,
    EvaluationExtension,
    EvaluationStatus,
    Language,
    Performance,
    SolReport,
    Solution,
    SourceFile,
    SpecError,
    Trace,
    Workload,
    WorkloadExtension,
)

PROBLEM = "rmsnorm_h128"
KERNEL = "import triton\n\n\ndef run(x, w, eps, out):\n    BLOCK = {block}\n    launch(x, w, out, BLOCK)\n"


def solution(body: str, name: str = "k", entry: str = "main.py::run", extra: dict[str, str] | None = None) -> Solution:
    files = {"main.py": body, **(extra or {})}
    return Solution(
        name=name,
        definition=PROBLEM,
        spec=BuildSpec(language="triton", entry_point=entry),
        sources=[SourceFile(path=p, content=c) for p, c in files.items()],
    )


def trace(sol: Solution, uuid: str, score: float | None = 0.5, status: str = "PASSED", held_out: bool = False,
          flag_in_evaluation: bool = False) -> Trace:
    passed = status == "PASSED"
    sol_report = SolReport(sol_time_ms=0.01, sol_fraction=score and score / 2, sol_score=score) if passed else None
    evaluation = Evaluation(
        status=status,
        environment=Environment(hardware="cpu"),
        timestamp="2026-01-01T00:00:00Z",
        performance=Performance(latency_ms=0.02 / score) if passed and score else None,
        solforge=EvaluationExtension(sol=sol_report, held_out=flag_in_evaluation),
    )
    in_workload = WorkloadExtension(held_out=held_out and not flag_in_evaluation)
    workload = Workload(uuid=uuid, axes={"batch_size": 8}, solforge=in_workload)
    return Trace(definition=PROBLEM, workload=workload, solution=sol.name, evaluation=evaluation)


@pytest.fixture
def archive(tmp_path):
    a = Archive.create(PROBLEM, device="cuda:0", strategy="lineage", operators=["tune", "seed"], seed=7,
                       runs_root=tmp_path, run_id="run-1")
    yield a
    a.close()


def evaluated(archive: Archive, body: str, scores: list[float | None], statuses: list[str] | None = None,
              operator: str = "tune") -> int:
    """Add, start and record one candidate (one workload per score); returns its id."""
    sol = solution(body, name=f"cand-{len(archive.candidates())}")
    cid = archive.add_candidate(sol, operator=operator, family="plain").candidate.id
    archive.start_evaluation(cid)
    statuses = statuses or ["PASSED"] * len(scores)
    archive.record_evaluation(cid, [trace(sol, f"w{i}", s, st) for i, (s, st) in enumerate(zip(scores, statuses))])
    return cid


# -- the database itself ----------------------------------------------------------------


def test_create_makes_one_wal_database_per_run(tmp_path):
    budget = RunBudget(max_candidates=50, max_cost_usd=2.5)
    config = {"islands": 4, "k": [1, 2]}
    with Archive.create(PROBLEM, device="cuda:0", strategy="map-elites", operators=["tune", "agent"], seed=3,
                        budget=budget, config=config, runs_root=tmp_path, run_id="r1") as a:
        assert a.path == tmp_path / "r1" / ARCHIVE_FILE
        run = a.run
        assert (run.run_id, run.problem, run.device, run.strategy) == ("r1", PROBLEM, "cuda:0", "map-elites")
        assert run.seed == 3
        assert run.operators == ("tune", "agent") and run.budget == budget and run.config == {"islands": 4, "k": [1, 2]}
        assert run.status is RunStatus.running and run.finished_at is None
    raw = sqlite3.connect(tmp_path / "r1" / ARCHIVE_FILE)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert {r[2] for r in raw.execute("PRAGMA foreign_key_list(candidate_parents)")} == {"candidates"}
    assert {r[2] for r in raw.execute("PRAGMA foreign_key_list(evaluations)")} == {"rounds"}
    raw.close()
    with pytest.raises(SpecError, match="already exists"):
        Archive.create(PROBLEM, device="cpu", strategy="lineage", operators=[], seed=0, runs_root=tmp_path,
                       run_id="r1")
    with pytest.raises(SpecError, match="run_id"):
        Archive.create(PROBLEM, device="cpu", strategy="lineage", operators=[], seed=0, runs_root=tmp_path,
                       run_id="../x")


def test_default_run_id_names_the_problem_and_status_survives_reopen(tmp_path):
    a = Archive.create(PROBLEM, device="cpu", strategy="lineage", operators=["tune"], seed=0, runs_root=tmp_path)
    run_dir = a.path.parent
    assert run_dir.parent == tmp_path and run_dir.name.startswith(PROBLEM + "-")
    assert a.set_status(RunStatus.finished).finished_at is not None
    a.close()
    with Archive.open(run_dir) as b:
        assert b.run.status is RunStatus.finished
        resumed = b.set_status(RunStatus.running)
        assert resumed.status is RunStatus.running and resumed.finished_at is None


def test_open_refuses_what_is_not_this_archive(tmp_path, archive):
    with pytest.raises(SpecError, match="no such archive"):
        Archive.open(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / ARCHIVE_FILE).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SpecError, match="not a solforge archive"):
        Archive.open(tmp_path / "other")
    run_dir = archive.path.parent
    archive.close()
    raw = sqlite3.connect(run_dir / ARCHIVE_FILE)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(SpecError, match="schema_version"):
        Archive.open(run_dir)


def test_one_writer_and_any_number_of_readers(archive):
    run_dir = archive.path.parent
    with pytest.raises(SpecError, match="another process is writing"):
        Archive.open(run_dir)
    watcher = Archive.open(run_dir, read_only=True)
    cid = evaluated(archive, KERNEL.format(block=64), [0.5])
    assert watcher.candidate(cid).fitness == pytest.approx(0.5)  # sees the committed write at once
    with pytest.raises(PermissionError):
        watcher.add_note(NoteKind.rationale, "watchers do not write")
    archive.set_status(RunStatus.interrupted)
    assert watcher.run.status is RunStatus.interrupted
    archive.close()
    with Archive.open(run_dir) as writer:  # the lock went with the first writer
        assert writer.candidate(cid).state is CandidateState.evaluated
    watcher.close()


# -- candidates ---------------------------------------------------------------------------


def test_candidates_round_trip_with_parents_diffs_and_parameters(archive):
    seed = archive.add_candidate(solution(KERNEL.format(block=64), name="seed"), operator="seed", family="rowwise",
                                 parameters={"BLOCK": 64, "num_warps": 4}, island=1, cell=("rowwise", 2, 0, True),
                                 rationale="the plain one-pass kernel")
    assert seed.outcome is AddOutcome.added and not seed.is_duplicate
    s = seed.candidate
    assert s.parent_ids == () and s.diff == "" and s.state is CandidateState.proposed
    assert s.parameters == {"BLOCK": 64, "num_warps": 4} and s.family == "rowwise"
    assert s.island == 1 and s.cell == ("rowwise", 2, 0, True) and s.language.value == "triton"
    assert s.fitness is None and s.evaluated_at is None and s.source_hash == source_hash(s.solution)
    assert [n.text for n in archive.notes(candidate_id=s.id, kind=NoteKind.rationale)] == ["the plain one-pass kernel"]

    other = archive.add_candidate(solution(KERNEL.format(block=256), name="other"), operator="tune",
                                  family="rowwise", parent_ids=[s.id], parameters={"BLOCK": 256})
    child = other.candidate
    assert child.parent_ids == (s.id,)
    assert "-    BLOCK = 64\n" in child.diff and "+    BLOCK = 256\n" in child.diff
    assert child.diff.startswith("--- a/main.py\n+++ b/main.py\n")

    cross = archive.add_candidate(solution(KERNEL.format(block=128), name="x"), operator="crossover",
                                  family="rowwise", parent_ids=[child.id, s.id], parameters={"BLOCK": 128})
    c = cross.candidate
    assert c.parent_ids == (child.id, s.id)  # order kept: the diff is against the first parent
    assert "-    BLOCK = 256\n" in c.diff
    assert archive.candidate(c.id) == c
    assert [x.id for x in archive.candidates()] == [s.id, child.id, c.id]


def test_add_candidate_refuses_bad_parents_and_other_definitions(archive):
    first = archive.add_candidate(solution("a = 1\n"), operator="seed", family="f").candidate
    with pytest.raises(ValueError, match="parent_ids"):
        archive.add_candidate(solution("b = 1\n"), operator="tune", family="f", parent_ids=[first.id, 99])
    with pytest.raises(ValueError, match="parent_ids"):
        archive.add_candidate(solution("b = 1\n"), operator="tune", family="f", parent_ids=[first.id] * 2)
    other = solution("c = 1\n").model_copy(update={"definition": "gemm"})
    with pytest.raises(ValueError, match="solution.definition"):
        archive.add_candidate(other, operator="tune", family="f")
    with pytest.raises(ValueError):
        archive.add_candidate(solution("d = 1\n"), operator="tune", family="f", parameters={"x": math.nan})
    assert [x.id for x in archive.candidates()] == [first.id]  # nothing half-added
    with pytest.raises(KeyError):
        archive.candidate(12345)


def test_solution_diff_covers_added_removed_files_and_missing_newlines():
    before = solution("x = 1\ny = 2", extra={"old.py": "gone\n"})
    after = solution("x = 1\ny = 3\n", extra={"new.py": "fresh\n"})
    d = solution_diff(before, after)
    assert "-y = 2\n\\ No newline at end of file\n+y = 3\n" in d
    assert "--- a/old.py\n+++ /dev/null\n" in d and "-gone\n" in d
    assert "--- /dev/null\n+++ b/new.py\n" in d and "+fresh\n" in d
    assert solution_diff(after, after) == ""


def test_source_hash_is_what_runs_not_what_it_is_called():
    a = solution("x = 1\n", name="a", extra={"util.py": "u = 2\n"})
    renamed = Solution(name="b", definition=PROBLEM, author="someone else", spec=a.spec,
                       sources=list(reversed(a.sources)))
    assert source_hash(renamed) == source_hash(a)
    assert source_hash(solution("x = 2\n", extra={"util.py": "u = 2\n"})) != source_hash(a)
    assert source_hash(solution("x = 1\n", entry="main.py::other", extra={"util.py": "u = 2\n"})) != source_hash(a)
    python = a.model_copy(update={"spec": a.spec.model_copy(update={"language": Language.python})})
    assert source_hash(python) != source_hash(a)


def test_both_kinds_of_duplicate_are_refused_with_their_reason(archive):
    first = archive.add_candidate(solution(KERNEL.format(block=64), name="one"), operator="tune", family="rowwise",
                                  parameters={"BLOCK": 64})
    spent = ResourceUsage(llm_input_tokens=1000, cost_usd=0.01)
    same_source = archive.add_candidate(solution(KERNEL.format(block=64), name="renamed"), operator="agent",
                                        family="other", usage=spent)
    assert same_source.outcome is AddOutcome.duplicate_source and same_source.is_duplicate
    assert same_source.candidate.id == first.candidate.id

    same_params = archive.add_candidate(solution(KERNEL.format(block=64) + "# reformatted\n"), operator="tune",
                                         family="rowwise", parameters={"BLOCK": 64})
    assert same_params.outcome is AddOutcome.duplicate_parameters
    assert same_params.candidate.id == first.candidate.id
    assert len(archive.candidates()) == 1

    # Another family with the same values, and hand-written sources without parameters, are new.
    assert archive.add_candidate(solution(KERNEL.format(block=64) + "# 2\n"), operator="tune", family="twopass",
                                 parameters={"BLOCK": 64}).outcome is AddOutcome.added
    for i in range(2):
        hand_written = archive.add_candidate(solution(f"hand = {i}\n"), operator="agent", family="rowwise")
        assert hand_written.outcome is AddOutcome.added
    # The duplicate's LLM cost was spent: it counts for the run and the operator, not for the candidate it matched.
    assert archive.totals().run.cost_usd == pytest.approx(0.01)
    assert archive.totals().by_operator["agent"].llm_input_tokens == 1000
    assert archive.candidate_usage(first.candidate.id) == ResourceUsage()


# -- evaluations and fitness --------------------------------------------------------------


def test_fitness_is_the_geometric_mean_and_zero_when_any_search_workload_failed(archive):
    sol = solution("k = 1\n")
    assert fitness_of([trace(sol, "a", 0.25), trace(sol, "b", 1.0)]) == pytest.approx(0.5)
    assert fitness_of([trace(sol, "a", 0.9), trace(sol, "b", None, status="RUNTIME_ERROR")]) == 0.0
    # a PASSED trace without a SOL score (no baseline for its workload, unknown peaks) is
    # not an error: its round is "unscored", which no strategy selects on
    unscored = judge([trace(sol, "a", None), trace(sol, "b", 0.5)])
    assert unscored.verdict is Verdict.unscored and not unscored.verdict.selectable
    assert unscored.value == pytest.approx(0.5) and "a" in unscored.reason and unscored.selection_value == 0
    assert judge([trace(sol, "a", None)]).value == 0.0
    not_a_number = trace(sol, "a", 0.5)
    not_a_number.evaluation.solforge.sol.sol_score = math.nan
    with pytest.raises(ValueError, match="finite"):
        fitness_of([not_a_number])
    with pytest.raises(ValueError):
        fitness_of([])

    good = evaluated(archive, "good = 1\n", [0.25, 1.0, 0.5])
    bad = evaluated(archive, "bad = 1\n", [0.9, 0.9, None], statuses=["PASSED", "PASSED", "INCORRECT_NUMERICAL"])
    assert archive.candidate(good).fitness == pytest.approx(0.5)
    assert archive.candidate(bad).fitness == 0.0 and archive.candidate(bad).state is CandidateState.evaluated
    (rnd,) = archive.evaluations(bad)
    assert rnd.fitness == 0.0 and rnd.sol_scores == {"w0": 0.9, "w1": 0.9, "w2": None}
    assert [w.status for w in rnd.workloads] == [EvaluationStatus.PASSED] * 2 + [EvaluationStatus.INCORRECT_NUMERICAL]
    assert rnd.workloads[0].latency_ms == pytest.approx(0.02 / 0.9) and rnd.workloads[2].latency_ms is None
    assert rnd.workloads[0].sol_fraction == pytest.approx(0.45)


def test_traces_round_trip_exactly(archive):
    sol = solution("exact = 1\n", name="exact")
    cid = archive.add_candidate(sol, operator="seed", family="f").candidate.id
    archive.start_evaluation(cid)
    t = trace(sol, "w0", 0.75)
    t.evaluation.solforge.warnings.append("set in place, after construction")
    t.evaluation.log = "a log line\n" * 3
    (rnd,) = [archive.record_evaluation(cid, [t])]
    assert archive.evaluations(cid)[0].workloads[0].trace == t == rnd.workloads[0].trace


def test_each_round_is_allowed_once_and_retiming_replaces_fitness(archive):
    sol = solution("r = 1\n", name="r")
    cid = archive.add_candidate(sol, operator="tune", family="f").candidate.id
    with pytest.raises(StateError, match="needs state evaluating"):
        archive.record_evaluation(cid, [trace(sol, "w0", 0.5)])
    archive.start_evaluation(cid)
    with pytest.raises(StateError, match="re-timing needs a first round"):
        archive.record_evaluation(cid, [trace(sol, "w0", 0.5)], retimed=True)
    archive.record_evaluation(cid, [trace(sol, "w0", 0.81)])
    with pytest.raises(StateError, match="retimed=True"):
        archive.record_evaluation(cid, [trace(sol, "w0", 0.5)])  # never evaluated twice
    with pytest.raises(StateError):
        archive.start_evaluation(cid)
    with pytest.raises(StateError):
        archive.drop(cid, "too late")
    second = archive.record_evaluation(cid, [trace(sol, "w0", 0.64)], retimed=True)
    assert second.retimed and second.round_index == 1
    rounds = archive.evaluations(cid)
    assert [(r.round_index, r.retimed) for r in rounds] == [(0, False), (1, True)]
    assert [r.fitness for r in rounds] == pytest.approx([0.81, 0.64])
    assert archive.candidate(cid).fitness == pytest.approx(0.64)


def test_the_tuners_history_says_whether_a_figure_is_sound(archive):
    # An unstable round is kept with its figure but not sound, until a second unstable
    # round confirms it (at the slower figure); the tuner keeps unsound figures out of its model.
    from solforge.spec import TimingStats

    def unstable(sol, score):
        t = trace(sol, "w0", score)
        t.evaluation.solforge.timing = TimingStats(method="x", median_ms=1.0, iqr_ms=0.5, min_ms=0.5, count=3,
                                                   unstable=True)
        return t

    sol = solution("u = 1\n", name="u")
    cid = archive.add_candidate(sol, operator="tune", family="f", parameters={"TILE": 64}).candidate.id
    archive.start_evaluation(cid)
    archive.record_evaluation(cid, [unstable(sol, 0.4)])
    (t,) = archive.trials()
    assert (t.verdict, t.sound, t.fitness) == (Verdict.unstable.value, False, pytest.approx(0.4))
    archive.record_evaluation(cid, [unstable(sol, 0.7)], retimed=True)
    (t,) = archive.trials()
    assert (t.verdict, t.sound, t.fitness) == (Verdict.unstable.value, True, pytest.approx(0.4))


def test_a_refused_round_writes_nothing(archive):
    sol = solution("atomic = 1\n", name="atomic")
    cid = archive.add_candidate(sol, operator="tune", family="f").candidate.id
    archive.start_evaluation(cid)
    stranger = trace(solution("atomic = 1\n", name="someone-else"), "w1", 0.5)
    with pytest.raises(ValueError, match="expected"):
        archive.record_evaluation(cid, [trace(sol, "w0", 0.5), stranger], usage=ResourceUsage(gpu_seconds=3.0))
    with pytest.raises(ValueError, match="twice"):
        archive.record_evaluation(cid, [trace(sol, "w0", 0.5), trace(sol, "w0", 0.5)])
    assert archive.evaluations(cid) == [] and archive.candidate(cid).state is CandidateState.evaluating
    assert archive.totals().run.gpu_seconds == 0.0


def test_drop_keeps_the_reason_as_a_failure_note(archive):
    cid = archive.add_candidate(solution("d = 1\n"), operator="agent", family="f").candidate.id
    assert archive.drop(cid, "static guard: calls torch.matmul", operator="agent").state is CandidateState.dropped
    (note,) = archive.notes(candidate_id=cid)
    assert note.kind is NoteKind.failure and note.operator == "agent" and "torch.matmul" in note.text
    assert archive.in_flight() == []


def test_held_out_evaluations_never_reach_operator_queries(archive):
    sol = solution("h = 1\n", name="h")
    cid = archive.add_candidate(sol, operator="tune", family="f").candidate.id
    archive.start_evaluation(cid)
    with pytest.raises(ValueError, match="mixed"):
        archive.record_evaluation(cid, [trace(sol, "s0", 0.5), trace(sol, "h0", 0.5, held_out=True)])
    with pytest.raises(StateError, match="held-out round needs state evaluated"):
        archive.record_evaluation(cid, [trace(sol, "h0", 0.5, held_out=True)])
    archive.record_evaluation(cid, [trace(sol, "s0", 0.5), trace(sol, "s1", 0.5)])
    held = archive.record_evaluation(
        cid,
        [trace(sol, "h0", None, status="TIMEOUT", held_out=True), trace(sol, "h1", 0.9, flag_in_evaluation=True)],
    )
    assert held.held_out and held.fitness == 0.0 and held.round_index == 0

    cand = archive.candidate(cid)
    assert cand.fitness == pytest.approx(0.5)  # held-out results never move the search fitness
    assert [r.held_out for r in archive.evaluations(cid)] == [False]
    assert {w.workload_uuid for r in archive.evaluations(cid) for w in r.workloads} == {"s0", "s1"}
    assert [r.id for r in archive.evaluations(cid, held_out=True)] == [held.id]
    assert archive.best(5)[0].fitness == pytest.approx(0.5)
    assert [p.fitness for p in archive.history()] == pytest.approx([0.5])
    counts = archive.failures_by_status()
    assert counts[EvaluationStatus.PASSED] == 2 and counts[EvaluationStatus.TIMEOUT] == 0
    held_counts = archive.failures_by_status(held_out=True)
    assert held_counts[EvaluationStatus.TIMEOUT] == 1 and held_counts[EvaluationStatus.PASSED] == 1


# -- queries -------------------------------------------------------------------------------


def test_best_history_and_status_counts(archive):
    a = evaluated(archive, "a = 1\n", [0.3])
    b = evaluated(archive, "b = 1\n", [0.7])
    c = evaluated(archive, "c = 1\n", [0.5])
    d = evaluated(archive, "d = 1\n", [None, 0.9], statuses=["COMPILE_ERROR", "PASSED"])
    e = evaluated(archive, "e = 1\n", [0.7])  # ties with b: the earlier wins
    archive.add_candidate(solution("never evaluated\n"), operator="tune", family="f")
    assert [x.id for x in archive.best(3)] == [b, e, c]
    assert [x.id for x in archive.best(10)] == [b, e, c, a, d]
    hist = archive.history()
    assert [p.candidate_id for p in hist] == [a, b, c, d, e]
    assert [p.best_so_far for p in hist] == pytest.approx([0.3, 0.7, 0.7, 0.7, 0.7])
    assert all(p.evaluated_at >= p.created_at for p in hist)
    counts = archive.failures_by_status()
    assert counts[EvaluationStatus.PASSED] == 5 and counts[EvaluationStatus.COMPILE_ERROR] == 1
    assert set(counts) == set(EvaluationStatus) and counts[EvaluationStatus.REWARD_HACK] == 0


def test_lineage_keeps_commit_order(tmp_path, archive):
    ids = [evaluated(archive, f"v{i} = 1\n", [s]) for i, s in enumerate([0.2, 0.6, 0.4])]
    for cid, reason in [(ids[0], "seed"), (ids[2], "faster"), (ids[1], "faster again")]:
        archive.commit(cid, reason)
    unevaluated = archive.add_candidate(solution("u = 1\n"), operator="tune", family="f").candidate.id
    with pytest.raises(StateError, match="evaluated"):
        archive.commit(unevaluated, "not yet")
    with pytest.raises(StateError, match="already"):
        archive.commit(ids[0], "again")
    run_dir = archive.path.parent
    archive.close()
    with Archive.open(run_dir) as again:
        lineage = again.lineage()
    assert [(e.version, e.candidate_id, e.reason) for e in lineage] == [
        (1, ids[0], "seed"), (2, ids[2], "faster"), (3, ids[1], "faster again")]
    assert [e.fitness for e in lineage] == pytest.approx([0.2, 0.4, 0.6])
    assert lineage[0].committed_at <= lineage[1].committed_at <= lineage[2].committed_at


def test_elites_are_replaced_only_by_a_fitter_candidate(archive):
    low, mid, tie, high = (evaluated(archive, f"e{i} = 1\n", [s]) for i, s in enumerate([0.3, 0.5, 0.5, 0.8]))
    cell = ("rowwise", 1, 2, False)
    assert archive.set_elite(0, cell, mid) is EliteOutcome.new_cell
    assert archive.set_elite(0, cell, low) is EliteOutcome.kept
    assert archive.set_elite(0, cell, tie) is EliteOutcome.kept
    assert [(e.candidate_id, e.fitness) for e in archive.elites(0)] == [(mid, pytest.approx(0.5))]
    assert archive.set_elite(0, cell, high) is EliteOutcome.replaced
    assert archive.set_elite(1, cell, low) is EliteOutcome.new_cell  # another island, its own cell
    assert [(e.island, e.cell, e.candidate_id) for e in archive.elites()] == [(0, cell, high), (1, cell, low)]
    assert [e.candidate_id for e in archive.elites(island=1)] == [low]
    proposed = archive.add_candidate(solution("p = 1\n"), operator="tune", family="f").candidate.id
    with pytest.raises(StateError):
        archive.set_elite(0, ("other",), proposed)


def test_resource_totals_add_up(archive):
    sol = solution("cost = 1\n", name="cost")
    cid = archive.add_candidate(sol, operator="agent", family="f",
                                usage=ResourceUsage(wall_seconds=30.0, llm_input_tokens=12000,
                                                    llm_output_tokens=3000, cost_usd=0.21)).candidate.id
    archive.start_evaluation(cid)
    archive.record_evaluation(cid, [trace(sol, "w0", 0.5)], usage=ResourceUsage(gpu_seconds=4.5, wall_seconds=6.0))
    archive.record_evaluation(cid, [trace(sol, "w0", 0.5)], retimed=True, usage=ResourceUsage(gpu_seconds=1.5))
    archive.charge("agent", ResourceUsage(gpu_seconds=2.0, cost_usd=0.04), candidate_id=cid)
    archive.charge("supervisor", ResourceUsage(llm_input_tokens=500, llm_output_tokens=50, cost_usd=0.01))
    tuned = evaluated(archive, "t = 1\n", [0.5], operator="tune")
    archive.charge("tune", ResourceUsage(gpu_seconds=0.25), candidate_id=tuned)

    mine = archive.candidate_usage(cid)
    assert (mine.gpu_seconds, mine.wall_seconds, mine.cost_usd) == pytest.approx((8.0, 36.0, 0.25))
    assert (mine.llm_input_tokens, mine.llm_output_tokens) == (12000, 3000)
    totals = archive.totals()
    assert set(totals.by_operator) == {"agent", "supervisor", "tune"}
    assert totals.by_operator["tune"] == ResourceUsage(gpu_seconds=0.25)
    summed = ResourceUsage()
    for usage in totals.by_operator.values():
        summed = summed + usage
    assert summed.gpu_seconds == pytest.approx(totals.run.gpu_seconds) == pytest.approx(8.25)
    assert totals.run.llm_input_tokens == 12500 and totals.run.llm_output_tokens == 3050
    assert totals.run.cost_usd == pytest.approx(0.26) and totals.run.wall_seconds == pytest.approx(36.0)
    with pytest.raises(ValueError, match="gpu_seconds"):
        ResourceUsage(gpu_seconds=-1.0)


def test_notes_filter_by_candidate_and_kind(archive):
    added = archive.add_candidate(solution("n = 1\n"), operator="agent", family="f", rationale="vectorize loads")
    cid = added.candidate.id
    archive.add_note(NoteKind.failure, "compile error: smem overflow", candidate_id=cid, operator="agent")
    archive.add_note(NoteKind.supervisor, "stalled 10 steps: switch to seed")
    with pytest.raises(KeyError):
        archive.add_note(NoteKind.failure, "no such candidate", candidate_id=999)
    assert [n.kind for n in archive.notes()] == [NoteKind.rationale, NoteKind.failure, NoteKind.supervisor]
    assert [n.text for n in archive.notes(candidate_id=cid)] == ["vectorize loads", "compile error: smem overflow"]
    assert [n.text for n in archive.notes(kind=NoteKind.supervisor)] == ["stalled 10 steps: switch to seed"]
    assert archive.notes(candidate_id=cid, kind=NoteKind.supervisor) == []
    assert archive.notes(kind=NoteKind.supervisor)[0].candidate_id is None


def test_resume_lists_in_flight_work_and_skips_the_evaluated(archive):
    sols = [solution(f"q = {i}\n", name=f"q{i}") for i in range(3)]
    ids = [archive.add_candidate(s, operator="tune", family="f").candidate.id for s in sols]
    archive.start_evaluation(ids[0])
    archive.record_evaluation(ids[0], [trace(sols[0], "w0", 0.5)])
    archive.start_evaluation(ids[1])  # the run dies here: ids[1] evaluating, ids[2] proposed
    run_dir = archive.path.parent
    archive.close()

    with Archive.open(run_dir) as again:
        assert [c.id for c in again.in_flight()] == [ids[1], ids[2]]
        assert again.evaluated_ids() == {ids[0]}
        assert again.is_evaluated(source_hash(sols[0])) and not again.is_evaluated(source_hash(sols[1]))
        again.start_evaluation(ids[1])  # re-queued
        again.record_evaluation(ids[1], [trace(sols[1], "w0", 0.5)])
        assert [c.id for c in again.in_flight()] == [ids[2]]
