"""Variation operators: one small interface, `propose(context) -> Candidate | NoCandidate | None`,
and the one registry every operator is built from.

The registry maps an operator's name (what `--operators` takes, what the archive
records) to an `OperatorSpec`: a factory, a one-line summary, the stall supervisor's
direction hint, whether it is in the default set, and what it needs. Operator names
live there and nowhere else: the CLI's help and checks, the supervisor's hints and the
controller read it. The search registers its own LLM-free operators below; the agent
package registers `agent` and `agent-cli` when it is imported (`import solforge.agent`,
which the `solforge` command does), so the search never imports the agent.

The operators here need no LLM:
- `tune` proposes the next point of a parameterized kernel's declared space (block
  sizes, num_warps, num_stages, rows per program, anything the seed kernel declares):
  by default the point Optuna's TPE expects best given every point evaluated so far
  (`search.tuning`), or by random, grid or local (neighbour) search;
- `crossover` takes each parameter from one of two elites of the same kernel family;
- `seed` brings in another seed kernel of the knowledge base for the same op type
  (another family: one-pass vs two-pass softmax, persistent vs plain grid), at its
  default parameters the first time and at random points of its space after that.

An operator returns None when it has nothing new to offer (e.g. crossover with fewer
than two elites of one family); the controller then asks another.

Adding an operator: write a class with `name` and `propose(context)`, and register it
with `register_operator(OperatorSpec(name, factory, summary, direction))`, where
`factory(setup: OperatorSetup)` builds it; see docs/internals.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from solforge.search.context import Candidate, EvaluatedCandidate, NoCandidate, SearchContext
from solforge.search.fitness import Verdict
from solforge.spec import Definition, Solution, SpecError, Trace, Workload

if TYPE_CHECKING:
    from solforge.knowledge import SeedKernel


class Operator(Protocol):
    name: str

    def propose(self, context: SearchContext) -> Candidate | NoCandidate | None: ...


@dataclass(frozen=True)
class OperatorOptions:
    """The user's options for the operators that need more than a context (the agents)."""

    llm: tuple[str, ...] = ()  # `--llm` values, e.g. ("openai:gpt-4o",)
    llm_config: Path | None = None  # the LLM config file (default: the user config dir's)
    max_cost_usd: float | None = None  # LLM budget of the whole run, US dollars
    agent_cmd: str | None = None  # command template of the agent-cli operator
    agent_timeout_s: float = 1800.0  # per agent-cli step, seconds
    tune_strategy: str = "tpe"  # the tune operator's tuner (`search.tuning.STRATEGIES`)


@dataclass(frozen=True)
class OperatorSetup:
    """What a factory gets to build an operator for one run.

    `evaluate(solution)` runs the harness on the search workloads (never a held-out one)
    with SOL reports attached; an operator that evaluates while it works (the agent)
    calls it, and reports the time it took in its step's usage.
    """

    definition: Definition
    device: str  # "cpu", "cuda"
    language: str  # the language of this device's seed kernels ("numba" on the CPU, "triton" on CUDA)
    search_workloads: tuple[Workload, ...]
    evaluate: Callable[[Solution], list[Trace]]
    options: OperatorOptions = field(default_factory=OperatorOptions)
    dataset_root: Path | None = None


def _nothing_missing(options: OperatorOptions) -> str | None:
    return None


@dataclass(frozen=True)
class OperatorSpec:
    """One entry of the registry."""

    name: str
    factory: Callable[[OperatorSetup], Operator]
    summary: str  # one line, for help texts and docs
    direction: str  # the supervisor's hint when it favours this operator after a stall
    default_rank: int | None = None  # position in the default set; None: only when asked for
    missing: Callable[[OperatorOptions], str | None] = _nothing_missing  # what the options lack to build it
    drop_when_missing: bool = False  # asked for but missing: dropped with a notice (True) or refused (False)


_REGISTRY: dict[str, OperatorSpec] = {}


def register_operator(spec: OperatorSpec) -> OperatorSpec:
    """Add an operator to the registry; registering a name again from the same module
    replaces the entry (a reloaded module). Raises ValueError when another module holds
    the name, or the name is not letters, digits and '-'."""
    if not spec.name or not all(ch.isalnum() or ch == "-" for ch in spec.name):
        raise ValueError(f"operator name {spec.name!r}: expected letters, digits and '-'")
    held = _REGISTRY.get(spec.name)
    if held is not None and held.factory.__module__ != spec.factory.__module__:
        raise ValueError(f"operator '{spec.name}' is already registered (by {held.factory.__module__})")
    _REGISTRY[spec.name] = spec
    return spec


