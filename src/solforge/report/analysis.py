"""What the report shows, computed from a `RunSnapshot`: each candidate's status, the
winner and its per-workload table, the failure breakdown, and the roofline's points and
roofs. Plain data; `figures` draws it and `page` lays it out.

Units: latencies in ms, throughput in GFLOP/s (1e9 FLOP/s) and GB/s (1e9 bytes/s),
arithmetic intensity in FLOP per compulsory byte, as `solforge.roofline` counts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from solforge.report.snapshot import RunSnapshot
from solforge.search import CandidateRecord, CandidateState, EvaluationRound, NoteKind
from solforge.spec import Definition, EvaluationStatus, SpecError, Trace, Workload

if TYPE_CHECKING:
    from solforge.hardware import Peaks
    from solforge.roofline import Work

# A candidate's status beyond the harness's: dropped (a harness error, never judged),
# still in flight when the run stopped, or judged but its rounds unreadable.
DROPPED, IN_FLIGHT, UNKNOWN = "DROPPED", "IN_FLIGHT", "UNKNOWN"
# Fixed colours, so a status reads the same in every chart (and tests can find them).
STATUS_COLORS: dict[str, str] = {
    EvaluationStatus.PASSED.value: "#2ca02c",
    EvaluationStatus.INCORRECT_SHAPE.value: "#ff7f0e",
    EvaluationStatus.INCORRECT_DTYPE.value: "#bcbd22",
    EvaluationStatus.INCORRECT_NUMERICAL.value: "#d62728",
    EvaluationStatus.RUNTIME_ERROR.value: "#9467bd",
    EvaluationStatus.COMPILE_ERROR.value: "#8c564b",
    EvaluationStatus.TIMEOUT.value: "#e377c2",
    EvaluationStatus.REWARD_HACK.value: "#000000",
    DROPPED: "#7f7f7f",
    IN_FLIGHT: "#17becf",
    UNKNOWN: "#c7c7c7",
}
LOG_EXAMPLE_CHARS = 4000  # an example log is cut to this many characters (its end, where errors are)


def candidate_status(snap: RunSnapshot, c: CandidateRecord) -> str:
    """PASSED when every search workload of its first round passed; else the first failing
    workload's status; DROPPED, IN_FLIGHT, or UNKNOWN (judged, rounds unreadable)."""
    if c.state is CandidateState.dropped:
        return DROPPED
    if c.state in (CandidateState.proposed, CandidateState.evaluating):
        return IN_FLIGHT
    rounds = snap.search_rounds.get(c.id) or []
    if not rounds:
        return EvaluationStatus.PASSED.value if (c.fitness or 0) > 0 else UNKNOWN
    failing = [w.status.value for w in rounds[0].workloads if w.status is not EvaluationStatus.PASSED]
    return failing[0] if failing else EvaluationStatus.PASSED.value


def latest(rounds: list[EvaluationRound]) -> EvaluationRound | None:
    """The last round: a re-timing replaces the first figure."""
    return rounds[-1] if rounds else None


def all_traces(snap: RunSnapshot) -> list[Trace]:
    return [w.trace for rounds in (*snap.search_rounds.values(), *snap.held_out_rounds.values())
            for r in rounds for w in r.workloads]


# -- the winner -----------------------------------------------------------------------


def find_winner(snap: RunSnapshot) -> tuple[int | None, str]:
    """(candidate id, how it was chosen): the solution `solforge evolve` exported to
    `winner/`; else the fittest candidate that passed every held-out workload; else the
    fittest candidate. (None, why) when no candidate has a positive fitness."""
    exported = snap.run_dir / "winner" / "solution.json"
    if exported.is_file():
        try:
            name = json.loads(exported.read_text())["name"]
        except (OSError, ValueError, KeyError, TypeError):
            name = None
        match = next((c for c in snap.candidates if c.solution.name == name), None)
        if match is not None:
            return match.id, "exported by `solforge evolve` after the held-out gate"
    ranked = sorted((c for c in snap.candidates if (c.fitness or 0) > 0), key=lambda c: (-c.fitness, c.id))
    for c in ranked:
        held = latest(snap.held_out_rounds.get(c.id) or [])
        if held is not None and all(w.status is EvaluationStatus.PASSED for w in held.workloads):
            return c.id, "the fittest candidate that passed every held-out workload; none was exported"
    if ranked:
        return ranked[0].id, "the fittest candidate; none was exported, none passed held-out"
    return None, "no candidate passed every search workload"


