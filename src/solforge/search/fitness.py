"""Fitness: what the search maximizes, and the one geometric mean every summary uses.

A candidate's fitness over a round of workloads is 0 when any workload failed, else the
geometric mean of the workloads' SOL scores (DESIGN.md, "The search: Fitness"). The SOL
score is SOL-ExecBench's `S = 1 / (1 + (T_k - T_SOL) / (T_b - T_SOL))`: 0.5 at the
baseline T_b, 1 at the speed of light. A geometric mean, not an arithmetic one, because
scores and speedups are ratios: halving one workload's time counts the same whichever
workload it is (Fleming & Wallace, "How not to lie with statistics", CACM 1986).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from solforge.spec import EvaluationStatus, Trace


def geometric_mean(values: Iterable[float | None]) -> float | None:
    """exp(mean(log v)) over the values that are present; None entries (a workload without
    the figure, e.g. no SOL bound) are skipped, and None is returned when none is left.

    Raises ValueError for a value that is not finite or not > 0: a ratio of times is
    positive, so such a value is a bug upstream, never something to average away.
    """
    present = [v for v in values if v is not None]
    for v in present:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"geometric_mean: expected finite values > 0, got {v!r}")
    if not present:
        return None
    return math.exp(math.fsum(math.log(v) for v in present) / len(present))


def sol_score_of(trace: Trace) -> float | None:
    """The trace's SOL score (`evaluation.solforge.sol.sol_score`, in (0, 1]); None when it
    has none (failed, or the device's peaks are unknown)."""
    ev = trace.evaluation
    return ev.solforge.sol.sol_score if ev is not None and ev.solforge.sol is not None else None


def fitness_of(traces: Sequence[Trace]) -> float:
    """Fitness of one round: 0.0 when any workload's status is not PASSED (or a score is 0),
    else the geometric mean of the workloads' SOL scores.

    Raises ValueError for no traces, a trace without an evaluation, or a PASSED trace
    without a finite SOL score (the device's peaks were unknown: such a run cannot be
    scored).
    """
    if not traces:
        raise ValueError("fitness_of: no traces")
    for t in traces:
        if t.evaluation is None:
            raise ValueError(f"trace for workload {t.workload.uuid}: no evaluation (a workload-only trace)")
    if any(t.evaluation.status is not EvaluationStatus.PASSED for t in traces):
        return 0.0
    scores = [sol_score_of(t) for t in traces]
    for t, score in zip(traces, scores):
        if score is None or not math.isfinite(score):
            raise ValueError(
                f"trace for workload {t.workload.uuid}: evaluation.solforge.sol.sol_score: "
                f"{score} on a PASSED trace; fitness needs a finite SOL score"
            )
    if min(scores) <= 0.0:
        return 0.0
    return geometric_mean(scores)
