"""The parameter tuner behind the `tune` operator: which point of a seed kernel's
PARAM_SPACE to evaluate next, given every point evaluated so far.

Strategies (`STRATEGIES`):
- `tpe` (default): Optuna's Tree-structured Parzen Estimator (Bergstra et al., NeurIPS
  2011), multivariate, so parameters that act together (rows per chunk and
  parallelism) are modelled together. A model-based search in the spirit of Helion's
  autotuner (LFBO), which beats random sampling at small budgets;
- `gp`: Optuna's Gaussian-process sampler (needs scipy);
- `random`: a uniformly random point not yet evaluated;
- `grid`: the next point of the full product in declared order (exhaustive search);
- `local`: a neighbour of the parent in one or two parameters (the operator's older
  rule; kept for comparison).

The archive is the study's history. `suggest` is stateless: it rebuilds the Optuna
study from the (params, value) pairs it is given each time, so a run that was killed
and resumed continues the same study from what its archive holds, and two runs with
the same archive and seed propose the same point. Points already evaluated or in flight
are never proposed again: a model that asks for one is told its known value (or, in
flight, its pending state) and asked again.

Encoding. A parameter whose values are all numbers (not bools) is ordinal: the model
sees its index in ascending order (an `IntDistribution`), so "larger tile" means
something to it. Bools and strings are categorical. Values are given back exactly as
PARAM_SPACE declares them.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

STRATEGIES = ("tpe", "gp", "random", "grid", "local")
DEFAULT_STRATEGY = "tpe"
# Trials the model-based samplers draw at random before they model: small, because the
# seed's defaults are always the first point and a CPU search is short.
STARTUP_TRIALS = 3
ASK_ATTEMPTS = 16  # a model that keeps asking for known points gets this many tries
ENUMERABLE = 100_000  # spaces up to this many points are enumerated for the fallbacks

ParamValue = Any  # int | float | bool | str, as PARAM_SPACE declares


def _ordinal(values: Sequence[ParamValue]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _key(params: Mapping[str, ParamValue]) -> tuple:
    # (type name, value): 1 and True are different points
    return tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))


def space_size(space: Mapping[str, Sequence[ParamValue]]) -> int:
    return math.prod(len(v) for v in space.values())


class Tuner:
    """Proposes the next point of `space` (name -> declared values) by `strategy`.

    Raises ValueError for an unknown strategy or an empty space; ImportError (with what
    to install) for `gp` without scipy.
    """

    def __init__(self, space: Mapping[str, Sequence[ParamValue]], strategy: str = DEFAULT_STRATEGY) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"tune strategy '{strategy}': expected one of {', '.join(STRATEGIES)}")
        if not space or any(len(v) == 0 for v in space.values()):
            raise ValueError("tune: an empty parameter space")
        self.space = {k: list(v) for k, v in space.items()}
        self.strategy = strategy
        # ordinal parameters: index -> value in ascending order
        self._sorted = {k: sorted(v) for k, v in self.space.items() if _ordinal(v)}

    # -- the one call ---------------------------------------------------------------------
    def suggest(self, history: Sequence[tuple[Mapping[str, ParamValue], float]], seed: int,
                pending: Sequence[Mapping[str, ParamValue]] = (),
                parent: Mapping[str, ParamValue] | None = None,
                unjudged: Sequence[Mapping[str, ParamValue]] = ()) -> dict[str, ParamValue] | None:  # fmt: skip
        """The next point to evaluate: not in `history` ((params, value) pairs, value the
        fitness, higher is better; 0 for a failure), nor in `pending` (points in flight),
        nor in `unjudged` (points evaluated whose figures the model must not learn from: an
        unstable timing, whose slowed figure would teach it that a good region is bad).
        `seed` makes the choice reproducible; `parent` is the point `local` moves from.
        None when every point of the space is taken."""
        taken = {_key(p) for p, _ in history} | {_key(p) for p in pending} | {_key(p) for p in unjudged}
        if len(taken) >= space_size(self.space):
            return None
        rng = random.Random(seed)
        if self.strategy == "grid":
            return self._grid(taken)
        if self.strategy == "random":
            return self._random(taken, rng)
        if self.strategy == "local":
            return self._local(parent or (history[-1][0] if history else None), taken, rng)
        return self._model(history, pending, taken, seed, rng)

    # -- strategies -------------------------------------------------------------------------
    def _points(self):
        names = list(self.space)
        for values in itertools.product(*(self.space[n] for n in names)):
            yield dict(zip(names, values))

    def _grid(self, taken: set) -> dict[str, ParamValue] | None:
        return next((p for p in self._points() if _key(p) not in taken), None)

    def _random(self, taken: set, rng: random.Random) -> dict[str, ParamValue] | None:
        if space_size(self.space) <= ENUMERABLE:
            free = [p for p in self._points() if _key(p) not in taken]
            return rng.choice(free) if free else None
        for _ in range(10 * ASK_ATTEMPTS):
            p = {n: rng.choice(v) for n, v in self.space.items()}
            if _key(p) not in taken:
                return p
        return None

    def _local(self, parent: Mapping[str, ParamValue] | None, taken: set,
               rng: random.Random) -> dict[str, ParamValue] | None:  # fmt: skip
        if parent is None:
            return self._random(taken, rng)
        names = [n for n, v in self.space.items() if len(v) > 1]
        for _ in range(ASK_ATTEMPTS):
            params = dict(parent)
            for name in rng.sample(names, k=min(len(names), 1 if rng.random() < 0.6 else 2)):
                values = self._sorted.get(name) or self.space[name]
                i = values.index(params[name]) if params.get(name) in values else rng.randrange(len(values))
                # a neighbour in the declared order, or now and then a jump, to leave a local optimum
                j = i + rng.choice((-1, 1)) if rng.random() < 0.8 else rng.randrange(len(values))
                j = min(max(j, 0), len(values) - 1)
                if j == i:
                    j = i - 1 if i > 0 else i + 1
                params[name] = values[j]
            if _key(params) not in taken:
                return params
        return self._random(taken, rng)

    def _model(self, history, pending, taken: set, seed: int, rng: random.Random) -> dict[str, ParamValue] | None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        distributions = self._distributions()
        if self.strategy == "gp":
            try:
                import scipy  # noqa: F401 - Optuna's GPSampler needs it
            except ImportError:
                raise ImportError("tune strategy 'gp' needs scipy (pip install scipy)") from None
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, multivariate=True,
                                                 constant_liar=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        known: dict[tuple, float] = {}
        for params, value in history:
            known[_key(params)] = value
            study.add_trial(optuna.trial.create_trial(params=self._encode(params), distributions=distributions,
                                                      value=float(value)))
        for params in pending:  # in flight: the model knows not to crowd them (constant liar)
            study.add_trial(optuna.trial.create_trial(params=self._encode(params), distributions=distributions,
                                                      state=optuna.trial.TrialState.RUNNING))
        for _ in range(ASK_ATTEMPTS):
            trial = study.ask(distributions)
            params = self._decode(trial.params)
            k = _key(params)
            if k not in taken:
                return params
            # asked for a known point: tell it what it is, so the next ask moves on
            if k in known:
                study.tell(trial, known[k])
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return self._random(taken, rng)

    # -- encoding ------------------------------------------------------------------------
    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        out: dict[str, Any] = {}
        for name, values in self.space.items():
            if name in self._sorted:
                out[name] = IntDistribution(0, len(values) - 1)
            else:
                out[name] = CategoricalDistribution(values)
        return out

    def _encode(self, params: Mapping[str, ParamValue]) -> dict[str, Any]:
        return {n: (self._sorted[n].index(v) if n in self._sorted else v) for n, v in params.items() if n in self.space}

    def _decode(self, encoded: Mapping[str, Any]) -> dict[str, ParamValue]:
        return {n: (self._sorted[n][int(v)] if n in self._sorted else v) for n, v in encoded.items()}
