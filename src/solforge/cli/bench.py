"""`solforge bench`: evaluate baselines and solutions on a definition's workloads.

Prints, per solution, a table by workload (status, latency, achieved TFLOP/s and GB/s,
SOL time, SOL fraction, SOL score, speedup vs eager and vs torch.compile), then a
summary; writes every result as a FlashInfer-Trace line to `--out`. Exits 1 when any
solution fails on any workload, 2 on bad input.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from solforge.spec import Definition, EvaluationStatus, Language, SpecError, Trace, Workload

console = Console(width=None if Console().is_terminal else 160)  # logs and CI: wide enough for the tables


def default_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_problem(name: str, dataset: Path | None) -> tuple[Definition, list[Workload], Path | None]:
    """The definition and its workloads: from `dataset` when given, else the built-in suite."""
    if dataset is not None:
        from solforge.spec import load_dataset

        ds = load_dataset(dataset)
        defn = ds.definition(name)
        return defn, ds.workloads.get(name, []), dataset
    from solforge.problems import builtin_root, load_builtin

    defn, workloads = load_builtin(name)
    return defn, workloads, builtin_root()


def default_workload_set(device: str, workloads: list[Workload]) -> str:
    """'smoke' on the CPU when CPU-sized workloads exist, else 'search'."""
    return "smoke" if device == "cpu" and any(w.smoke for w in workloads) else "search"


def fmt_or_dash(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or '-' when it is missing or NaN (shared by the CLI tables)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def trace_table(title: str, traces: list[Trace]) -> Table:
    """One row per workload of one solution's traces."""
    table = Table(title=title, title_justify="left")
    for col in ("workload", "status", "latency_ms", "TFLOP/s", "GB/s", "SOL_ms", "SOL frac", "SOL score",
                "x eager", "x compile"):
        table.add_column(col, justify="left" if col in ("workload", "status") else "right")
    for t in traces:
        ev = t.evaluation
        assert ev is not None
        ext = ev.solforge
        sol = ext.sol
        status = ev.status.value
        if ev.status is not EvaluationStatus.PASSED:
            status = f"[red]{status}[/red]"
        elif sol is not None and sol.audit:
            status = "[yellow]PASSED (audit)[/yellow]"
        elif ext.timing is not None and not ext.timing.is_performance_measurement:
            status = "PASSED (untimed)"
        latency = ev.performance.latency_ms if ev.performance else None
        sol_ms = None
        if sol is not None:
            sol_ms = sol.sol_time_calibrated_ms if sol.sol_time_calibrated_ms is not None else sol.sol_time_ms
        speedup = ev.performance.speedup_factor if ev.performance and ev.performance.speedup_factor else None
        table.add_row(
            t.workload.label,
            status,
            fmt_or_dash(latency, ".4f"),
            fmt_or_dash(sol.achieved_tflops if sol else None, ".2f"),
            fmt_or_dash(sol.achieved_gb_s if sol else None, ".1f"),
            fmt_or_dash(sol_ms, ".4f") + (f" ({sol.binding[:3]})" if sol and sol.binding else ""),
            fmt_or_dash(sol.sol_fraction if sol else None, ".3f"),
            fmt_or_dash(sol.sol_score if sol else None, ".3f"),
            fmt_or_dash(speedup, ".2f"),
            fmt_or_dash(ext.speedup_vs_compile, ".2f"),
        )
    return table


def summary_table(results: dict[str, list[Trace]]) -> Table:
    """One row per solution: passed count and geometric means over its workloads."""
    table = Table(title="summary (geometric means over passed workloads)", title_justify="left")
    for col in ("solution", "passed", "SOL frac", "SOL score", "x eager", "x compile"):
        table.add_column(col, justify="left" if col == "solution" else "right")
    for name, traces in results.items():
        passed = [t for t in traces if t.evaluation and t.evaluation.status is EvaluationStatus.PASSED]
        sols = [t.evaluation.solforge.sol for t in passed if t.evaluation.solforge.sol]
        table.add_row(
            name,
            f"{len(passed)}/{len(traces)}",
            fmt_or_dash(_geomean([s.sol_fraction for s in sols]), ".3f"),
            fmt_or_dash(_geomean([s.sol_score for s in sols]), ".3f"),
            fmt_or_dash(_geomean([t.evaluation.performance.speedup_factor for t in passed if t.evaluation.performance]), ".2f"),
            fmt_or_dash(_geomean([t.evaluation.solforge.speedup_vs_compile for t in passed]), ".2f"),
        )
    return table