def operator_names() -> tuple[str, ...]:
    """The registered operator names, in registration order."""
    return tuple(_REGISTRY)


def operator_spec(name: str) -> OperatorSpec:
    """The registry entry of `name`. Raises SpecError naming the registered operators."""
    if name not in _REGISTRY:
        hint = "" if {"agent", "agent-cli"} <= set(_REGISTRY) else "; `import solforge.agent` adds agent, agent-cli"
        raise SpecError(f"--operators: unknown operator '{name}' (expected {', '.join(_REGISTRY)}{hint})")
    return _REGISTRY[name]


def directions() -> dict[str, str]:
    """Operator name -> the stall supervisor's hint for it."""
    return {name: spec.direction for name, spec in _REGISTRY.items()}


def choose_operators(requested: Sequence[str] | None, options: OperatorOptions) -> tuple[tuple[str, ...], list[str]]:
    """(the operators of a run, notices for the user).

    `requested` None: the default set, those with a `default_rank` whose needs the
    options meet, by rank. Otherwise the names given, in order, each checked: an unknown
    name, or the missing need of an operator that is refused without it, raises
    SpecError (one line naming `--operators`); the missing need of one that is dropped
    gives a notice, and when every name is dropped the default set runs instead.
    """
    def default_set() -> tuple[str, ...]:
        ranked = sorted((s for s in _REGISTRY.values() if s.default_rank is not None and s.missing(options) is None),
                        key=lambda s: s.default_rank)
        return tuple(s.name for s in ranked)

    if requested is None:
        return default_set(), []
    kept, dropped = [], []
    for name in dict.fromkeys(requested):
        spec = operator_spec(name)
        why = spec.missing(options)
        if why is None:
            kept.append(name)
        elif spec.drop_when_missing:
            dropped.append(why)
        else:
            raise SpecError(f"--operators {name}: {why}")
    if not requested:
        raise SpecError(f"--operators: expected at least one of {', '.join(_REGISTRY)}")
    names = tuple(kept) or default_set()
    return names, [f"{why}: running {', '.join(names)}" for why in dropped]


def build_operators(names: Sequence[str], setup: OperatorSetup) -> dict[str, Operator]:
    """name -> operator, each built by its registered factory. Raises SpecError for an
    unknown name or what a factory refuses (e.g. an unknown LLM provider)."""
    return {name: operator_spec(name).factory(setup) for name in names}


# -- the LLM-free operators ------------------------------------------------------------------


def _candidate(kernel: SeedKernel, definition: Definition, params: dict[str, Any], operator: str,
               parent_ids: Sequence[int], rationale: str) -> Candidate:
    solution = kernel.to_solution(definition, params=params)
    return Candidate(solution=solution, operator=operator, family=kernel.name, params=dict(params),
                     parent_ids=tuple(parent_ids), rationale=rationale)


class TuneOperator:
    """Proposes the next parameter point of a parent's seed kernel family: by default the
    point Optuna's TPE model expects to be best given every point of that family the run
    has evaluated (`search.tuning`; the archive is the study's history, so a resumed run
    continues it); `strategy` "random", "grid" or "local" (a neighbour of the parent) for
    comparison. A point whose figure is unstable and unconfirmed (not sound: a timing the
    machine slowed) is kept out of the model's history, so that one slowed timing does not
    teach it that a good region is bad, and is never proposed again."""

    name = "tune"

    def __init__(self, strategy: str = "tpe") -> None:
        from solforge.search.tuning import Tuner  # noqa: F401 - an unknown strategy fails here, not mid-run

        self.strategy = strategy

    def propose(self, context: SearchContext) -> Candidate | None:
        from solforge.search.tuning import Tuner

        # only candidates generated from a seed kernel's parameters (an agent's edits have none)
        tunable = [p for p in context.parents if p.family in context.seed_kernels and p.params]
        if not tunable:
            return None
        parent = tunable[0] if context.rng.random() < 0.7 else context.rng.choice(tunable)
        kernel = context.seed_kernels[parent.family]
        space = {n: tuple(v) for n, v in kernel.param_space.items()}
        if all(len(v) == 1 for v in space.values()):
            return None
        history, pending, unjudged = [], [], []
        for t in context.trials:
            if t.family != parent.family or not all(space.get(k) and v in space[k] for k, v in t.params.items()):
                continue
            if t.fitness is None:
                pending.append(dict(t.params))
            elif t.verdict == Verdict.unstable.value and not t.sound:
                unjudged.append(dict(t.params))  # a slowed figure: kept from the model, never proposed again
            else:
                history.append((dict(t.params), t.fitness))
        if not any(dict(parent.params) == p for p, _ in history) and dict(parent.params) not in unjudged:
            pending.append(dict(parent.params))  # never the parent's own point
        params = Tuner(space, self.strategy).suggest(history, seed=context.rng.getrandbits(32), pending=pending,
                                                     parent=dict(parent.params), unjudged=unjudged)
        if params is None:
            return None
        changed = [f"{n} {parent.params.get(n)} -> {v}" for n, v in params.items() if parent.params.get(n) != v]
        return _candidate(kernel, context.definition, params, self.name, [parent.candidate_id],
                          f"tune ({self.strategy}, {len(history)} points known"
                          + (f", {len(unjudged)} unstable set aside" if unjudged else "") + f") {parent.family}: "
                          + (", ".join(changed) or "the parent's point"))