@dataclass(frozen=True)
class WinnerRow:
    """One workload of the winner's table; times in ms, None where unknown."""

    label: str
    held_out: bool
    status: str
    eager_ms: float | None
    compile_ms: float | None
    best_ms: float | None
    sol_ms: float | None  # at datasheet peaks
    sol_calibrated_ms: float | None  # at the calibrated ceilings
    sol_fraction: float | None  # T_SOL / T_k with the best SOL available (calibrated first)

    @property
    def speedup_vs_eager(self) -> float | None:
        return self.eager_ms / self.best_ms if self.eager_ms and self.best_ms else None


def winner_rows(snap: RunSnapshot, candidate_id: int) -> list[WinnerRow]:
    """The winner's latest search round, then its latest held-out round, one row per workload."""
    baselines = baselines_ms(snap)
    rows = []
    for rounds in (snap.search_rounds.get(candidate_id) or [], snap.held_out_rounds.get(candidate_id) or []):
        r = latest(rounds)
        for w in r.workloads if r is not None else ():
            ev = w.trace.evaluation
            sol = ev.solforge.sol if ev is not None else None
            uuid = w.workload_uuid
            rows.append(WinnerRow(
                label=w.trace.workload.label, held_out=r.held_out, status=w.status.value,
                eager_ms=baselines.get("eager", {}).get(uuid), compile_ms=baselines.get("compile", {}).get(uuid),
                best_ms=w.latency_ms, sol_ms=sol.sol_time_ms if sol else None,
                sol_calibrated_ms=sol.sol_time_calibrated_ms if sol else None, sol_fraction=w.sol_fraction,
            ))
    return rows


def baselines_ms(snap: RunSnapshot) -> dict[str, dict[str, float]]:
    """Baseline name ('eager', 'compile') -> workload uuid -> median latency in ms, as the
    run measured them once at its start (kept in the run's config)."""
    raw = snap.run.config.get("baselines", {}) if snap.run is not None else {}
    if not isinstance(raw, dict):
        return {}
    return {str(name): {str(u): float(ms) for u, ms in per.items() if isinstance(ms, (int, float))}
            for name, per in raw.items() if isinstance(per, dict)}


# -- failures -------------------------------------------------------------------------


@dataclass
class FailureGroup:
    """One status: how many per-workload evaluations ended in it (first rounds only, so a
    re-timed candidate counts once), and the first example with its log."""

    status: str
    search: int = 0
    held_out: int = 0
    example: str = ""  # "candidate #3, workload 'smoke t=1'"
    log: str = ""


def failure_breakdown(snap: RunSnapshot) -> list[FailureGroup]:
    """Every status seen, PASSED first, then failures by count; DROPPED counts candidates
    the harness could not judge, with their note as the log."""
    groups: dict[str, FailureGroup] = {}
    for kind, per_candidate in (("search", snap.search_rounds), ("held_out", snap.held_out_rounds)):
        for cid in sorted(per_candidate):
            for r in per_candidate[cid][:1]:
                for w in r.workloads:
                    g = groups.setdefault(w.status.value, FailureGroup(w.status.value))
                    setattr(g, kind, getattr(g, kind) + 1)
                    if not g.example and w.status is not EvaluationStatus.PASSED:
                        g.example = f"candidate #{cid}, workload '{w.trace.workload.label}'"
                        log = w.trace.evaluation.log if w.trace.evaluation else ""
                        g.log = log[-LOG_EXAMPLE_CHARS:] or "(the harness left no log)"
    dropped = [c for c in snap.candidates if c.state is CandidateState.dropped]
    if dropped:
        g = groups.setdefault(DROPPED, FailureGroup(DROPPED, search=len(dropped)))
        why = next((n.text for n in snap.notes if n.candidate_id == dropped[0].id and n.kind is NoteKind.failure), "")
        g.example, g.log = f"candidate #{dropped[0].id}", why[-LOG_EXAMPLE_CHARS:] or "(no note)"
    passed = groups.pop(EvaluationStatus.PASSED.value, None)
    failures = sorted(groups.values(), key=lambda g: (-(g.search + g.held_out), g.status))
    return ([passed] if passed else []) + failures


# -- the roofline ---------------------------------------------------------------------


@dataclass(frozen=True)
class RooflinePoint:
    """One measured latency on the roofline."""

    kind: str  # "candidate", "eager" or "compile"
    candidate_id: int | None
    workload: str  # the workload's label
    held_out: bool
    arithmetic_intensity: float  # FLOP per compulsory byte
    gflop_s: float  # total FLOPs / latency
    gb_s: float  # compulsory bytes / latency
    latency_ms: float


