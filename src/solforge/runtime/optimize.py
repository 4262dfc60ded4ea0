"""`optimize()`: profile -> evolve the top candidates -> kernelize -> check, in one resumable folder.

    OUT/
      state.json        which stages finished (written atomically after each one)
      profile/          profile.json, and the new definitions as a FlashInfer-Trace dataset
      runs/<definition>/<run-id>/   one `solforge evolve` run per candidate (archive, winner)
      check.json        the end-to-end check (per-kernel verdicts, logit error, tokens/s)
      summary.md        the profile table, the winners and the check, for people

Selection: the profile's candidates in order of share, keeping those whose definition
has a seed kernel for the device's language (numba on the CPU, Triton on CUDA) and a
`kernelize` binding, the first `top` of them. The time budget is split among them in
proportion to their shares of model time (Amdahl: a kernel's worth is bounded by its
share); `max_candidates` caps each search.

Resume: run the same call again with the same `out`. A finished stage is read back, not
redone; a search killed mid-run is continued by `evolve(resume=...)`, which never
evaluates a candidate twice (its archive is SQLite in WAL mode).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from solforge.spec import SpecError

if TYPE_CHECKING:
    from solforge.spec import Definition, Workload

STATE_FILE = "state.json"


@dataclass
class OptimizeConfig:
    """Options of one `solforge optimize` run."""

    device: str = "cpu"
    dtype: str = "bfloat16"
    layers: int | None = None
    batch: int = 1
    seq_len: int = 128
    stage: str = "prefill"
    budget_s: float | None = None  # wall-clock budget of all the searches together, seconds
    max_candidates: int | None = None  # per search
    top: int = 3
    prompts: int = 4  # of the check
    rounds: int = 5  # speed rounds of the check; 0 skips the speed measurement
    compile: bool = True  # torch.compile variants in the check
    seed: int = 0
    # What each kernel search times beside the candidates. Eager by default: the check times
    # torch.compile on the whole model, and a per-kernel compile baseline on a CPU is an
    # inductor C++ build per workload shape (minutes per search on a 2-core machine).
    search_baselines: tuple[str, ...] = ("eager",)


@dataclass
class OptimizeResult:
    out: Path
    profile: dict[str, Any]
    selected: list[dict[str, Any]]  # {definition, share, budget_s, run_dir, winner}
    skipped: list[dict[str, str]]  # {definition, reason}
    check: dict[str, Any] | None
    resumed: list[str] = field(default_factory=list)  # stages read back instead of run


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _state(out: Path) -> dict[str, Any]:
    p = out / STATE_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


def model_workloads(definition: Definition, workloads: list[Workload], calls: list[dict[str, Any]], stage: str,
                    device: str) -> list[Workload]:
    """The workloads a kernel search of `solforge optimize` is judged on: one per shape the
    profiled model calls the kernel with (`calls`: the profile row's [{"axes": {...}}]),
    labelled "model <stage> ...", and a held-out one beside the first
    (`profile.candidates.held_out_tokens` on its token axis; without a token axis, the
    definition's own held-out workloads). Input specs are those of the definition's first
    workload with generated inputs. Empty (the caller keeps the definition's workloads)
    without calls, or when every workload reads its inputs from files."""
    from solforge.problems import split_workloads
    from solforge.profile.candidates import held_out_tokens, token_axis_of
    from solforge.spec import SafetensorsInput, Workload
    from solforge.spec.workload import WorkloadExtension

    template = next((w for w in workloads if not any(isinstance(i, SafetensorsInput) for i in w.inputs.values())),
                    None)
    if template is None or not calls:
        return []
    var_axes = set(definition.var_axes())

    def make(axes: dict[str, int], label: str, held_out: bool) -> Workload:
        axes = {k: v for k, v in {**template.axes, **axes}.items() if k in var_axes}
        tag = "-".join(f"{k}{v}" for k, v in sorted(axes.items()))
        return Workload(uuid=f"{definition.name}-model-{'heldout-' if held_out else ''}{tag}", axes=axes,
                        inputs=dict(template.inputs), solforge=WorkloadExtension(held_out=held_out, label=label))

    out, seen = [], set()
    for call in calls:
        key = tuple(sorted(call["axes"].items()))
        if key not in seen:
            seen.add(key)
            out.append(make(dict(call["axes"]), f"model {stage} " + ",".join(f"{k}={v}" for k, v in key), False))
    first = dict(calls[0]["axes"])
    token_axis = token_axis_of(first)
    if token_axis is not None:
        held = held_out_tokens(first[token_axis])
        out.append(make({**first, token_axis: held}, f"held-out {token_axis}={held}", True))
    else:
        out += split_workloads(workloads, device).held_out
    return out


def evolve_config(device: str, budget_s: float | None, max_candidates: int | None, seed: int, runs_root: Path,
                  dataset_root: Path | None, baselines: tuple[str, ...] | None = None, workloads: str = "auto"):
    """The search's EvolveConfig for one candidate. Its field names changed once (budget_s ->
    max_wall_seconds, seed -> random_seed, the dataset root beside `bench`); both spellings are read."""
    import dataclasses

    from solforge.search.evolve import EvolveConfig

    names = {f.name for f in dataclasses.fields(EvolveConfig)}
    kw: dict[str, Any] = {"device": device, "max_candidates": max_candidates, "runs_root": runs_root}
    kw["max_wall_seconds" if "max_wall_seconds" in names else "budget_s"] = budget_s
    kw["random_seed" if "random_seed" in names else "seed"] = seed
    kw["workloads"] = workloads
    kw["baselines"] = baselines
    if "dataset_root" in names:
        kw["dataset_root"] = dataset_root
    else:
        from solforge.bench import BenchConfig

        kw["bench"] = BenchConfig(device=device, dataset_root=dataset_root)
    return EvolveConfig(**kw)


def select_candidates(profile: dict[str, Any], dataset: Path, device: str, top: int) -> tuple[list[dict], list[dict]]:
    """The candidates to evolve and those left out, with why; see the module docstring."""
    from solforge.knowledge import seeds_for
    from solforge.runtime.bindings import binding_for
    from solforge.runtime.winners import find_definition

    language = "numba" if device == "cpu" else "triton"
    chosen, skipped, seen = [], [], set()
    for row in profile["rows"]:
        name = row.get("definition")
        if not name or name in seen:
            continue
        seen.add(name)
        defn = find_definition(name, [], [dataset] if dataset.is_dir() else [])
        if binding_for(defn) is None:
            skipped.append({"definition": name, "reason": "no kernelize binding for its family"})
        elif not seeds_for(defn, language):
            skipped.append({"definition": name, "reason": f"no {language} seed kernel in the knowledge base"})
        elif len(chosen) < top:
            chosen.append({"definition": name, "share": row["share"], "label": row["label"]})
        else:
            skipped.append({"definition": name, "reason": f"beyond --top {top}"})
    return chosen, skipped


def optimize(target: str, out: str | Path, config: OptimizeConfig,
             log: Callable[[str], None] = lambda _: None) -> OptimizeResult:
    """Run (or resume) the whole chain for `target` into `out`; see the module docstring.

    Raises SpecError (one line) for bad input: the target (see `profile.targets`), an
    `out` that holds another target's run, no budget.
    """
    from solforge.profile.report import profile_target, read_profile, write_profile
    from solforge.profile.targets import load_target
    from solforge.runtime.check import check_model, report_dict
    from solforge.runtime.winners import DEFINITION_FILE, find_definition
    from solforge.search.evolve import evolve
    from solforge.spec import dump_json, load_dataset

    if config.budget_s is None and config.max_candidates is None:
        raise SpecError("give --budget (e.g. 30m) or --max-candidates N: the searches need a limit")
    out = Path(out)
    state = _state(out)
    key = {"target": target, "device": config.device, "dtype": config.dtype, "layers": config.layers,
           "batch": config.batch, "seq_len": config.seq_len, "stage": config.stage}
    if state and state.get("key") != key:
        raise SpecError(f"{out}: holds an optimize run of {state.get('key')}; use another --out")
    state.setdefault("key", key)
    state.setdefault("searches", {})
    resumed: list[str] = []

    def build():
        return load_target(target, device=config.device, dtype=config.dtype, layers=config.layers,
                           batch=config.batch, seq_len=config.seq_len, stage=config.stage, seed=config.seed)

    prof_dir = out / "profile"
    if state.get("profile") == "done":
        profile = read_profile(prof_dir)
        resumed.append("profile")
        log("profile: read back")
    else:
        built = build()  # bad targets fail here, before anything is written
        out.mkdir(parents=True, exist_ok=True)
        log("profile: running torch.profiler")
        result = profile_target(built, device=config.device, dtype=config.dtype)
        write_profile(result, prof_dir)
        profile = result.to_json()
        state["profile"] = "done"
        _write_json(out / STATE_FILE, state)
        del built, result  # the searches' harness needs the memory more than we need the model now
        import gc

        gc.collect()
    chosen, skipped = select_candidates(profile, prof_dir, config.device, config.top)
    total_share = sum(c["share"] for c in chosen) or 1.0
    datasets = [prof_dir] if any(prof_dir.joinpath("definitions").glob("*/*.json")) else []
    root = datasets[0] if datasets else None
    winners = []
    for c in chosen:
        name = c["definition"]
        c["budget_s"] = None if config.budget_s is None else config.budget_s * c["share"] / total_share
        runs_root = out / "runs" / name
        done = state["searches"].get(name)
        existing = sorted(p for p in runs_root.glob("*") if p.is_dir()) if runs_root.is_dir() else []
        if done and done.get("status") == "done":
            c["run_dir"], c["winner"] = done["run_dir"], done["winner"]
            resumed.append(f"evolve {name}")
            log(f"evolve {name}: read back ({'winner' if c['winner'] else 'no winner'})")
        else:
            defn = find_definition(name, [], datasets)
            if root is not None and name in load_dataset(root).definitions:
                workloads = load_dataset(root).workloads.get(name, [])
                dataset_root = root
            else:
                from solforge.problems import builtin_root, load_builtin

                defn, workloads = load_builtin(name)
                dataset_root = builtin_root()
            row = next((r for r in profile["rows"] if r.get("definition") == name), {})
            at_model = model_workloads(defn, workloads, row.get("calls") or [], profile.get("stage", "prefill"),
                                       config.device)
            if at_model:  # judged on the shapes the model runs, call overhead and all
                workloads = at_model
            ecfg = evolve_config(config.device, c["budget_s"], config.max_candidates, config.seed, runs_root,
                                 dataset_root, config.search_baselines, "given" if at_model else "auto")
            resume = existing[-1] if existing else None
            if resume is not None:
                resumed.append(f"evolve {name} (continued)")
            log(f"evolve {name}: {'continuing ' + resume.name if resume else 'new run'}, "
                f"budget {c['budget_s'] or 0:.0f} s, max {config.max_candidates or '-'} candidates")
            started = time.time()
            res = evolve(defn, workloads, ecfg, resume=resume)
            (res.run_dir / DEFINITION_FILE).write_text(dump_json(defn) + "\n")
            c["run_dir"], c["winner"] = str(res.run_dir), res.winner_id is not None
            state["searches"][name] = {"status": "done", "run_dir": c["run_dir"], "winner": c["winner"],
                                       "seconds": time.time() - started}
            _write_json(out / STATE_FILE, state)
        if c["winner"]:
            winners.append(c["run_dir"])
    check = None
    if state.get("check") == "done" and (out / "check.json").is_file():
        check = json.loads((out / "check.json").read_text())
        resumed.append("check")
    elif winners:
        log(f"check: {len(winners)} winner(s) against the original model")
        model = build().model  # the same model: the build is seeded
        report, _ = check_model(model, winners, device=config.device, batch=config.batch,
                                seq_len=config.seq_len, prompts=config.prompts, rounds=config.rounds,
                                compile=config.compile, datasets=datasets, seed=config.seed)
        check = report_dict(report)
        _write_json(out / "check.json", check)
        state["check"] = "done"
        _write_json(out / STATE_FILE, state)
    result = OptimizeResult(out, profile, chosen, skipped, check, resumed)
    (out / "summary.md").write_text(summary_markdown(result))
    return result


def summary_markdown(result: OptimizeResult) -> str:
    """The profile table, the searches and the check, as markdown."""
    p = result.profile
    lines = [f"# solforge optimize: {p['target']}", "",
             f"{p['device']}, {p['dtype']}, {p['stage']} batch {p['batch']} x seq {p['seq_len']}; "
             f"{p['model_ms']:.2f} ms per forward under the profiler, {p['wall_ms']:.2f} ms wall", "",
             "| candidate | share | Amdahl ceiling | definition | SOL ms | measured ms | gain at SOL |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in p["rows"]:
        sol = "-" if r["sol_ms"] is None else f"{r['sol_ms']:.4f}"
        gain = "-" if r["gain_at_sol"] is None else f"{r['gain_at_sol']:.3f}x"
        lines.append(f"| {r['label']} | {r['share']:.1%} | {r['amdahl_ceiling']:.3f}x | {r['definition'] or '-'} "
                     f"({r['source'] or '-'}) | {sol} | {r['measured_ms']:.3f} | {gain} |")
    lines += ["", f"other (framework, views, masks): {p['other_ms']:.3f} ms", "", "## Searches", ""]
    for c in result.selected:
        lines.append(f"- {c['definition']}: share {c['share']:.1%}, budget {c.get('budget_s') or 0:.0f} s, "
                     f"{'winner' if c.get('winner') else 'no winner'} ({c.get('run_dir')})")
    for s in result.skipped:
        lines.append(f"- {s['definition']}: not searched, {s['reason']}")
    if result.check:
        ck = result.check
        lines += ["", "## Check", "", f"tolerance: max rel logit error <= {ck['max_rel_tolerance']:g} ({ck['dtype']})", ""]
        for k in ck["kernels"]:
            e = k["error"] or {}
            lines.append(f"- {k['definition']}: {'PASS' if k['passed'] else 'FAIL, reverted'} ({k['reason']}); "
                         f"{k['modules']} modules, {k['calls']} kernel calls; max abs {e.get('max_abs', 0):.4g}, "
                         f"max rel {e.get('max_rel', 0):.4g}, top-1 {e.get('top1', 0):.3f}")
        if ck.get("speed"):
            from solforge.runtime.check import speedup_cell

            lines += ["", "Speedup over eager: the median of the rounds' ratios, [its 95% interval].", "",
                      "| variant | prefill tokens/s | decode tokens/s | prefill vs eager | decode vs eager |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            for s in ck["speed"]:
                lines.append(f"| {s['variant']} | {s['prefill_tokens_s']:.1f} | {s['decode_tokens_s']:.2f} | "
                             f"{speedup_cell(s, 'prefill')} | {speedup_cell(s, 'decode')} |")
    return "\n".join(lines) + "\n"
