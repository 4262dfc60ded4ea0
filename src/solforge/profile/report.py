"""`profile_model()`: a target's candidates ranked by share of model time, with Amdahl ceilings and SOL.

For a candidate that takes a fraction f of the model's time per forward:

- Amdahl ceiling: 1 / (1 - f), the end-to-end speedup if the candidate took no time at
  all (Amdahl, AFIPS 1967);
- gain at SOL: T / (T - t + t_SOL), the end-to-end speedup if the candidate ran at its
  speed of light t_SOL instead of its measured t (T the model's time per forward).

`profile.json` holds all of it, and the output folder is also a FlashInfer-Trace dataset
holding the new definitions, so `solforge evolve NAME --dataset DIR` and `solforge
kernelize` read it as they are.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from solforge.profile.candidates import Candidate, group_candidates, map_candidates, sol_time_us
from solforge.profile.targets import Target, load_target
from solforge.spec import Dataset, Definition, Workload, write_dataset

PROFILE_FILE = "profile.json"


@dataclass
class CandidateRow:
    """One row of the profile table; times per model forward, in milliseconds."""

    kind: str
    label: str
    share: float  # fraction of the model's time per forward
    amdahl_ceiling: float  # 1 / (1 - share)
    definition: str | None
    source: str | None  # "builtin", "new", or None (no definition for this kind)
    measured_ms: float
    sol_ms: float | None
    gain_at_sol: float | None  # T / (T - measured + sol)
    dtype: str
    consts: dict[str, int]
    constants: dict[str, float]
    calls: list[dict[str, Any]]  # [{"axes": {...}, "count": n}] per forward
    modules: list[str]


@dataclass
class ProfileResult:
    """What `solforge profile` found; `rows` ranked by measured time."""

    target: str
    slug: str
    device: str
    dtype: str
    stage: str
    batch: int | None
    seq_len: int | None
    tokens_per_call: int
    iterations: int
    model_ms: float  # time per forward under the profiler (see profiler.py), milliseconds
    wall_ms: float  # median wall time per forward without the profiler, milliseconds
    other_ms: float  # ops of no candidate, per forward
    peaks: str | None  # where the SOL peaks came from
    rows: list[CandidateRow]
    top_ops: list[tuple[str, float]]  # leaf ATen ops by self time per forward, ms
    new_definitions: dict[str, Definition] = field(default_factory=dict)
    new_workloads: dict[str, list[Workload]] = field(default_factory=dict)
    builtin_workloads: dict[str, list[dict[str, int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("new_definitions", "new_workloads")}
        data["new_definitions"] = sorted(self.new_definitions)
        return data


def _peaks(device: str):
    """(peaks, description): calibrated ceilings on the CPU (calibrating once when none are
    cached), datasheet peaks on a GPU (calibrated where the datasheet has no row)."""
    from solforge.hardware import Device

    detect_device = Device.parse

    detected = detect_device(device)
    peaks = detected.datasheet_peaks() or detected.calibrated_peaks()
    if peaks is None and device == "cpu":
        from solforge.hardware import detect
        from solforge.search.evolve import ensure_ceilings

        ensure_ceilings("cpu")
        peaks = detect("cpu").calibrated_peaks()
    return peaks, (getattr(peaks, "source", None) if peaks is not None else None)


def profile_target(target: Target, *, device: str = "cpu", dtype: str = "bfloat16", warmup: int = 2,
                   iterations: int = 5) -> ProfileResult:
    """Profile a built target; see the module docstring. Nothing is written."""
    from solforge.profile.profiler import run_profile

    run = run_profile(target.model, target.call, device=device, warmup=warmup, iterations=iterations)
    cands, other_us = group_candidates(run, target.stage)
    new_defs, new_wls = map_candidates(cands, target.slug, target.stage)
    peaks, peaks_source = _peaks(device)
    total_us = max(run.total_us, sum(c.measured_us for c in cands) + other_us)
    rows = []
    builtin_wls: dict[str, list[dict[str, int]]] = {}
    from solforge.problems import builtin_dataset

    for c in cands:
        defn = new_defs.get(c.definition) if c.source == "new" else (
            builtin_dataset().definitions.get(c.definition) if c.definition else None)
        c.sol_us = sol_time_us(defn, c, peaks) if defn is not None else None
        if c.source == "builtin":
            builtin_wls.setdefault(c.definition, []).extend(call.axes for call in c.calls)
        rows.append(_row(c, total_us))
    rows.sort(key=lambda r: -r.measured_ms)
    top = sorted(run.op_totals_us.items(), key=lambda kv: -kv[1])[:15]
    return ProfileResult(
        target=target.name, slug=target.slug, device=device, dtype=dtype, stage=target.stage, batch=target.batch,
        seq_len=target.seq_len, tokens_per_call=target.tokens_per_call, iterations=run.iterations,
        model_ms=total_us / 1e3, wall_ms=run.wall_ms, other_ms=other_us / 1e3, peaks=peaks_source, rows=rows,
        top_ops=[(k, v / 1e3) for k, v in top], new_definitions=new_defs, new_workloads=new_wls,
        builtin_workloads=builtin_wls,
    )


def _row(c: Candidate, total_us: float) -> CandidateRow:
    share = c.measured_us / total_us if total_us > 0 else 0.0
    gain = None
    if c.sol_us is not None and total_us > 0:
        gain = total_us / (total_us - c.measured_us + min(c.sol_us, c.measured_us))
    return CandidateRow(
        kind=c.kind, label=c.label, share=share, amdahl_ceiling=1.0 / (1.0 - share) if share < 1 else float("inf"),
        definition=c.definition, source=c.source, measured_ms=c.measured_us / 1e3,
        sol_ms=None if c.sol_us is None else c.sol_us / 1e3, gain_at_sol=gain, dtype=c.dtype, consts=dict(c.consts),
        constants=dict(c.constants), calls=[{"axes": dict(x.axes), "count": x.count} for x in c.calls],
        modules=list(c.modules),
    )


def profile_model(target: str, *, device: str = "cpu", dtype: str = "bfloat16", layers: int | None = None,
                  batch: int = 1, seq_len: int = 128, stage: str = "prefill",
                  input_shapes: dict[str, tuple[int, ...]] | None = None, iterations: int = 5,
                  out: str | Path | None = None) -> ProfileResult:
    """Build `target` (see `targets.load_target`), profile it, and, with `out`, write the
    result (`write_profile`). Raises SpecError for bad input, before anything is written."""
    built = load_target(target, device=device, dtype=dtype, layers=layers, batch=batch, seq_len=seq_len, stage=stage,
                        input_shapes=input_shapes)
    result = profile_target(built, device=device, dtype=dtype, iterations=iterations)
    if out is not None:
        write_profile(result, out)
    return result


def write_profile(result: ProfileResult, out: str | Path) -> Path:
    """Write `profile.json` and the new definitions (a FlashInfer-Trace dataset) under `out`.

    Everything is written to a temporary folder beside `out` first and moved into place
    file by file, so an interrupted write leaves no half-written file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".profile-") as tmp:
        staging = Path(tmp)
        ds = Dataset(definitions=dict(result.new_definitions), workloads=dict(result.new_workloads))
        write_dataset(ds, staging)
        (staging / PROFILE_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n")
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    return out / PROFILE_FILE


def read_profile(path: str | Path) -> dict[str, Any]:
    """`profile.json` (or the folder holding it) as a dict; SpecError when missing or malformed."""
    from solforge.spec import SpecError

    path = Path(path)
    if path.is_dir():
        path = path / PROFILE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: not a profile.json ({exc})") from None