@dataclass(frozen=True)
class Roof:
    """One set of peaks as a roofline: a bandwidth slope and a compute ceiling."""

    source: str  # "datasheet" or "calibrated"
    bandwidth_gb_s: float
    compute_gflop_s: float | None  # for this definition's mix of FLOPs; None when it does no arithmetic
    compute_label: str  # which peaks make the ceiling, e.g. "float32 SIMT"


@dataclass
class RooflineData:
    points: list[RooflinePoint] = field(default_factory=list)
    roofs: list[Roof] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # where the counts and roofs come from, or why missing


def resolve_definition(snap: RunSnapshot) -> tuple[Definition | None, list[Workload], str]:
    """The run's definition and its workloads: from the dataset directory the run used, else
    the built-in suite. (None, [], why) when neither has it."""
    if snap.run is None:
        return None, [], "the run record is unreadable"
    from solforge.problems import builtin_names, builtin_root, load_builtin
    from solforge.spec import load_dataset

    bench = snap.run.config.get("bench", {})
    root = bench.get("dataset_root") if isinstance(bench, dict) else None
    try:
        if root and Path(root).resolve() != builtin_root().resolve() and (Path(root) / "definitions").is_dir():
            ds = load_dataset(root)
            return ds.definition(snap.run.problem), ds.workloads.get(snap.run.problem, []), f"dataset {root}"
        if snap.run.problem in builtin_names():
            definition, workloads = load_builtin(snap.run.problem)
            return definition, workloads, "the built-in suite"
    except (SpecError, OSError) as exc:
        return None, [], f"definition '{snap.run.problem}': {exc}"
    return None, [], f"definition '{snap.run.problem}': not in the built-in suite nor in dataset {root}"


def workloads_by_uuid(snap: RunSnapshot, extra: list[Workload]) -> dict[str, Workload]:
    found = {w.uuid: w for w in extra}
    for t in all_traces(snap):
        found.setdefault(t.workload.uuid, t.workload)
    return found


def count_works(snap: RunSnapshot, definition: Definition | None, workloads: dict[str, Workload],
                notes: list[str]) -> dict[str, Work]:
    """FLOPs and compulsory bytes per workload uuid: `roofline.count_work(definition,
    workload)`; where that is impossible (no definition, counting failed), the counts the
    run stored in the traces' SOL reports (made by the same function at run time)."""
    from solforge.roofline import Work, count_work

    works: dict[str, Work] = {}
    failed = []
    if definition is not None:
        for uuid, wl in workloads.items():
            try:
                works[uuid] = count_work(definition, wl)
            except Exception as exc:  # noqa: BLE001 - a reference meta-dispatch cannot trace: fall back
                failed.append(f"{wl.label}: {type(exc).__name__}")
    for t in all_traces(snap):
        sol = t.evaluation.solforge.sol if t.evaluation is not None else None
        if t.workload.uuid not in works and sol is not None:
            works[t.workload.uuid] = Work(dict(sol.tensor_flops), sol.other_flops, sol.bytes_moved)
    if failed:
        notes.append(f"count_work failed for {', '.join(failed)}; their counts are the ones stored with the run")
    return works


def roofline_data(snap: RunSnapshot) -> RooflineData:
    """One point per candidate and workload (its latest round, PASSED workloads only), one
    per baseline and workload, and the roofs of the run's device."""
    out = RooflineData()
    definition, listed, where = resolve_definition(snap)
    out.notes.append(f"FLOPs and bytes: solforge.roofline.count_work on the definition from {where}"
                     if definition is not None else f"FLOPs and bytes: stored with the run ({where})")
    workloads = workloads_by_uuid(snap, listed)
    works = count_works(snap, definition, workloads, out.notes)

    def point(kind: str, cid: int | None, wl: Workload, latency_ms: float | None) -> None:
        work = works.get(wl.uuid)
        if work is None or not latency_ms or latency_ms <= 0 or work.bytes_moved <= 0 or work.total_flops <= 0:
            return
        seconds = latency_ms * 1e-3
        out.points.append(RooflinePoint(kind, cid, wl.label, wl.held_out, work.arithmetic_intensity,
                                        work.total_flops / seconds / 1e9, work.bytes_moved / seconds / 1e9,
                                        latency_ms))

    for c in snap.candidates:
        for rounds in (snap.search_rounds.get(c.id) or [], snap.held_out_rounds.get(c.id) or []):
            r = latest(rounds)
            for w in r.workloads if r is not None else ():
                if w.status is EvaluationStatus.PASSED:
                    point("candidate", c.id, w.trace.workload, w.latency_ms)
    for name, per in baselines_ms(snap).items():
        for uuid, ms in per.items():
            if uuid in workloads:
                point(name, None, workloads[uuid], ms)
    roofs, why = device_roofs(snap, list(works.values()))
    out.roofs = roofs
    out.notes.append(why)
    return out


