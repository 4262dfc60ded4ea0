"""The stall supervisor: draws the next operator by weights it adapts to what each
operator achieved, and after K evaluations without improvement switches operator or
direction, and says why.

Weights (adaptive pursuit: D. Thierens, "An adaptive pursuit strategy for allocating
operator probabilities", GECCO 2005). Each operator has a quality estimate Q, the
running mean (rate `ALPHA`) of its rewards: 1 when its candidate improved on its best
parent (or, made from no parent, on the best before it), 0 otherwise. After each
reward the weight of the operator with the highest Q moves a step (`BETA`) toward
1 - P_MIN x (operators - 1) and every other weight toward `P_MIN`: an operator that
keeps improving on its parents gets most of the proposals, and none falls below
`P_MIN`, so an operator that was unlucky early is still tried. Until some operator has
earned a reward the weights are the starting ones (the first operator favoured).

On a stall (`patience` evaluations without a new best) it favours another operator: of
the others, the one with the highest Q (the next in the run's operator order, round the
ring, on ties). The weights start again with it favoured (`FAVOURED_WEIGHT`); its
direction hint (from the operator registry) is what the operators read
(`SearchContext.direction`), and the returned `Redirect` is recorded by the controller
as a supervisor note in the archive.

`adaptive=False` keeps the starting weights and never redirects: best-of-N's operators
are drawn independently of every result (`BestOfNStrategy`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

FAVOURED_WEIGHT = 0.6  # the favoured operator's starting weight; the rest share 0.4
P_MIN = 0.1  # no operator's weight falls below this (Thierens' p_min), or 1 / (2 x operators) when less
ALPHA = 0.3  # the rate of the quality estimates' running mean
BETA = 0.3  # the step of the weights toward their pursuit targets


@dataclass
class Redirect:
    reason: str
    favoured: str
    direction: str


class StallSupervisor:
    """Draws operators by adaptive weights, and redirects after `patience` steps without improvement.

    Raises ValueError for an empty operator list.
    """

    def __init__(self, operators: list[str], patience: int = 6, directions: Mapping[str, str] | None = None,
                 adaptive: bool = True) -> None:  # fmt: skip
        if not operators:
            raise ValueError("the supervisor needs at least one operator")
        self.operators = list(operators)
        self.directions = dict(directions or {})  # operator -> hint; the registry's `directions()`
        self.patience = patience
        self.adaptive = adaptive
        self.favoured = self.operators[0]
        self.weights = self._weights_for(self.favoured)
        self.quality = {op: 0.0 for op in self.operators}
        self.stalled_steps = 0
        self.direction: str | None = None

    def _weights_for(self, favoured: str) -> dict[str, float]:
        if len(self.operators) == 1:
            return {favoured: 1.0}
        rest = (1 - FAVOURED_WEIGHT) / (len(self.operators) - 1)
        return {op: (FAVOURED_WEIGHT if op == favoured else rest) for op in self.operators}

    def choose(self, rng: random.Random) -> str:
        ops = list(self.weights)
        return rng.choices(ops, weights=[self.weights[o] for o in ops])[0]

    def observe(self, improved: bool, operator: str | None = None, improved_parent: bool | None = None
                ) -> Redirect | None:  # fmt: skip
        """Count one evaluated candidate: `improved` whether it is a new best; `operator`
        the operator that made it and `improved_parent` whether it beat its best parent
        (None: it had none, and `improved` is its reward). Returns a Redirect when the
        search has stalled."""
        if self.adaptive and operator in self.quality:
            self._reward(operator, float(improved if improved_parent is None else improved_parent))
        if improved:
            self.stalled_steps = 0
            return None
        self.stalled_steps += 1
        if not self.adaptive or self.stalled_steps < self.patience:
            return None
        stalled = self.stalled_steps
        self.stalled_steps = 0
        ring = self.operators.index(self.favoured)
        others = [self.operators[(ring + i) % len(self.operators)] for i in range(1, len(self.operators))] or \
            [self.favoured]
        nxt = max(others, key=lambda op: (self.quality[op], -others.index(op)))
        self.favoured = nxt
        self.weights = self._weights_for(nxt)
        self.direction = self.directions.get(nxt, nxt)
        return Redirect(
            reason=f"no improvement in {stalled} evaluations",
            favoured=nxt,
            direction=self.direction,
        )

    def _reward(self, operator: str, reward: float) -> None:
        self.quality[operator] += ALPHA * (reward - self.quality[operator])
        if len(self.operators) == 1 or max(self.quality.values()) == min(self.quality.values()):
            return  # no operator has earned more than another: the weights stay
        best = max(self.operators, key=lambda op: (self.quality[op], op == self.favoured))
        p_min = min(P_MIN, 0.5 / len(self.operators))
        p_max = 1 - p_min * (len(self.operators) - 1)
        for op in self.operators:
            target = p_max if op == best else p_min
            self.weights[op] += BETA * (target - self.weights[op])
