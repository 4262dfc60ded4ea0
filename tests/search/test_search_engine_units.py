"""Operators, strategies and the stall supervisor, on the real knowledge base and problems."""

from __future__ import annotations

import random

import pytest

from solforge.knowledge import seeds_for
from solforge.problems import load_builtin
from solforge.search.operators import (
    CrossoverOperator,
    Scored,
    SearchContext,
    SeedOperator,
    TuneOperator,
    make_operators,
)
from solforge.search.strategies import LineageStrategy, MapElitesStrategy, descriptor, make_strategy
from solforge.search.supervisor import StallSupervisor


@pytest.fixture(scope="module")
def rmsnorm():
    definition, _ = load_builtin("rmsnorm_h4096")
    seeds = {s.name: s for s in seeds_for(definition, "numba")}
    assert seeds, "the knowledge base must have a numba seed for rmsnorm_h4096"
    return definition, seeds


def _context(definition, seeds, parents=(), elites=(), tried=None, seed=0):
    return SearchContext(definition=definition, seeds=seeds, parents=list(parents), elites=list(elites),
                         tried_families=tried or {}, rng=random.Random(seed))


def test_seed_operator_starts_each_family_at_its_defaults(rmsnorm):
    definition, seeds = rmsnorm
    tried = {}
    seen = set()
    for _ in range(len(seeds)):
        p = SeedOperator().propose(_context(definition, seeds, tried=tried))
        assert p.parent_ids == [] and p.operator == "seed"
        assert p.params == seeds[p.family].params
        assert p.solution.definition == definition.name
        seen.add(p.family)
        tried[p.family] = tried.get(p.family, 0) + 1
    assert seen == set(seeds)  # least-tried first: every family once before any twice


def test_tune_moves_parameters_within_the_declared_space(rmsnorm):
    definition, seeds = rmsnorm
    name, seed = next((n, s) for n, s in seeds.items() if any(len(v) > 1 for v in s.param_space.values()))
    parent = Scored(7, name, dict(seed.params), 0.5)
    for i in range(30):
        p = TuneOperator().propose(_context(definition, seeds, parents=[parent], seed=i))
        assert p.parent_ids == [7] and p.family == name
        assert p.params != seed.params
        changed = [k for k in seed.params if p.params[k] != seed.params[k]]
        assert 1 <= len(changed) <= 2
        for k, v in p.params.items():
            assert v in seed.param_space[k]
        assert "PARAMS" in p.solution.sources[0].content


def test_crossover_needs_two_elites_of_one_family_and_mixes_them(rmsnorm):
    definition, seeds = rmsnorm
    name, seed = next((n, s) for n, s in seeds.items() if sum(len(v) > 1 for v in s.param_space.values()) >= 2)
    assert CrossoverOperator().propose(_context(definition, seeds, elites=[Scored(1, name, seed.params, 1.0)])) is None
    names = [k for k, v in seed.param_space.items() if len(v) > 1]
    a = dict(seed.params)
    b = dict(seed.params)
    for k in names:
        b[k] = next(v for v in seed.param_space[k] if v != a[k])
    for i in range(20):
        p = CrossoverOperator().propose(_context(definition, seeds, elites=[Scored(1, name, a, 1.0), Scored(2, name, b, 0.9)], seed=i))
        assert sorted(p.parent_ids) == [1, 2]
        assert p.params not in (a, b)
        assert all(p.params[k] in (a[k], b[k]) for k in seed.params)


def test_unknown_operator_is_refused():
    with pytest.raises(ValueError, match="unknown operator 'mutate'"):
        make_operators(["tune", "mutate"])


def test_lineage_commits_only_correct_and_at_least_as_fast():
    s = LineageStrategy()
    assert s.consider(Scored(1, "f", {}, 0.0), ()).accepted is False
    v = s.consider(Scored(2, "f", {}, 0.5), ())
    assert v.accepted and v.new_best
    assert not s.consider(Scored(3, "f", {}, 0.4), ()).accepted
    tie = s.consider(Scored(4, "f", {}, 0.5), ())
    assert tie.accepted and not tie.new_best  # at least as fast: committed
    assert s.select(random.Random(0))[1][0].candidate_id == 4  # operators build on the latest version
    assert [e.candidate_id for e in s.versions] == [2, 4]
    assert make_strategy("lineage").name == "lineage"
    with pytest.raises(ValueError):
        make_strategy("random-walk")


def test_map_elites_keeps_the_fittest_per_cell_and_migrates_around_the_ring():
    s = MapElitesStrategy(islands=3, migrate_every=100)
    assert s.consider(Scored(1, "f", {}, 0.3), ("f", 1), island=0).accepted
    assert not s.consider(Scored(2, "f", {}, 0.2), ("f", 1), island=0).accepted
    assert s.consider(Scored(3, "f", {}, 0.4), ("f", 1), island=0).accepted
    assert s.consider(Scored(4, "f", {}, 0.1), ("f", 2), island=0).accepted  # a new cell: kept though slower
    assert s.best().candidate_id == 3
    moved = s.migrate()
    assert (1, 3) in moved
    assert 3 in {e.candidate_id for e in s.islands[1].cells.values()}


def test_descriptor_bins_are_fixed_and_ignore_source_length(rmsnorm):
    definition, seeds = rmsnorm
    seed = next(iter(seeds.values()))
    sol = seed.to_solution(definition)
    d1 = descriptor("f", {"BLOCK_SIZE": 1024, "num_warps": 4}, sol)
    padded = sol.model_copy(deep=True)
    padded.sources[0].content += "\n# " + "x" * 5000
    assert descriptor("f", {"BLOCK_SIZE": 1024, "num_warps": 4}, padded) == d1
    assert descriptor("f", {"BLOCK_SIZE": 4096, "num_warps": 4}, sol) != d1


def test_supervisor_redirects_after_patience_steps_and_resets_on_improvement():
    sup = StallSupervisor(["tune", "seed", "crossover"], patience=3)
    assert sup.observe(False) is None and sup.observe(False) is None
    assert sup.observe(True) is None  # an improvement resets the count
    assert sup.observe(False) is None and sup.observe(False) is None
    r = sup.observe(False)
    assert r is not None and r.favoured == "seed" and "3 evaluations" in r.reason
    assert sup.direction.startswith("seed")
    picks = [sup.choose(random.Random(i)) for i in range(200)]
    assert picks.count("seed") > picks.count("tune")
