"""What the controller decides, with a scripted evaluator whose verdicts are a fixed
function of the candidate (tests/search/search_support.py): the search beats its first
candidate, a re-timing that crashes still reaches the strategy, budgets stop the run,
and the operators never see anything held-out. Bounded by candidate counts, so they
take the same steps on any machine."""

from __future__ import annotations

import dataclasses
import random
import threading

import pytest
from search_support import FAST_BENCH, ScriptedEvaluator, small_problem

from solforge.knowledge import seeds_for
from solforge.search import (
    Archive,
    Candidate,
    NoCandidate,
    NoteKind,
    OperatorNote,
    OperatorSetup,
    ResourceUsage,
    build_operators,
)
from solforge.search.config import EvolveConfig, check
from solforge.search.context import HELD_OUT_GATE
from solforge.spec import SpecError
from solforge.search.controller import Controller

OPERATORS = ("tune", "crossover", "seed")


def _controller(tmp_path, config: EvolveConfig, evaluator=None, operators=None, archive=None):
    definition, workloads = small_problem()
    search = [w for w in workloads if not w.held_out]
    held = [w for w in workloads if w.held_out]
    evaluator = evaluator or ScriptedEvaluator(definition)
    setup = OperatorSetup(definition=definition, device="cpu", language="numba", search_workloads=tuple(search),
                          evaluate=lambda s: evaluator.evaluate(s, search, "cpu"))
    ops = operators or build_operators(config.operators or OPERATORS, setup)
    archive = archive or Archive.create(definition.name, device="cpu", strategy=config.strategy, operators=list(ops),
                                        seed=config.random_seed, runs_root=tmp_path, run_id="run")
    kernels = {k.name: k for k in seeds_for(definition, "numba")}
    controller = Controller(definition, search, held, config, archive, evaluator, ops, kernels)
    controller.restore()
    return controller, archive, evaluator


def _config(**kw) -> EvolveConfig:
    return EvolveConfig(device="cpu", bench=FAST_BENCH, operators=kw.pop("operators", OPERATORS), **kw)


def test_the_search_beats_its_first_candidate_when_the_scores_allow_it(tmp_path):
    controller, archive, _ = _controller(tmp_path, _config(max_candidates=12))
    assert controller.run_search() == "12 candidates evaluated"
    assert controller.evaluated == 12 == len(archive.evaluated_ids())
    lineage = archive.lineage()
    fitness = [e.fitness for e in lineage]
    assert len(lineage) >= 2 and fitness == sorted(fitness)
    assert fitness[-1] > controller.first_fitness  # tuning moved parameters toward the better end
    assert archive.best(1)[0].fitness == fitness[-1]
    assert {c.operator for c in archive.candidates()} >= {"seed", "tune"}


def test_a_crash_while_re_timing_still_offers_the_candidate_to_the_strategy(tmp_path):
    definition, _ = small_problem()
    evaluator = ScriptedEvaluator(definition, fail_retime=True)
    controller, archive, _ = _controller(tmp_path, _config(max_candidates=6), evaluator=evaluator)
    controller.run_search()
    notes = archive.notes(kind=NoteKind.failure)
    crashed = {n.candidate_id for n in notes if n.text.startswith("re-timing failed (RuntimeError: the harness lost")}
    assert crashed, "every would-be new best was re-timed, and each re-timing crashed"
    committed = {e.candidate_id for e in archive.lineage()}
    assert crashed <= committed  # judged on the first round, and committed on it
    assert archive.lineage()[-1].fitness == archive.best(1)[0].fitness  # the last version is a best (ties commit)
    assert archive.in_flight() == []


def test_budgets_stop_the_run(tmp_path):
    controller, archive, _ = _controller(tmp_path, _config(max_candidates=None, max_wall_seconds=0.001))
    assert controller.run_search() == "time budget of 0 s spent"
    assert controller.evaluated <= 1  # at most what was admitted before the clock ran out


class _Spender:
    """An operator that spends $0.40 of LLM money per step and proposes a seed kernel's point."""

    name = "spender"

    def __init__(self) -> None:
        self.contexts = []

    def propose(self, context):
        self.contexts.append(context)
        usage = ResourceUsage(cost_usd=0.4, llm_input_tokens=10)
        if len(self.contexts) % 2 == 0:  # every other step: spent, nothing usable
            return NoCandidate(self.name, "no passing edit", notes=(OperatorNote(NoteKind.failure, "no edit"),),
                               usage=usage)
        kernel = context.seed_kernels["numba/rmsnorm_rows"]
        params = {n: context.rng.choice(list(v)) for n, v in kernel.param_space.items()}
        return Candidate(kernel.to_solution(context.definition, params), self.name, kernel.name, params,
                         rationale="spent", notes=(OperatorNote(NoteKind.rationale, "step note"),), usage=usage)


