"""The stall supervisor: after K evaluations without improvement, switch operator or
direction, and say why.

It keeps a weight per operator and draws the next operator by weight. On a stall it
moves most of the weight to the operator after the favoured one (in the run's operator
order, round the ring), sets that operator's direction hint (from the operator
registry) that the operators read (`SearchContext.direction`), and returns a
`Redirect` that the controller records as a supervisor note in the archive.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Redirect:
    reason: str
    favoured: str
    direction: str


class StallSupervisor:
    """Draws operators by weight, and redirects after `patience` steps without improvement."""

    def __init__(self, operators: list[str], patience: int = 6, directions: Mapping[str, str] | None = None) -> None:
        if not operators:
            raise ValueError("the supervisor needs at least one operator")
        self.operators = list(operators)
        self.directions = dict(directions or {})  # operator -> hint; the registry's `directions()`
        self.patience = patience
        self.favoured = self.operators[0]
        self.weights = self._weights_for(self.favoured)
        self.stalled_steps = 0
        self.direction: str | None = None

    def _weights_for(self, favoured: str) -> dict[str, float]:
        if len(self.operators) == 1:
            return {favoured: 1.0}
        rest = 0.4 / (len(self.operators) - 1)
        return {op: (0.6 if op == favoured else rest) for op in self.operators}

    def choose(self, rng: random.Random) -> str:
        ops = list(self.weights)
        return rng.choices(ops, weights=[self.weights[o] for o in ops])[0]

    def observe(self, improved: bool) -> Redirect | None:
        """Count one evaluated candidate; returns a Redirect when the search has stalled."""
        if improved:
            self.stalled_steps = 0
            return None
        self.stalled_steps += 1
        if self.stalled_steps < self.patience:
            return None
        stalled = self.stalled_steps
        self.stalled_steps = 0
        nxt = self.operators[(self.operators.index(self.favoured) + 1) % len(self.operators)]
        self.favoured = nxt
        self.weights = self._weights_for(nxt)
        self.direction = self.directions.get(nxt, nxt)
        return Redirect(
            reason=f"no improvement in {stalled} evaluations",
            favoured=nxt,
            direction=self.direction,
        )