def bench(
    definition: Annotated[str, typer.Argument(help="A built-in problem name, or a definition name in --dataset.")],
    dataset: Annotated[Optional[Path], typer.Option(help="A FlashInfer-Trace dataset directory.")] = None,
    solution: Annotated[
        Optional[list[Path]], typer.Option("--solution", "-s", help="Solution JSON, or a .py with a `run` function.")
    ] = None,
    language: Annotated[str, typer.Option(help="Language of a .py solution: pytorch, triton, numba.")] = "pytorch",
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when present).")] = None,
    baselines: Annotated[
        Optional[str], typer.Option(help="Comma-separated: eager, compile (default: both on cuda, eager on cpu).")
    ] = None,
    workloads: Annotated[
        Optional[str], typer.Option(help="all, search, held-out or smoke (default: smoke on cpu, search on cuda).")
    ] = None,
    timeout: Annotated[Optional[float], typer.Option(
        help="Hard limit, in seconds, of each request to the worker: one workload's correctness calls, "
        "or its timing run (default 300: an honest kernel never meets it).")] = None,
    cuda_graph: Annotated[bool, typer.Option(help="Time CUDA-graph replays (for launch-bound kernels).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write every Trace as a JSON line here.")] = None,
) -> None:
    """Evaluate the baselines and every solution on every selected workload."""
    from solforge.bench import BenchConfig, run_bench, solution_from_py
    from solforge.problems import select_workloads
    from solforge.spec import load_solution

    device = device or default_device()
    if device not in ("cuda", "cpu"):
        raise SpecError(f"--device: expected 'cuda' or 'cpu', got '{device}'")
    if device == "cuda" and default_device() != "cuda":
        raise SpecError("--device cuda: torch sees no CUDA device on this machine (use --device cpu)")
    defn, all_workloads, root = resolve_problem(definition, dataset)
    which = workloads or default_workload_set(device, all_workloads)
    selected = select_workloads(all_workloads, which)
    if not selected:
        raise SpecError(f"--workloads {which}: definition '{defn.name}' has no such workloads")
    try:
        lang = Language(language)
    except ValueError:
        raise SpecError(f"--language: expected one of {[l.value for l in Language]}, got '{language}'") from None
    solutions = []
    for path in solution or []:
        if not path.exists():
            raise SpecError(f"{path}: no such solution file")
        if path.suffix == ".py":
            solutions.append(solution_from_py(path, defn, language=lang.value))
        else:
            solutions.append(load_solution(path, defn))
    names = [b.strip() for b in (baselines or ("eager,compile" if device == "cuda" else "eager")).split(",") if b.strip()]
    for b in names:
        if b not in ("eager", "compile"):
            raise SpecError(f"--baselines: unknown baseline '{b}' (expected eager, compile)")
    config_args = {"device": device, "dataset_root": root, "cuda_graph": cuda_graph}
    if timeout is not None:
        config_args["timeout_s"] = timeout
    config = BenchConfig(**config_args)

    console.print(f"[bold]{defn.name}[/bold] ({defn.op_type}) on {device}: {len(selected)} {which} workload(s)")
    result = run_bench(defn, selected, solutions, device=device, baselines=tuple(names), config=config)
    console.print(f"device: {result.device.name} — {result.device.reason}")
    every = {**{f"baseline:{k}": v for k, v in result.baselines.items()}, **result.solutions}
    for name, traces in every.items():
        console.print(trace_table(name, traces))
    console.print(summary_table(every))
    if out is not None:
        from solforge.spec import write_jsonl

        write_jsonl(out, [t for traces in every.values() for t in traces])
        console.print(f"wrote {sum(len(v) for v in every.values())} traces to {out}")
    if result.failed:
        console.print(f"[red]failed:[/red] {', '.join(result.failed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
