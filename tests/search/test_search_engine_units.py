"""Operators, the operator registry, strategies and the stall supervisor, on the real
knowledge base and problems."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from solforge.knowledge import read_params, seeds_for
from solforge.problems import load_builtin
from solforge.search import (
    EvaluatedCandidate,
    OperatorOptions,
    OperatorSpec,
    SearchContext,
    Trial,
    choose_operators,
    operator_names,
    register_operator,
)
from solforge.search.operators import CrossoverOperator, SeedKernelOperator, TuneOperator, directions
from solforge.search.strategies import LineageStrategy, MapElitesStrategy, descriptor, make_strategy
from solforge.search.supervisor import StallSupervisor
from solforge.spec import SpecError

ROWS = "numba/rmsnorm_rows"  # a seed kernel whose parameters are read into module-level names


@pytest.fixture(scope="module")
def rmsnorm():
    definition, _ = load_builtin("rmsnorm_h4096")
    kernels = {s.name: s for s in seeds_for(definition, "numba")}
    assert ROWS in kernels, "the knowledge base must have numba/rmsnorm_rows for rmsnorm_h4096"
    return definition, kernels


def _context(definition, kernels, parents=(), elites=(), tried=None, seed=0):
    return SearchContext(definition=definition, workloads=(), seed_kernels=kernels, parents=tuple(parents),
                         elites=tuple(elites), tried_families=tried or {}, rng=random.Random(seed))


def _scored(cid, family, params, fitness, definition=None, kernels=None):
    solution = kernels[family].to_solution(definition, params) if kernels else None
    return EvaluatedCandidate(cid, family, dict(params), fitness, solution)


def _module(source: str) -> dict:
    """The generated source run as a module (the numba kernels are compiled lazily, at the first call)."""
    namespace: dict = {"__name__": "generated_candidate"}
    exec(compile(source, "generated_candidate.py", "exec"), namespace)  # noqa: S102 - our own seed kernel
    return namespace


def test_seed_operator_starts_each_family_at_its_defaults(rmsnorm):
    definition, kernels = rmsnorm
    tried = {}
    seen = set()
    for _ in range(len(kernels)):
        p = SeedKernelOperator().propose(_context(definition, kernels, tried=tried))
        assert p.parent_ids == () and p.operator == "seed"
        assert p.params == kernels[p.family].params
        assert read_params(p.solution.sources[0].content) == dict(kernels[p.family].params)
        assert p.solution.definition == definition.name
        seen.add(p.family)
        tried[p.family] = tried.get(p.family, 0) + 1
    assert seen == set(kernels)  # least-tried first: every family once before any twice


def test_tune_moves_parameters_within_the_declared_space_and_into_the_source(rmsnorm):
    definition, kernels = rmsnorm
    kernel = kernels[ROWS]
    parent = _scored(7, ROWS, kernel.params, 0.5, definition, kernels)
    sources = set()
    for i in range(30):
        strategy = ("tpe", "local")[i % 2]
        p = TuneOperator(strategy).propose(_context(definition, kernels, parents=[parent], seed=i))
        assert p.parent_ids == (7,) and p.family == ROWS
        assert p.params != kernel.params  # never the parent's own point
        changed = [k for k in kernel.params if p.params[k] != kernel.params[k]]
        if strategy == "local":  # a neighbour: one or two parameters moved
            assert 1 <= len(changed) <= 2
        for k, v in p.params.items():
            assert v in kernel.param_space[k]
        # the tuned values are the ones the generated source carries, not the defaults
        content = p.solution.sources[0].content
        assert read_params(content) == p.params
        sources.add(content)
    assert len(sources) > 1  # different points of the space are different sources


def _trials(kernel, points):
    return tuple(Trial(i + 1, kernel.name, dict(p), f, "scored" if f is not None else None)
                 for i, (p, f) in enumerate(points))


def test_the_model_based_tuner_never_proposes_a_known_point_and_is_reproducible(rmsnorm):
    definition, kernels = rmsnorm
    kernel = kernels[ROWS]
    space = kernel.param_space
    # every point but three is known (evaluated, or in flight): the tuner must find those three
    points = [dict(zip(space, values)) for values in itertools.product(*space.values())]
    free = points[5:8]
    known = [(p, 0.3 + 0.001 * i) for i, p in enumerate(points) if p not in free]
    known[-1] = (known[-1][0], None)  # one in flight
    parent = _scored(1, ROWS, known[0][0], 0.3, definition, kernels)
    proposed = []
    for seed in range(3):
        context = _context(definition, kernels, parents=[parent], seed=seed)
        context = dataclasses.replace(context, trials=_trials(kernel, known))
        p = TuneOperator("tpe").propose(context)
        assert p.params in free
        proposed.append(p.params)
        again = TuneOperator("tpe").propose(dataclasses.replace(context, rng=random.Random(seed)))
        assert again.params == p.params  # the same history and seed give the same point
    # nothing left: the tuner says so instead of repeating a point
    everything = _trials(kernel, [(p, 0.5) for p in points])
    context = dataclasses.replace(_context(definition, kernels, parents=[parent]), trials=everything)
    assert TuneOperator("tpe").propose(context) is None


def test_tuned_parameters_change_what_the_kernel_module_does(rmsnorm):
    definition, kernels = rmsnorm
    kernel = kernels[ROWS]
    base = _module(kernel.to_solution(definition).sources[0].content)
    tuned_params = {"ROWS_PER_CHUNK": 32, "ACCUMULATORS": 8, "PARALLEL": True, "FASTMATH": True}
    tuned = _module(kernel.to_solution(definition, tuned_params).sources[0].content)
    assert (base["ROWS_PER_CHUNK"], base["ACCUMULATORS"]) == (kernel.params["ROWS_PER_CHUNK"],
                                                               kernel.params["ACCUMULATORS"])
    assert (tuned["ROWS_PER_CHUNK"], tuned["ACCUMULATORS"]) == (32, 8)
    # PARALLEL and FASTMATH reach numba's compile options of the kernel
    assert base["_rmsnorm"].targetoptions.get("parallel") is False
    assert tuned["_rmsnorm"].targetoptions.get("parallel") is True
    assert tuned["_rmsnorm"].targetoptions.get("fastmath") == {"reassoc", "contract"}
    assert not base["_rmsnorm"].targetoptions.get("fastmath")


def test_crossover_needs_two_elites_of_one_family_and_mixes_them(rmsnorm):
    definition, kernels = rmsnorm
    kernel = kernels[ROWS]
    lone = _context(definition, kernels, elites=[_scored(1, ROWS, kernel.params, 1.0, definition, kernels)])
    assert CrossoverOperator().propose(lone) is None
    names = [k for k, v in kernel.param_space.items() if len(v) > 1]
    a = dict(kernel.params)
    b = dict(kernel.params)
    for k in names:
        b[k] = next(v for v in kernel.param_space[k] if v != a[k])
    elites = [_scored(1, ROWS, a, 1.0, definition, kernels), _scored(2, ROWS, b, 0.9, definition, kernels)]
    for i in range(20):
        p = CrossoverOperator().propose(_context(definition, kernels, elites=elites, seed=i))
        assert sorted(p.parent_ids) == [1, 2]
        assert p.params not in (a, b)
        assert all(p.params[k] in (a[k], b[k]) for k in kernel.params)
        assert read_params(p.solution.sources[0].content) == p.params


def test_the_context_refuses_anything_held_out(rmsnorm):
    definition, kernels = rmsnorm
    _, workloads = load_builtin("rmsnorm_h4096")
    held = next(w for w in workloads if w.held_out)
    with pytest.raises(ValueError, match="held-out"):
        SearchContext(definition=definition, workloads=(held,), seed_kernels=kernels, parents=(), elites=(),
                      tried_families={}, rng=random.Random(0))
    context = _context(definition, kernels, tried={"x": 1})
    with pytest.raises(TypeError):
        context.tried_families["x"] = 2  # read-only
    with pytest.raises(AttributeError):
        context.direction = "elsewhere"  # frozen


def test_the_registry_is_the_one_list_of_operator_names():
    import solforge.agent  # noqa: F401 - registers agent and agent-cli

    assert operator_names()[:3] == ("tune", "crossover", "seed")
    assert {"agent", "agent-cli"} <= set(operator_names())
    assert set(directions()) == set(operator_names())
    # the default set: LLM-free without an LLM, the agent first with one
    assert choose_operators(None, OperatorOptions()) == (("tune", "crossover", "seed"), [])
    assert choose_operators(None, OperatorOptions(llm=("openai:m",)))[0] == ("agent", "tune", "crossover", "seed")
    names, notices = choose_operators(["agent", "tune"], OperatorOptions())
    assert names == ("tune",) and notices == ["no LLM configured (--llm openai:MODEL or anthropic:MODEL): running tune"]
    with pytest.raises(SpecError, match="--operators agent-cli: give the agent's command with --agent-cmd"):
        choose_operators(["agent-cli"], OperatorOptions())
    with pytest.raises(SpecError, match="unknown operator 'mutate'"):
        choose_operators(["tune", "mutate"], OperatorOptions())


def test_an_operator_registered_from_outside_runs_by_name():
    class Nothing:
        name = "nothing-new"

        def propose(self, context):
            return None

    spec = register_operator(OperatorSpec("nothing-new", lambda setup: Nothing(), "proposes nothing",
                                          "nothing-new: wait"))
    assert "nothing-new" in operator_names() and directions()["nothing-new"] == "nothing-new: wait"
    assert choose_operators(["nothing-new"], OperatorOptions()) == (("nothing-new",), [])
    assert "nothing-new" not in choose_operators(None, OperatorOptions())[0]  # not in the default set
    with pytest.raises(ValueError, match="already registered"):
        register_operator(OperatorSpec("nothing-new", random.random, "other", "other"))
    assert spec.factory(None).propose(None) is None


def test_lineage_commits_only_correct_and_at_least_as_fast():
    s = LineageStrategy()
    assert s.consider(EvaluatedCandidate(1, "f", {}, 0.0, None), ()).accepted is False
    v = s.consider(EvaluatedCandidate(2, "f", {}, 0.5, None), ())
    assert v.accepted and v.new_best
    assert not s.consider(EvaluatedCandidate(3, "f", {}, 0.4, None), ()).accepted
    tie = s.consider(EvaluatedCandidate(4, "f", {}, 0.5, None), ())
    assert tie.accepted and not tie.new_best  # at least as fast: committed
    assert s.select(random.Random(0))[1][0].candidate_id == 4  # operators build on the latest version
    assert [e.candidate_id for e in s.versions] == [2, 4]
    assert make_strategy("lineage").name == "lineage"
    with pytest.raises(ValueError):
        make_strategy("random-walk")


def test_map_elites_keeps_the_fittest_per_cell_and_migrates_around_the_ring():
    s = MapElitesStrategy(islands=3, migrate_every=100)
    assert s.consider(EvaluatedCandidate(1, "f", {}, 0.3, None), ("f", 1), island=0).accepted
    assert not s.consider(EvaluatedCandidate(2, "f", {}, 0.2, None), ("f", 1), island=0).accepted
    assert s.consider(EvaluatedCandidate(3, "f", {}, 0.4, None), ("f", 1), island=0).accepted
    assert s.consider(EvaluatedCandidate(4, "f", {}, 0.1, None), ("f", 2), island=0).accepted  # new cell
    assert s.best().candidate_id == 3
    moved = s.migrate()
    assert (1, 3) in moved
    assert 3 in {e.candidate_id for e in s.islands[1].cells.values()}


def test_descriptor_bins_are_fixed_and_ignore_source_length(rmsnorm):
    definition, kernels = rmsnorm
    sol = kernels[ROWS].to_solution(definition)
    d1 = descriptor("f", {"BLOCK_SIZE": 1024, "num_warps": 4}, sol)
    padded = sol.model_copy(deep=True)
    padded.sources[0].content += "\n# " + "x" * 5000
    assert descriptor("f", {"BLOCK_SIZE": 1024, "num_warps": 4}, padded) == d1
    assert descriptor("f", {"BLOCK_SIZE": 4096, "num_warps": 4}, sol) != d1


def test_supervisor_redirects_after_patience_steps_and_resets_on_improvement():
    sup = StallSupervisor(["tune", "seed", "crossover"], patience=3, directions=directions())
    assert sup.observe(False) is None and sup.observe(False) is None
    assert sup.observe(True) is None  # an improvement resets the count
    assert sup.observe(False) is None and sup.observe(False) is None
    r = sup.observe(False)
    assert r is not None and r.favoured == "seed" and "3 evaluations" in r.reason
    assert sup.direction == directions()["seed"]
    picks = [sup.choose(random.Random(i)) for i in range(200)]
    assert picks.count("seed") > picks.count("tune")


def test_supervisor_gives_most_proposals_to_the_operator_whose_candidates_beat_their_parents():
    sup = StallSupervisor(["tune", "crossover", "seed"], patience=100)
    for _ in range(12):
        sup.observe(False, "tune", False)
        sup.observe(False, "crossover", True)  # beats its parents, though no new best
        sup.observe(False, "seed", False)
    assert sup.weights["crossover"] > 0.7 and min(sup.weights.values()) >= 0.1 - 1e-9
    assert abs(sum(sup.weights.values()) - 1) < 1e-9
    picks = [sup.choose(random.Random(i)) for i in range(300)]
    assert picks.count("crossover") > 2 * max(picks.count("tune"), picks.count("seed"))
    # credit moves on: when tune starts improving and crossover stops, tune is pursued
    for _ in range(12):
        sup.observe(False, "tune", True)
        sup.observe(False, "crossover", False)
    assert sup.weights["tune"] > 0.7 > 0.15 > sup.weights["crossover"]


def test_supervisor_without_evidence_keeps_its_starting_weights_and_redirects_by_credit():
    sup = StallSupervisor(["tune", "crossover", "seed"], patience=3, directions=directions())
    start = dict(sup.weights)
    sup.observe(False, "tune", False)
    sup.observe(False, "crossover", None)  # no parent, no new best: reward 0
    assert sup.weights == start  # every quality is 0: nothing to pursue
    sup = StallSupervisor(["tune", "crossover", "seed"], patience=3, directions=directions())
    sup.observe(False, "seed", True)  # seed beat its parent once (no new best)
    sup.observe(False, "tune", False)
    r = sup.observe(False, "crossover", False)
    # the ring's next is crossover, but seed has the credit: the redirect favours it
    assert r is not None and r.favoured == "seed" and sup.direction == directions()["seed"]


def test_best_of_n_supervisor_never_adapts_or_redirects():
    sup = StallSupervisor(["tune", "crossover", "seed"], patience=2, adaptive=False)
    start = dict(sup.weights)
    for _ in range(10):
        assert sup.observe(False, "crossover", True) is None
    assert sup.weights == start and sup.direction is None