class CrossoverOperator:
    """Takes each parameter from one of two elites of the same family."""

    name = "crossover"

    def propose(self, context: SearchContext) -> Candidate | None:
        by_family: dict[str, list[EvaluatedCandidate]] = {}
        for e in context.elites:
            if e.family in context.seed_kernels and e.params:
                by_family.setdefault(e.family, []).append(e)
        pairs = {f: es for f, es in by_family.items() if len(es) >= 2}
        if not pairs:
            return None
        family = context.rng.choice(sorted(pairs))
        a, b = context.rng.sample(pairs[family][:6], 2)
        kernel = context.seed_kernels[family]
        params = {n: (a.params if context.rng.random() < 0.5 else b.params).get(n, kernel.params[n])
                  for n in kernel.param_space}
        if params in (dict(a.params), dict(b.params)):
            name = context.rng.choice([n for n in kernel.param_space if a.params.get(n) != b.params.get(n)] or
                                      list(kernel.param_space))
            params[name] = b.params.get(name) if params == dict(a.params) else a.params.get(name)
        return _candidate(kernel, context.definition, params, self.name, [a.candidate_id, b.candidate_id],
                          f"crossover of #{a.candidate_id} and #{b.candidate_id} ({family})")


class SeedKernelOperator:
    """Brings in a seed kernel family of the knowledge base, least-tried first (operator `seed`)."""

    name = "seed"

    def propose(self, context: SearchContext) -> Candidate | None:
        if not context.seed_kernels:
            return None
        families = sorted(context.seed_kernels, key=lambda f: (context.tried_families.get(f, 0), f))
        family = families[0]
        kernel = context.seed_kernels[family]
        if context.tried_families.get(family, 0) == 0:
            params = dict(kernel.params)
            why = f"seed {family} at its default parameters"
        else:
            params = {n: context.rng.choice(list(values)) for n, values in kernel.param_space.items()}
            why = f"seed {family} at a random point of its parameter space"
        return _candidate(kernel, context.definition, params, self.name, [], why)


register_operator(OperatorSpec(
    "tune", lambda setup: TuneOperator(setup.options.tune_strategy),
    "the next parameter point of a seed kernel by a model of the points tried (Optuna TPE)",
    "tune: move the parameters of the best kernel further (larger steps, other parameters)", default_rank=1))
register_operator(OperatorSpec(
    "crossover", lambda setup: CrossoverOperator(), "take each parameter from one of two elites of a family",
    "crossover: recombine the parameters of the elites", default_rank=2))
register_operator(OperatorSpec(
    "seed", lambda setup: SeedKernelOperator(), "bring in another seed kernel of the knowledge base",
    "seed: bring in another kernel family of the knowledge base", default_rank=3))


def describe_defaults() -> str:
    """The default set in words, for help texts: e.g. "tune, crossover, seed; also agent
    when what it needs is given"."""
    ranked = sorted((s for s in _REGISTRY.values() if s.default_rank is not None), key=lambda s: s.default_rank)
    plain = [s.name for s in ranked if s.missing(OperatorOptions()) is None]
    needy = [s.name for s in ranked if s.missing(OperatorOptions()) is not None]
    return ", ".join(plain) + (f"; also {', '.join(needy)} when what it needs is given" if needy else "")


def describe_registry() -> Mapping[str, str]:
    """Operator name -> its one-line summary, in registration order (for help texts)."""
    return {name: spec.summary for name, spec in _REGISTRY.items()}
