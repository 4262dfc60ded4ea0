"""The Ray engine of the `Evaluator` interface, on Ray in local mode (`ray.init(num_cpus=2)`,
the real actor API): the same seeded run gives the same archive as the local engine; an
actor killed mid-evaluation is restarted and its candidate retried once, then recorded
as a failure with the cause; `--ray` naming an address with no cluster is one line and
exit code 2. The evaluations are the scripted backend's (tests/search/search_support.py),
so the archives can be compared exactly; the harness itself runs in an actor in the
last test."""

from __future__ import annotations

import os
import signal
import time

import pytest
import search_support
from search_support import FAST_BENCH, ScriptedBackend, ScriptedEvaluator, small_problem

from solforge.knowledge import seeds_for
from solforge.search import Archive, NoteKind, OperatorSetup, build_operators
from solforge.search.config import EvolveConfig
from solforge.search.controller import Controller
from solforge.search.evaluator import EvaluationError, EvaluationRequest, HarnessBackend, RayEvaluator

ray = pytest.importorskip("ray")
OPERATORS = ("tune", "crossover", "seed")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # the actors unpickle the scripted backend: ship its module by value (tests/ is not on their path)
    ray.cloudpickle.register_pickle_by_value(search_support)
    yield
    ray.shutdown()


def _run(tmp_path, name: str, evaluator, max_candidates: int = 8) -> Archive:
    definition, workloads = small_problem()
    search = [w for w in workloads if not w.held_out]
    # lockstep: each proposal sees every earlier result, so the run does not depend on the engine's speed
    config = EvolveConfig(device="cpu", bench=FAST_BENCH, operators=OPERATORS, max_candidates=max_candidates,
                          random_seed=4, lockstep=True)
    setup = OperatorSetup(definition=definition, device="cpu", language="numba", search_workloads=tuple(search),
                          evaluate=lambda s: evaluator.submit(EvaluationRequest(s, tuple(search))).result())
    archive = Archive.create(definition.name, device="cpu", strategy="lineage", operators=list(OPERATORS), seed=4,
                             runs_root=tmp_path, run_id=name)
    controller = Controller(definition, search, [w for w in workloads if w.held_out], config, archive, evaluator,
                            build_operators(OPERATORS, setup), {k.name: k for k in seeds_for(definition, "numba")})
    controller.restore()
    controller.run_search()
    return archive


def _shape(archive: Archive) -> list[tuple]:
    """Everything an archive decided, without timings."""
    rows = [(c.id, c.operator, c.family, c.parameters, c.parent_ids, c.source_hash, c.state.value, c.fitness,
             c.verdict) for c in archive.candidates()]
    return rows + [("lineage", e.version, e.candidate_id, e.fitness) for e in archive.lineage()]


def test_the_ray_engine_keeps_the_archive_the_local_engine_keeps(tmp_path, local_ray):
    definition, _ = small_problem()
    local = _run(tmp_path, "local", ScriptedEvaluator(definition))
    remote = RayEvaluator(ScriptedBackend(definition), "cpu", address=None, workers=1)
    remote.baselines = {"eager": {}}
    try:
        on_ray = _run(tmp_path, "ray", remote)
    finally:
        remote.close()
    assert len(local.evaluated_ids()) == 8 == len(on_ray.evaluated_ids())
    assert _shape(local) == _shape(on_ray)


def _wait_for_lines(path, n: int, timeout_s: float = 120.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} evaluation attempts after {timeout_s} s")


def test_an_actor_killed_mid_evaluation_is_restarted_and_its_candidate_retried_once(tmp_path, local_ray):
    definition, _ = small_problem()
    _, workloads = small_problem()
    log = tmp_path / "attempts.log"
    evaluator = RayEvaluator(ScriptedBackend(definition, sleep_s=3.0, attempts_log=log), "cpu", address=None,
                             workers=1)
    evaluator.baselines = {"eager": {}}
    kernel = seeds_for(definition, "numba")[0]
    request = EvaluationRequest(kernel.to_solution(definition), tuple(w for w in workloads if not w.held_out))
    try:
        # killed once: Ray restarts the actor and runs the evaluation again, which finishes
        future = evaluator.submit(request)
        first_pid = int(_wait_for_lines(log, 1)[0].split()[0])
        os.kill(first_pid, signal.SIGKILL)
        traces = future.result(timeout=300)
        assert [t.evaluation.status.value for t in traces] == ["PASSED", "PASSED"]
        attempts = _wait_for_lines(log, 2)
        assert len(attempts) == 2 and int(attempts[1].split()[0]) != first_pid  # a new actor process

        # killed twice: the one retry is spent, and the failure names the cause
        future = evaluator.submit(request)
        for n in (3, 4):
            os.kill(int(_wait_for_lines(log, n)[n - 1].split()[0]), signal.SIGKILL)
        with pytest.raises(EvaluationError, match="died"):
            future.result(timeout=300)
        time.sleep(1.0)
        assert len(log.read_text().splitlines()) == 4  # no third attempt
    finally:
        evaluator.close()


def test_a_candidate_whose_actor_dies_twice_is_a_failure_with_the_cause_and_the_run_goes_on(tmp_path, local_ray):
    definition, _ = small_problem()
    evaluator = RayEvaluator(ScriptedBackend(definition, die_when={"FASTMATH": True}), "cpu", address=None,
                             workers=2)
    evaluator.baselines = {"eager": {}}
    try:
        archive = _run(tmp_path, "dies", evaluator, max_candidates=6)
    finally:
        evaluator.close()
    dropped = [c for c in archive.candidates() if c.state.value == "dropped"]
    for c in dropped:  # only the candidates that kill their worker
        assert c.parameters["FASTMATH"] is True
        (note,) = [n for n in archive.notes(candidate_id=c.id, kind=NoteKind.failure)]
        assert note.text.startswith("harness error: the evaluation actor died twice")
    assert len(archive.evaluated_ids()) >= 1
    assert all(c.parameters.get("FASTMATH") is not True for c in archive.candidates() if c.fitness is not None)


@pytest.mark.slow
def test_the_harness_runs_in_an_actor(tmp_path, local_ray, cache_dir):
    definition, workloads = small_problem()
    search = tuple(w for w in workloads if not w.held_out)
    backend = HarnessBackend(definition, FAST_BENCH)
    evaluator = RayEvaluator(backend, "cpu", address=None, workers=1)
    try:
        evaluator.start()
        evaluator.measure_baselines(search, ["eager"])
        kernel = seeds_for(definition, "numba")[0]
        traces = evaluator.submit(EvaluationRequest(kernel.to_solution(definition), search)).result(timeout=600)
    finally:
        evaluator.close()
    assert [t.evaluation.status.value for t in traces] == ["PASSED", "PASSED"]
    assert all(t.evaluation.solforge.sol is not None for t in traces)