def test_the_cost_budget_stops_proposals_and_costs_land_in_the_archive(tmp_path):
    spender = _Spender()
    config = _config(max_candidates=50, max_cost_usd=1.0, operators=("spender",))
    controller, archive, _ = _controller(tmp_path, config, operators={"spender": spender})
    assert controller.run_search() == "LLM cost budget of 1 USD spent"
    assert len(spender.contexts) == 3  # $0.40 x 3 reaches $1: no fourth step is started
    assert [round(c.run_cost_usd, 2) for c in spender.contexts] == [0.0, 0.4, 0.8]
    totals = archive.totals().by_operator["spender"]
    assert totals.cost_usd == pytest.approx(1.2) and totals.llm_input_tokens == 30
    kept = [c for c in archive.candidates() if c.operator == "spender"]
    assert len(kept) == 2
    for c in kept:  # the step's notes and costs are the candidate's
        assert {n.text for n in archive.notes(candidate_id=c.id)} >= {"spent", "step note"}
        assert archive.candidate_usage(c.id).cost_usd == pytest.approx(0.4)
    assert any(n.text == "no edit" and n.candidate_id is None for n in archive.notes(kind=NoteKind.failure))


class _Watcher:
    """Records every context it is given; proposes a random point of a seed kernel."""

    name = "watcher"

    def __init__(self) -> None:
        self.contexts = []

    def propose(self, context):
        self.contexts.append(context)
        kernel = context.seed_kernels["numba/rmsnorm_rows"]
        params = {n: context.rng.choice(list(v)) for n, v in kernel.param_space.items()}
        return Candidate(kernel.to_solution(context.definition, params), self.name, kernel.name, params)


def test_operators_never_see_a_held_out_name_or_result(tmp_path):
    watcher = _Watcher()
    config = _config(max_candidates=3, operators=("watcher",))
    controller, archive, _ = _controller(tmp_path, config, operators={"watcher": watcher})
    controller.run_search()
    assert controller.held_out_gate()[0] is not None
    assert any(n.operator == HELD_OUT_GATE for n in archive.notes()) or archive.evaluations(
        archive.best(1)[0].id, held_out=True)
    # a resumed run starts from an archive that holds held-out rounds and the gate's notes
    archive.add_note(NoteKind.failure, "held-out gate: held-out t=5: INCORRECT_NUMERICAL", operator=HELD_OUT_GATE)
    again, _, _ = _controller(tmp_path, dataclasses.replace(config, max_candidates=6),
                              operators={"watcher": watcher}, archive=archive)
    again.run_search()
    assert len(watcher.contexts) >= 6
    for context in watcher.contexts:
        text = repr(context)  # everything the operator could read
        assert "small-held-t5" not in text and "held-out t=5" not in text
        assert all(not t.workload.held_out for t in context.parent_traces)
    assert any(c.parent_traces for c in watcher.contexts[3:]) and any(c.lineage for c in watcher.contexts[3:])


def test_each_proposal_gets_its_own_random_source_from_the_run_seed(tmp_path):
    first, second = _Watcher(), _Watcher()
    for watcher, where in ((first, tmp_path / "a"), (second, tmp_path / "b")):
        # lockstep: each proposal after the previous result, so the draws do not depend on timing
        controller, _, _ = _controller(where, _config(max_candidates=3, operators=("watcher",), random_seed=5,
                                                      lockstep=True), operators={"watcher": watcher})
        controller.run_search()
    draws = [[c.rng.random() for c in w.contexts] for w in (first, second)]
    assert draws[0] == draws[1]  # reproducible for a given seed
    assert len(set(draws[0])) == len(draws[0])  # and a fresh source per proposal
    assert all(isinstance(c.rng, random.Random) for c in first.contexts)


class _OutOfOrder(ScriptedEvaluator):
    """Evaluations that finish out of the order they were submitted in: the i-th sleeps
    `sleeps_s[i % len(sleeps_s)]`."""

    def __init__(self, definition, sleeps_s, capacity: int = 3) -> None:
        import itertools
        import threading
        import time

        super().__init__(definition, capacity=capacity)
        evaluate, counter, lock = self.backend.evaluate, itertools.count(), threading.Lock()

        def slowed(request, device, baselines):
            with lock:
                i = next(counter)
            time.sleep(sleeps_s[i % len(sleeps_s)])
            return evaluate(request, device, baselines)

        self.backend.evaluate = slowed


