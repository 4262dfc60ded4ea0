"""Variation operators: one small interface, `propose(context) -> Proposal | None`.

The operators here need no LLM:
- `tune` mutates one or two declared parameters of a parameterized kernel to a
  neighbouring value of its declared range (block sizes, num_warps, num_stages, rows
  per program, anything the seed declares);
- `crossover` takes each parameter from one of two elites of the same kernel family;
- `seed` brings in another kernel of the knowledge base for the same op type (another
  family: one-pass vs two-pass softmax, persistent vs plain grid), at its default
  parameters the first time and at random points of its space after that.

The agentic operators (an LLM agent, an external coding-agent CLI) implement the same
protocol. An operator returns None when it has nothing new to offer (e.g. crossover
with fewer than two elites of one family); the controller then asks another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from solforge.knowledge import SeedKernel
from solforge.spec import Definition, Solution


@dataclass
class Proposal:
    """A proposed kernel, not yet evaluated."""

    solution: Solution
    operator: str
    family: str  # the seed kernel it descends from (SeedKernel.name): parameters mean the same within it
    params: dict[str, Any]
    parent_ids: list[int] = field(default_factory=list)
    rationale: str = ""
    island: int = 0


@dataclass
class Scored:
    """An evaluated candidate an operator may build on (search workloads only)."""

    candidate_id: int
    family: str
    params: dict[str, Any]
    fitness: float


@dataclass
class SearchContext:
    """What an operator sees: never the held-out workloads or their results."""

    definition: Definition
    seeds: dict[str, SeedKernel]  # SeedKernel.name -> seed kernel, those that fit the definition and device
    parents: list[Scored]  # the strategy's choice of parents, best first
    elites: list[Scored]  # every elite the strategy keeps, best first
    tried_families: dict[str, int]  # family -> candidates proposed so far
    rng: random.Random
    direction: str | None = None  # the stall supervisor's hint, e.g. "explore another family"


class Operator(Protocol):
    name: str

    def propose(self, context: SearchContext) -> Proposal | None: ...


def _candidate(seed: SeedKernel, definition: Definition, params: dict[str, Any], operator: str,
               parent_ids: list[int], rationale: str) -> Proposal:
    solution = seed.to_solution(definition, params=params)
    return Proposal(solution=solution, operator=operator, family=seed.name, params=dict(params),
                     parent_ids=parent_ids, rationale=rationale)


class TuneOperator:
    """Moves one or two parameters of a parent to a neighbouring declared value."""

    name = "tune"

    def propose(self, context: SearchContext) -> Proposal | None:
        # only candidates generated from a seed's parameters (an agent's edits have none)
        tunable = [p for p in context.parents if p.family in context.seeds and p.params]
        if not tunable:
            return None
        parent = tunable[0] if context.rng.random() < 0.7 else context.rng.choice(tunable)
        seed = context.seeds[parent.family]
        names = [n for n, values in seed.param_space.items() if len(values) > 1]
        if not names:
            return None
        params = dict(parent.params)
        changed = []
        for name in context.rng.sample(names, k=min(len(names), 1 if context.rng.random() < 0.6 else 2)):
            values = list(seed.param_space[name])
            i = values.index(params[name]) if params.get(name) in values else context.rng.randrange(len(values))
            # a neighbour in the declared order, or now and then a jump, to leave a local optimum
            j = i + context.rng.choice((-1, 1)) if context.rng.random() < 0.8 else context.rng.randrange(len(values))
            j = min(max(j, 0), len(values) - 1)
            if j == i:
                j = i - 1 if i > 0 else i + 1
            params[name] = values[j]
            changed.append(f"{name} {parent.params.get(name)} -> {values[j]}")
        return _candidate(seed, context.definition, params, self.name, [parent.candidate_id],
                          f"tune {parent.family}: " + ", ".join(changed))


class CrossoverOperator:
    """Takes each parameter from one of two elites of the same family."""

    name = "crossover"

    def propose(self, context: SearchContext) -> Proposal | None:
        by_family: dict[str, list[Scored]] = {}
        for e in context.elites:
            if e.family in context.seeds and e.params:
                by_family.setdefault(e.family, []).append(e)
        pairs = {f: es for f, es in by_family.items() if len(es) >= 2}
        if not pairs:
            return None
        family = context.rng.choice(sorted(pairs))
        a, b = context.rng.sample(pairs[family][:6], 2)
        seed = context.seeds[family]
        params = {n: (a.params if context.rng.random() < 0.5 else b.params).get(n, seed.params[n])
                  for n in seed.param_space}
        if params in (a.params, b.params):
            name = context.rng.choice([n for n in seed.param_space if a.params.get(n) != b.params.get(n)] or
                                      list(seed.param_space))
            params[name] = b.params.get(name) if params == a.params else a.params.get(name)
        return _candidate(seed, context.definition, params, self.name, [a.candidate_id, b.candidate_id],
                          f"crossover of #{a.candidate_id} and #{b.candidate_id} ({family})")


class SeedOperator:
    """Brings in a kernel family of the knowledge base, least-tried first."""

    name = "seed"

    def propose(self, context: SearchContext) -> Proposal | None:
        if not context.seeds:
            return None
        families = sorted(context.seeds, key=lambda f: (context.tried_families.get(f, 0), f))
        family = families[0]
        seed = context.seeds[family]
        if context.tried_families.get(family, 0) == 0:
            params = dict(seed.params)
            why = f"seed {family} at its default parameters"
        else:
            params = {n: context.rng.choice(list(values)) for n, values in seed.param_space.items()}
            why = f"seed {family} at a random point of its parameter space"
        return _candidate(seed, context.definition, params, self.name, [], why)


OPERATORS: dict[str, type] = {"tune": TuneOperator, "crossover": CrossoverOperator, "seed": SeedOperator}


def make_operators(names: list[str]) -> list[Operator]:
    """Instances of the named operators. Raises ValueError naming an unknown one."""
    out = []
    for n in names:
        if n not in OPERATORS:
            raise ValueError(f"unknown operator '{n}' (available: {', '.join(OPERATORS)})")
        out.append(OPERATORS[n]())
    return out
