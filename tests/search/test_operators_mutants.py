"""The variation operators and their registry at the edges the first tests left open:
which parents and elites an operator may build on, a two-valued parameter, parents at
the ends of the declared space, every value within one step, crossover of elites that
differ in two parameters only, operator names, the error for an unknown one, the order of the
default set, and registry entries that cannot be changed in place.

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the operators' contract, not a line of their code, and holds
for any tuning strategy (the tune operator's strategy may change; its contract does not).
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from solforge.knowledge import seeds_for
from solforge.problems import load_builtin
from solforge.search import operators
from solforge.search.context import EvaluatedCandidate, SearchContext
from solforge.search.operators import (
    CrossoverOperator,
    OperatorOptions,
    OperatorSpec,
    TuneOperator,
    choose_operators,
    operator_spec,
    register_operator,
)
from solforge.spec import SpecError

ROWS = "numba/rmsnorm_rows"


@pytest.fixture(scope="module")
def rmsnorm():
    definition, _ = load_builtin("rmsnorm_h4096")
    kernels = {s.name: s for s in seeds_for(definition, "numba")}
    return definition, kernels


def context(definition, kernels, parents=(), elites=(), seed=0) -> SearchContext:
    return SearchContext(definition=definition, workloads=(), seed_kernels=kernels, parents=tuple(parents),
                         elites=tuple(elites), tried_families={}, rng=random.Random(seed))


def scored(cid, family, params, definition, kernels, fitness=0.5) -> EvaluatedCandidate:
    solution = kernels[family].to_solution(definition, params) if family in kernels else None
    return EvaluatedCandidate(cid, family, dict(params), fitness, solution)


def narrowed(kernels, **space):
    """The seed kernels with ROWS's space cut down to `space` (other parameters fixed at their defaults)."""
    kernel = kernels[ROWS]
    full = {n: (space[n] if n in space else (kernel.params[n],)) for n in kernel.param_space}
    return {**kernels, ROWS: dataclasses.replace(kernel, param_space=full)}


# -- tune ------------------------------------------------------------------------------------


def test_tune_builds_only_on_seed_families_with_parameters(rmsnorm):
    definition, kernels = rmsnorm
    handwritten = scored(1, ROWS, {}, definition, kernels)  # an agent's edit of a seed: no parameters
    foreign = EvaluatedCandidate(2, "agent/own", {"BLOCK": 128}, 0.9, None)  # parameters, but no seed family
    for parents in ([handwritten], [foreign], [handwritten, foreign]):
        assert TuneOperator().propose(context(definition, kernels, parents=parents)) is None


def test_tune_builds_on_one_of_the_parents_it_was_given(rmsnorm):
    definition, kernels = rmsnorm
    parents = [scored(7, ROWS, kernels[ROWS].params, definition, kernels),
               scored(8, ROWS, {**kernels[ROWS].params, "ACCUMULATORS": 4}, definition, kernels)]
    seen = {TuneOperator().propose(context(definition, kernels, parents=parents, seed=i)).parent_ids
            for i in range(40)}
    assert seen == {(7,), (8,)}


def test_tune_flips_a_parameter_with_two_values(rmsnorm):
    definition, kernels = rmsnorm
    kernels = narrowed(kernels, PARALLEL=(False, True))
    parent = scored(3, ROWS, kernels[ROWS].params, definition, kernels)
    for i in range(10):
        p = TuneOperator().propose(context(definition, kernels, parents=[parent], seed=i))
        assert p is not None and p.params == {**kernels[ROWS].params, "PARALLEL": True}


def test_tune_has_nothing_to_offer_when_every_parameter_has_one_value(rmsnorm):
    definition, kernels = rmsnorm
    kernels = narrowed(kernels)
    parent = scored(3, ROWS, kernels[ROWS].params, definition, kernels)
    assert TuneOperator().propose(context(definition, kernels, parents=[parent])) is None


def test_tune_stays_in_the_space_from_its_ends(rmsnorm):
    definition, kernels = rmsnorm
    space = kernels[ROWS].param_space
    for end in (0, -1):
        params = {n: values[end] for n, values in space.items()}
        parent = scored(5, ROWS, params, definition, kernels)
        for i in range(40):
            p = TuneOperator().propose(context(definition, kernels, parents=[parent], seed=i))
            assert p.params != params and all(v in space[n] for n, v in p.params.items()), p.params