def test_lockstep_with_several_in_flight_is_reproducible_whatever_order_evaluations_finish_in(tmp_path):
    seen = []
    for k, sleeps_s in enumerate(((0.0,), (0.15, 0.0, 0.05), (0.0, 0.1))):
        watcher = _Watcher()
        definition, _ = small_problem()
        config = _config(max_candidates=9, operators=("watcher",), random_seed=3, lockstep=True, lockstep_in_flight=3,
                         retime=False)  # as the search-efficiency replay: no re-timing jobs in flight
        controller, archive, _ = _controller(tmp_path / str(k), config, evaluator=_OutOfOrder(definition, sleeps_s),
                                             operators={"watcher": watcher})
        controller.run_search()
        # what each proposal knew: the points evaluated (with their fitness) and those still in flight
        seen.append([[(t.candidate_id, t.fitness) for t in c.trials] for c in watcher.contexts])
        pending = [sum(t.fitness is None for t in c.trials) for c in watcher.contexts]
        assert pending[:3] == [0, 1, 2] and set(pending[3:]) == {2}, pending  # three in flight, never more
        assert [h.candidate_id for h in archive.history()] == sorted(h.candidate_id for h in archive.history())
    assert seen[0] == seen[1] == seen[2]


class _Stalling(_Watcher):
    """Proposes as the watcher until its `stall_at`-th proposal, which marks the time budget
    spent and then blocks until released (or 60 s)."""

    def __init__(self, stall_at: int) -> None:
        super().__init__()
        self.stall_at, self.spent, self.release = stall_at, threading.Event(), threading.Event()
        self.returned = threading.Event()  # the stalled proposal has ended

    def propose(self, context):
        if len(self.contexts) + 1 == self.stall_at:
            self.contexts.append(context)
            self.spent.set()
            self.release.wait(60)
            self.returned.set()
            return None
        return super().propose(context)


def test_lockstep_ends_with_the_evaluations_in_flight_not_a_proposal_the_budget_cannot_use(tmp_path):
    stalling = _Stalling(stall_at=4)
    definition, _ = small_problem()
    config = _config(max_candidates=20, max_wall_seconds=3600, operators=("watcher",), random_seed=3, lockstep=True,
                     lockstep_in_flight=3, retime=False)
    controller, archive, _ = _controller(tmp_path, config, evaluator=_OutOfOrder(definition, (0.1,)),
                                         operators={"watcher": stalling})
    controller._time_spent = stalling.spent.is_set  # the time budget runs out during the 4th proposal
    try:
        controller.run_search()
        still_proposing = not stalling.returned.is_set()
    finally:
        stalling.release.set()
    assert still_proposing and stalling.spent.is_set()
    assert controller.evaluated == 3 == len(archive.evaluated_ids())  # the three in flight were kept


def test_lockstep_in_flight_needs_lockstep():
    with pytest.raises(SpecError, match="lockstep_in_flight"):
        check(EvolveConfig(device="cpu", max_candidates=5, lockstep_in_flight=3))
    check(EvolveConfig(device="cpu", max_candidates=5, lockstep=True, lockstep_in_flight=3))


def test_a_resumed_run_rebuilds_the_supervisors_weights_from_the_archive(tmp_path):
    controller, archive, _ = _controller(tmp_path, _config(max_candidates=10))
    controller.run_search()
    weights, quality = dict(controller.supervisor.weights), dict(controller.supervisor.quality)
    assert any(q > 0 for q in quality.values())  # the scripted scores let some operator beat its parents
    archive.close()
    reopened = Archive.open(tmp_path / "run")
    resumed, _, _ = _controller(tmp_path, _config(max_candidates=10), archive=reopened)
    assert resumed.supervisor.quality == pytest.approx(quality)
    assert resumed.supervisor.weights == pytest.approx(weights)
    reopened.close()


def test_best_of_n_draws_its_operators_without_feedback(tmp_path):
    controller, archive, _ = _controller(tmp_path, _config(max_candidates=10, strategy="best-of-n"))
    start = dict(controller.supervisor.weights)
    controller.run_search()
    assert controller.supervisor.weights == start
    assert not [n for n in archive.notes() if n.operator == "supervisor"]