def device_roofs(snap: RunSnapshot, works: list[Work]) -> tuple[list[Roof], str]:
    """The datasheet and calibrated roofs of the run's device, from `solforge.hardware.detect`
    on this machine, and a line saying where they come from. None are drawn when this
    machine's device is not the one the traces were measured on: its peaks would be
    another device's."""
    if snap.run is None:
        return [], "roofs: not drawn (the run record is unreadable)"
    from solforge.hardware import detect

    measured_on = sorted({t.evaluation.environment.hardware for t in all_traces(snap) if t.evaluation is not None})
    try:
        detected = detect(snap.run.device)
    except SpecError as exc:
        return [], f"roofs: not drawn ({exc})"
    if measured_on and detected.name not in measured_on:
        return [], (f"roofs: not drawn: the run was measured on {', '.join(measured_on)}; this machine's "
                    f"{snap.run.device} is {detected.name}")
    roofs = [_roof(p, works) for p in (detected.datasheet_peaks(), detected.calibrated_peaks()) if p is not None]
    if not roofs:
        return [], f"roofs: none known for {detected.name} ({detected.reason})"
    return roofs, f"roofs of {detected.name}: {detected.reason}"


def _roof(peaks: Peaks, works: list[Work]) -> Roof:
    """The compute ceiling is the rate at which this definition's FLOPs, in their mix of
    tensor-core dtypes and SIMT, run at these peaks: total FLOPs over `sol_bound`'s
    compute time of all the workloads' work added up."""
    from solforge.roofline import Work, sol_bound

    tensor: dict[str, int] = {}
    for w in works:
        for dtype_name, flops in w.tensor_flops.items():
            tensor[dtype_name] = tensor.get(dtype_name, 0) + flops
    total = Work(tensor, sum(w.other_flops for w in works), sum(w.bytes_moved for w in works))
    parts = [f"{d} tensor" for d, f in sorted(tensor.items()) if f] + (["SIMT"] if total.other_flops else [])
    label = " + ".join(parts)
    compute = None
    if total.total_flops > 0 and total.bytes_moved > 0:
        compute_ms = sol_bound(total, peaks).compute_ms
        compute = total.total_flops / (compute_ms * 1e-3) / 1e9 if compute_ms > 0 else None
    return Roof(peaks.source, peaks.dram_bandwidth_gb_s, compute, label or "no arithmetic")


# -- the run's facts ------------------------------------------------------------------


def run_facts(snap: RunSnapshot, winner_id: int | None, winner_how: str) -> list[tuple[str, str]]:
    """(name, value) rows that summarize the run, as the report and `solforge runs show` print them."""
    rows: list[tuple[str, str]] = [("run directory", str(snap.run_dir))]
    run = snap.run
    if run is not None:
        budget = {k: v for k, v in vars(run.budget).items() if v is not None}
        rows += [("run id", run.run_id), ("problem", run.problem), ("device", run.device),
                 ("strategy", run.strategy), ("operators", ", ".join(run.operators)), ("seed", str(run.seed)),
                 ("status", run.status.value), ("started", when(run.created_at)), ("finished", when(run.finished_at)),
                 ("budget", ", ".join(f"{k} {v}" for k, v in budget.items()) or "none")]
    states: dict[str, int] = {}
    for c in snap.candidates:
        states[c.state.value] = states.get(c.state.value, 0) + 1
    best = max((h.fitness for h in snap.history), default=None)
    rows += [("candidates", f"{len(snap.candidates)}" + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
                                                        + ")" if states else "")),
             ("best fitness", "-" if best is None else f"{best:.4f}"),
             ("winner", f"#{winner_id} ({winner_how})" if winner_id is not None else winner_how),
             ("lineage versions", str(len(snap.lineage)))]
    if snap.totals is not None:
        u = snap.totals.run
        rows.append(("cost", f"{u.gpu_seconds:,.1f} GPU-s, {u.wall_seconds:,.1f} wall s, "
                             f"{u.llm_input_tokens + u.llm_output_tokens:,} LLM tokens, {u.cost_usd:,.4f} USD"))
    return rows


def when(ts: float | None) -> str:
    """A Unix time (seconds) as ISO 8601 UTC, '-' for None."""
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
