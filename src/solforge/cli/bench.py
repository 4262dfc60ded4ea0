"""`solforge bench`: evaluate baselines and solutions on a definition's workloads.

The solutions are the `-s` files, else the dataset's own solutions of the definition.
Each verdict is printed as it lands and appended to `--out` as a FlashInfer-Trace line
(flushed), so a stopped run keeps what it finished; then, per solution, a table by
workload (status, latency, achieved TFLOP/s and GB/s, SOL time, SOL fraction, SOL score,
speedup vs eager and vs torch.compile), and a summary. Every flag is checked before any
work: a bad number or an `--out` that cannot be written is one line on stderr and exit
code 2. Paths are resolved once here (the harness's processes change directory). Exits
1 when any solution fails on any workload.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import IO, Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from solforge.spec import EvaluationStatus, Language, SpecError, Trace, Workload

console = Console(width=None if Console().is_terminal else 160)  # logs and CI: wide enough for the tables


def default_device() -> str:
    """This machine's default device ('cuda:0' when torch sees a GPU, else 'cpu')."""
    from solforge.hardware import resolve_device

    return resolve_device(None).canonical


def check_timeout(timeout: float | None) -> None:
    """Raises SpecError unless `timeout` is None or a positive, finite number of seconds."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise SpecError(f"--timeout: expected a positive number of seconds, got {timeout:g}")


def check_out(out: Path) -> Path:
    """`out` resolved, after checking that it can be written: opened for appending (which
    changes nothing, and a file it had to create is removed again), or, when its
    directory does not exist yet, the nearest existing one is a writable directory.
    Raises SpecError."""
    out = out.expanduser().resolve()
    if out.is_dir():
        raise SpecError(f"--out {out}: is a directory, expected a file for the traces")
    if not out.parent.exists():
        parent = next(p for p in out.parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise SpecError(f"--out {out}: cannot create the file ({parent} is not a writable directory)")
        return out
    existed = out.exists()
    try:
        with out.open("a"):
            pass
    except OSError as exc:
        raise SpecError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
    if not existed:
        out.unlink()
    return out


def open_out(out: Path) -> IO[str]:
    """`out` opened for writing (truncated: the file holds this run's traces). Raises SpecError."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return out.open("w")
    except OSError as exc:
        raise SpecError(f"--out {out}: cannot write ({exc.strerror or exc})") from None


def verdict_line(name: str, trace: Trace) -> str:
    """One line for one trace as it lands: solution, workload, status, latency, SOL score."""
    ev = trace.evaluation
    assert ev is not None
    latency = ev.performance.latency_ms if ev.performance else None
    sol = ev.solforge.sol
    parts = [f"{name}", trace.workload.label, ev.status.value]
    if latency is not None:
        parts.append(f"{latency:.4f} ms")
    if sol is not None and sol.sol_score is not None:
        parts.append(f"SOL score {sol.sol_score:.3f}")
    if ev.status is not EvaluationStatus.PASSED and ev.log:
        parts.append(ev.log.strip().splitlines()[-1][:160] if ev.log.strip() else "")
    return " | ".join(p for p in parts if p)


def default_workload_set(device: str, workloads: list[Workload]) -> str:
    """'smoke' on the CPU when CPU-sized workloads exist, else 'search' (the problems' one rule)."""
    from solforge.problems import default_selection

    return default_selection(device, workloads)


def fmt_or_dash(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or '-' when it is missing or NaN (shared by the CLI tables)."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def timed_cell(ms: float | None, spread: tuple[float, bool] | None) -> str:
    """A latency with its stability: '0.2100 ±3%' (IQR / median of the timed samples), and
    a trailing '!' when the harness marked the figure unstable (not a sound figure)."""
    if ms is None:
        return "-"
    if spread is None:
        return f"{ms:.4f}"
    fraction, unstable = spread
    return f"{ms:.4f} ±{100 * fraction:.0f}%" + ("!" if unstable else "")


def _geomean(values: list[float | None]) -> float | None:
    from solforge.search.fitness import geometric_mean  # the one geometric mean

    return geometric_mean(v for v in values if v is not None and v > 0)


def trace_table(title: str, traces: list[Trace]) -> Table:
    """One row per workload of one solution's traces; the latency with its spread (IQR /
    median of the timed samples) and '!' where the harness marked it unstable."""
    from solforge.roofline.attach import timing_spread

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
            timed_cell(latency, timing_spread(t)) if latency is not None else "-",
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
    device: Annotated[Optional[str], typer.Option(
        help="cuda, cuda:N, cpu, or a plugin's device kind (default: cuda when present).")] = None,
    baselines: Annotated[
        Optional[str], typer.Option(help="Comma-separated: eager, compile (default: both on cuda, eager on cpu).")
    ] = None,
    workloads: Annotated[
        Optional[str], typer.Option(help="all, search, held-out or smoke, or several joined by commas "
                                    "(smoke,search) (default: smoke on cpu, search on cuda).")
    ] = None,
    timeout: Annotated[Optional[float], typer.Option(
        help="Hard limit, in seconds, of each request to the worker: one workload's correctness calls, "
        "or its timing run (default 300: an honest kernel never meets it).")] = None,
    cuda_graph: Annotated[bool, typer.Option(help="Time CUDA-graph replays (for launch-bound kernels).")] = False,
    sandbox: Annotated[bool, typer.Option(
        help="Run each solution under bubblewrap: no network, read-only root, its own PID namespace.")] = False,
    memory_limit_gb: Annotated[Optional[float], typer.Option(
        help="Host memory each solution's process may use, GiB (past it, an out-of-memory kill).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Append every Trace as a JSON line here, as it lands.")] = None,
) -> None:
    """Evaluate the baselines and every solution (the -s files, else the dataset's own) on
    every selected workload."""
    from solforge.bench import BenchConfig, run_bench, solution_from_py
    from solforge.problems import WORKLOAD_SELECTIONS, select_workloads
    from solforge.spec import dump_json, load_solution

    from solforge.hardware import TimerKind, resolve_device

    dev = resolve_device(device)  # SpecError, one line, for an unknown or absent device
    on_gpu = dev.timer is TimerKind.cuda_events
    device = dev.canonical
    check_timeout(timeout)
    for name in (workloads or "").split(",") if workloads else ():
        if name not in WORKLOAD_SELECTIONS:
            raise SpecError(f"--workloads: unknown '{name}' (expected one of: {', '.join(WORKLOAD_SELECTIONS)}, "
                            "or several joined by commas)")
    try:
        lang = Language(language)
    except ValueError:
        raise SpecError(f"--language: expected one of {[l.value for l in Language]}, got '{language}'") from None
    names = [b.strip() for b in (baselines or ("eager,compile" if on_gpu else "eager")).split(",") if b.strip()]
    for b in names:
        if b not in ("eager", "compile"):
            raise SpecError(f"--baselines: unknown baseline '{b}' (expected eager, compile)")
    out = check_out(out) if out is not None else None
    if dataset is not None and not dataset.is_dir():
        raise SpecError(f"--dataset {dataset}: not a dataset directory")

    from solforge.problems import load_problem

    defn, all_workloads, root, own_solutions = load_problem(definition, dataset)
    which = workloads or default_workload_set(device, all_workloads)
    selected = list({w.uuid: w for part in which.split(",") for w in select_workloads(all_workloads, part)}.values())
    if not selected:
        raise SpecError(f"--workloads {which}: definition '{defn.name}' has no such workloads")
    solutions = []
    for path in solution or []:
        if not path.exists():
            raise SpecError(f"{path}: no such solution file")
        if path.suffix == ".py":
            solutions.append(solution_from_py(path.resolve(), defn, language=lang.value))
        else:
            solutions.append(load_solution(path.resolve(), defn))
    if not solution:
        solutions = own_solutions
    if memory_limit_gb is not None and memory_limit_gb <= 0:
        raise SpecError(f"--memory-limit-gb: expected a number above 0, got {memory_limit_gb:g}")
    if sandbox:
        from solforge.bench.processes import sandbox_problem

        problem = sandbox_problem()
        if problem:
            raise SpecError(f"--sandbox: {problem}")
    config_args = {"device": device, "dataset_root": root, "cuda_graph": cuda_graph, "sandbox": sandbox,
                   "memory_limit_gb": memory_limit_gb}
    if timeout is not None:
        config_args["timeout_s"] = timeout
    config = BenchConfig(**config_args)

    console.print(f"[bold]{defn.name}[/bold] ({defn.op_type}) on {device}: {len(selected)} {which} workload(s)")
    if not solution and solutions:
        console.print(f"the dataset's {len(solutions)} solution(s): {', '.join(s.name for s in solutions)}",
                      markup=False, highlight=False)
    sink = open_out(out) if out is not None else None
    written = 0

    def on_trace(name: str, trace: Trace) -> None:
        nonlocal written
        label = f"baseline:{name}" if name in names and name not in {s.name for s in solutions} else name
        console.print(verdict_line(label, trace), markup=False, highlight=False, soft_wrap=True)
        if sink is not None:
            sink.write(dump_json(trace, indent=None) + "\n")
            sink.flush()
            written += 1

    try:
        result = run_bench(defn, selected, solutions, device=device, baselines=tuple(names), config=config,
                           on_trace=on_trace)
    finally:
        if sink is not None:
            sink.close()
    console.print(f"device: {result.device.name} — {result.device.reason}")
    every = {**{f"baseline:{k}": v for k, v in result.baselines.items()}, **result.solutions}
    for name, traces in every.items():
        console.print(trace_table(name, traces))
    console.print(summary_table(every))
    if out is not None:
        console.print(f"wrote {written} traces to {out}", markup=False, highlight=False)
    if result.failed:
        console.print(f"[red]failed:[/red] {', '.join(result.failed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