def test_tune_reaches_every_other_value_in_one_step(rmsnorm):
    # Neighbours, and now and then a jump (to leave a local optimum): from a parent in the
    # middle of the range, every other declared value is proposed some time.
    definition, kernels = rmsnorm
    kernels = narrowed(kernels, ACCUMULATORS=(1, 4, 8, 16))
    parent = scored(5, ROWS, {**kernels[ROWS].params, "ACCUMULATORS": 8}, definition, kernels)
    reached = {TuneOperator().propose(context(definition, kernels, parents=[parent], seed=i)).params["ACCUMULATORS"]
               for i in range(200)}
    assert reached == {1, 4, 16}


# -- crossover ---------------------------------------------------------------------------------


def test_crossover_crosses_only_seed_family_elites_with_parameters(rmsnorm):
    definition, kernels = rmsnorm
    a = scored(1, ROWS, {}, definition, kernels)
    b = scored(2, ROWS, {}, definition, kernels)
    foreign = [EvaluatedCandidate(3, "agent/own", {"BLOCK": 128}, 0.9, None),
               EvaluatedCandidate(4, "agent/own", {"BLOCK": 256}, 0.8, None)]
    for elites in ([a, b], foreign):
        assert CrossoverOperator().propose(context(definition, kernels, elites=elites)) is None


def test_crossover_of_elites_that_differ_in_two_parameters_is_neither_of_them(rmsnorm):
    # The two parameters they share are no material for a cross: the child mixes the two
    # that differ, and so is a copy of neither elite.
    definition, kernels = rmsnorm
    a = dict(kernels[ROWS].params)
    b = {**a, "ACCUMULATORS": 4, "PARALLEL": True}
    elites = [scored(1, ROWS, a, definition, kernels, 1.0), scored(2, ROWS, b, definition, kernels, 0.9)]
    for i in range(20):
        p = CrossoverOperator().propose(context(definition, kernels, elites=elites, seed=i))
        assert p.params not in (a, b), p.params


# -- the registry --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "my operator", "tune!", "näive/op"])
def test_an_operator_name_is_letters_digits_and_dashes(name):
    with pytest.raises(ValueError, match="expected letters, digits and '-'"):
        register_operator(OperatorSpec(name, lambda setup: None, "summary", "direction"))


def test_an_unknown_operator_names_the_known_ones_and_no_hint_once_the_agent_is_imported():
    import solforge.agent  # noqa: F401 - registers agent and agent-cli

    with pytest.raises(SpecError) as err:
        operator_spec("mutate")
    message = str(err.value)
    assert message.startswith("--operators: unknown operator 'mutate' (expected tune, crossover, seed")
    assert "import solforge.agent" not in message


def test_the_default_set_is_ordered_by_rank_and_a_plugin_can_take_any_place_in_it(monkeypatch):
    # A plugin's operator joins the default set at the place its rank gives it, before,
    # between or after the built-in ones.
    monkeypatch.setattr(operators, "_REGISTRY", dict(operators._REGISTRY))
    for name, rank in (("plugin-last", 3.5), ("plugin-third", 1.5), ("plugin-fifth", 2.5), ("plugin-first", 0.5)):
        register_operator(OperatorSpec(name, lambda setup: None, "s", "d", default_rank=rank))
    names, notices = choose_operators(None, OperatorOptions())
    assert names == ("plugin-first", "tune", "plugin-third", "crossover", "plugin-fifth", "seed", "plugin-last")
    assert notices == []


def test_the_default_set_in_words_names_what_runs_and_what_needs_more():
    import solforge.agent  # noqa: F401 - registers agent (default set, needs an LLM) and agent-cli (asked for only)

    assert operators.describe_defaults() == "tune, crossover, seed; also agent when what it needs is given"


