"""Fitness: what the search maximizes, whether the figure is sound, and the one geometric
mean every summary uses.

A round of workloads gets a `Fitness`: a value and a `Verdict` saying what the value is
worth. The value is 0 when any workload failed, else the geometric mean of the
workloads' SOL scores (DESIGN.md, "The search: Fitness"). The SOL score is
SOL-ExecBench's `S = 1 / (1 + (T_k - T_SOL) / (T_b - T_SOL))`: 0.5 at the baseline T_b,
1 at the speed of light. A geometric mean, not an arithmetic one, because scores and
speedups are ratios: halving one workload's time counts the same whichever workload it
is (Fleming & Wallace, "How not to lie with statistics", CACM 1986).

The verdict keeps an unsound figure from passing as a sound one:
- `scored`: every workload PASSED with a sound timing and a SOL score;
- `failed`: a workload did not pass (value 0);
- `cut`: the harness stopped timing a workload at the caller's cut-off (`timing.cut`:
  its median was already past 3x the best). The value is computed from the samples
  taken, an estimate of a clearly slower kernel, never a figure to select on;
- `unstable`: a timing too noisy to trust even after the harness re-ran it
  (`timing.unstable`);
- `unscored`: every workload passed but some has no SOL score (no baseline latency
  for it, peaks unknown, or a time that is not a measurement, e.g. the Triton
  interpreter); the value is the geometric mean of the scores that exist, 0 if none;
- `compiled`: a `--compile-only` round, whose value is compile-level (occupancy and
  spills from ptxas), not a timing.
Strategies select only on `selectable` verdicts (`scored`, and `compiled` in a
compile-only run). A spill penalty (`penalty` < 1) applies in selection only.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from solforge.spec import EvaluationStatus, Trace

# Selection sees a candidate whose kernels spill above the threshold at this fraction of
# its fitness: still usable, but an equal kernel without spills is preferred.
SPILL_PENALTY = 0.9


class Verdict(str, enum.Enum):
    scored = "scored"
    failed = "failed"
    cut = "cut"
    unstable = "unstable"
    unscored = "unscored"
    compiled = "compiled"

    @property
    def selectable(self) -> bool:
        """Whether a strategy may commit or keep a candidate on this verdict."""
        return self in (Verdict.scored, Verdict.compiled)


@dataclass(frozen=True)
class Fitness:
    """One round's fitness: `value` in [0, 1], what it is worth (`verdict`), and why in
    one line (`reason`: the workloads that were cut, unstable or unscored). `penalty`
    (in (0, 1]) is what selection multiplies `value` by (register spills)."""

    value: float
    verdict: Verdict
    reason: str = ""
    penalty: float = 1.0

    @property
    def selection_value(self) -> float:
        """What strategies rank by: `value` x `penalty`, and 0 for a verdict they may not select on."""
        return self.value * self.penalty if self.verdict.selectable else 0.0


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


def _label(trace: Trace) -> str:
    return trace.workload.label


def _unscored_why(trace: Trace) -> str:
    ev = trace.evaluation
    assert ev is not None
    if ev.solforge.timing is not None and not ev.solforge.timing.is_performance_measurement:
        return "not a performance measurement"
    if ev.solforge.sol is None:
        return "no SOL report"
    if not ev.solforge.baseline_latency_ms.get("eager"):
        return "no eager baseline latency"
    return "no SOL score"


def judge(traces: Sequence[Trace], compile_only: bool = False) -> Fitness:
    """The fitness of one round of traces (one per workload); see the module docstring.

    `compile_only`: the traces are a `--compile-only` round (no timing); the value is
    `compile_fitness` of their compile reports. Raises ValueError for no traces or a
    trace without an evaluation (a workload-only trace).
    """
    if not traces:
        raise ValueError("fitness: no traces")
    for t in traces:
        if t.evaluation is None:
            raise ValueError(f"trace for workload {t.workload.uuid}: no evaluation (a workload-only trace)")
    failed = [t for t in traces if t.evaluation.status is not EvaluationStatus.PASSED]
    if failed:
        why = ", ".join(f"{_label(t)}: {t.evaluation.status.value}" for t in failed)
        return Fitness(0.0, Verdict.failed, why)
    penalty = SPILL_PENALTY if any(spills_over(t) for t in traces) else 1.0
    if compile_only:
        return Fitness(compile_fitness(traces), Verdict.compiled, "compile-level: not a timing", penalty)
    scores = [sol_score_of(t) for t in traces]
    for t, s in zip(traces, scores):
        if s is not None and (not math.isfinite(s) or s < 0):
            raise ValueError(f"trace for workload {t.workload.uuid}: sol_score {s!r}; "
                             "expected a finite score in [0, 1]")
    value = 0.0 if any(s == 0 for s in scores) else (geometric_mean(scores) or 0.0)
    timings = [t.evaluation.solforge.timing for t in traces]
    cut = [_label(t) for t, tm in zip(traces, timings) if tm is not None and tm.cut]
    if cut:
        return Fitness(value, Verdict.cut, "timing cut at the cut-off: " + ", ".join(cut), penalty)
    unstable = [_label(t) for t, tm in zip(traces, timings) if tm is not None and tm.unstable]
    if unstable:
        return Fitness(value, Verdict.unstable, "unstable timing: " + ", ".join(unstable), penalty)
    missing = [f"{_label(t)} ({_unscored_why(t)})" for t, s in zip(traces, scores) if s is None]
    if missing:
        return Fitness(value, Verdict.unscored, "no SOL score: " + ", ".join(missing), penalty)
    return Fitness(value, Verdict.scored, "", penalty)


def fitness_of(traces: Sequence[Trace]) -> float:
    """`judge(traces).value`: the number alone, for summaries that say nothing of its
    soundness. Selection uses `judge`."""
    return judge(traces).value


def spills_over(trace: Trace) -> bool:
    """Whether any kernel in the trace's compile reports spills above the threshold
    (`bench.crosscompile.SPILL_THRESHOLD_BYTES`)."""
    from solforge.bench.crosscompile import exceeds_spill_threshold

    ev = trace.evaluation
    reports = ev.solforge.compile_reports if ev is not None else None
    return any(exceeds_spill_threshold(r) for r in reports or ())


def compile_fitness(traces: Sequence[Trace]) -> float:
    """Compile-level fitness of a `--compile-only` round, in (0, 1]: the geometric mean,
    over every kernel specialization compiled for the round's workloads, of its
    theoretical occupancy fraction (the CUDA occupancy calculator's rules, from ptxas'
    registers and shared memory). A proxy for latency hiding, not a speed: it says
    nothing of memory traffic or instruction count. Specializations that cannot launch
    (occupancy 0) count as 1e-3, so the mean stays defined and ranks them last."""
    fractions = []
    for t in traces:
        for r in t.evaluation.solforge.compile_reports or ():
            fractions.append(max(r.occupancy.fraction, 1e-3))
    return geometric_mean(fractions) or 1e-3