def test_options_and_registry_entries_cannot_be_changed_in_place():
    spec = operator_spec("tune")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.default_rank = None  # type: ignore[misc]
    options = OperatorOptions(llm=("openai:m",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_cost_usd = 1e9  # type: ignore[misc]
    assert hash(options) == hash(OperatorOptions(llm=("openai:m",)))  # a value: equal options hash alike
    setup = operators.OperatorSetup(definition=None, device="cpu", language="numba", search_workloads=(),
                                    evaluate=lambda s: [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        setup.device = "cuda"  # type: ignore[misc]


def test_tune_builds_on_the_best_parent_most_of_the_time(rmsnorm):
    # Parents come best first; the best is the usual material, the others now and then.
    definition, kernels = rmsnorm
    parents = [scored(10 + i, ROWS, {**kernels[ROWS].params, "ROWS_PER_CHUNK": rows}, definition, kernels)
               for i, rows in enumerate((1, 2, 4, 16))]
    picks = [TuneOperator("random").propose(context(definition, kernels, parents=parents, seed=i)).parent_ids
             for i in range(200)]
    best = picks.count((10,)) / len(picks)
    assert best > 0.65, best  # at least the 0.7 of always-the-best, short of sampling noise
    assert {(11,), (12,), (13,)} <= set(picks)


def test_tune_learns_only_from_points_of_the_parents_family_inside_its_space(rmsnorm):
    from solforge.search.context import Trial

    definition, kernels = rmsnorm
    base = dict(kernels[ROWS].params)
    parent = scored(1, ROWS, base, definition, kernels)
    trials = (
        Trial(1, ROWS, base, 0.5, "scored"),  # the parent's own point: known
        Trial(2, ROWS, {**base, "ACCUMULATORS": 4}, 0.6, "scored"),  # known
        Trial(3, ROWS, {**base, "ACCUMULATORS": 3}, 0.9, "scored"),  # outside the declared space
        Trial(4, "numba/rmsnorm_tiled", {"ROWS_PER_CHUNK": 4, "PARALLEL": True}, 0.9, "scored"),  # another family
        Trial(5, "numba/rmsnorm_tiled", {}, 0.9, "scored"),
        Trial(6, ROWS, {**base, "TILE": 64}, 0.9, "scored"),  # a parameter its family does not declare
    )
    ctx = SearchContext(definition=definition, workloads=(), seed_kernels=kernels, parents=(parent,), elites=(),
                        tried_families={}, rng=random.Random(0), trials=trials)
    p = TuneOperator("random").propose(ctx)
    assert p.rationale.startswith(f"tune (random, 2 points known) {ROWS}: "), p.rationale
    assert p.params not in (base, {**base, "ACCUMULATORS": 4})


def test_tunes_rationale_names_each_parameter_it_changed(rmsnorm):
    definition, kernels = rmsnorm
    kernels = narrowed(kernels, PARALLEL=(False, True))
    parent = scored(3, ROWS, kernels[ROWS].params, definition, kernels)
    p = TuneOperator().propose(context(definition, kernels, parents=[parent]))
    assert p.rationale == f"tune (tpe, 0 points known) {ROWS}: PARALLEL False -> True"


@pytest.mark.parametrize("strategy", ["tpe", "random", "grid", "local"])
def test_tune_never_proposes_the_parents_own_point_even_when_no_trial_records_it(rmsnorm, strategy):
    # A parent may come without a trial of its own point (an elite carried over): its
    # point is still not new. Here the only other point is known, so nothing is left.
    from solforge.search.context import Trial

    definition, kernels = rmsnorm
    kernels = narrowed(kernels, PARALLEL=(False, True))
    base = dict(kernels[ROWS].params)
    parent = scored(1, ROWS, base, definition, kernels)
    for seed in range(5):
        ctx = SearchContext(definition=definition, workloads=(), seed_kernels=kernels, parents=(parent,), elites=(),
                            tried_families={}, rng=random.Random(seed),
                            trials=(Trial(2, ROWS, {**base, "PARALLEL": True}, 0.4, "scored"),))
        assert TuneOperator(strategy).propose(ctx) is None


@pytest.mark.parametrize("strategy", ["tpe", "random", "grid", "local"])
def test_tune_keeps_an_unconfirmed_unstable_figure_out_of_its_history_and_never_proposes_that_point(rmsnorm,
                                                                                                    strategy):
    # An unstable timing is a slowed figure: the model must not learn that its point is
    # bad, nor evaluate it again. Once a re-timing confirmed it (sound), it is a figure.
    from solforge.search.context import Trial

    definition, kernels = rmsnorm
    kernels = narrowed(kernels, PARALLEL=(False, True), FASTMATH=(False, True))  # 4 points
    base = dict(kernels[ROWS].params)
    parent = scored(1, ROWS, base, definition, kernels)
    slowed = {**base, "PARALLEL": True}
    confirmed = {**base, "FASTMATH": True}
    trials = (
        Trial(1, ROWS, base, 0.5, "scored"),
        Trial(2, ROWS, slowed, 0.2, "unstable", sound=False),
        Trial(3, ROWS, confirmed, 0.4, "unstable", sound=True),
    )
    for seed in range(5):
        ctx = SearchContext(definition=definition, workloads=(), seed_kernels=kernels, parents=(parent,), elites=(),
                            tried_families={}, rng=random.Random(seed), trials=trials)
        p = TuneOperator(strategy).propose(ctx)
        assert p.rationale.startswith(f"tune ({strategy}, 2 points known, 1 unstable set aside) {ROWS}: "), p.rationale
        assert p.params == {**base, "PARALLEL": True, "FASTMATH": True}  # the one point not taken
