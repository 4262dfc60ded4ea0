"""`solforge evolve`: search for a faster correct kernel, keeping every step in the archive.

Parses and prints; the run is `solforge.search.evolve`'s `prepare` (every check, before
anything is measured) and `execute`. Importing `solforge.agent` registers the `agent`
and `agent-cli` operators.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import solforge.agent  # noqa: F401 - registers the agent operators in the search's registry
from solforge.cli.bench import fmt_or_dash, timed_cell
from solforge.search.operators import describe_defaults, describe_registry
from solforge.spec import SpecError

console = Console(width=None if Console().is_terminal else 140)  # logs and CI: wide enough for the tables

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration_s(text: str) -> float:
    """'90s', '10m', '1.5h' or a plain number of seconds, in seconds. Raises SpecError."""
    m = _DURATION.match(text)
    if not m:
        raise SpecError(f"--budget: expected a duration like 90s, 10m or 1h, got '{text}'")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def progress_view(s) -> Group:
    """The live display of one snapshot."""
    head = Table.grid(padding=(0, 2))
    head.add_row("evaluated", str(s.evaluated), "best SOL fraction", fmt_or_dash(s.best_sol_fraction, ".3f"),
                 "best fitness", fmt_or_dash(s.best_fitness, ".4f"))
    remaining = "no limit" if s.remaining_s is None else f"{s.remaining_s:.0f} s"
    head.add_row("elapsed", f"{s.elapsed_s:.0f} s", "remaining", remaining, "failures",
                 ", ".join(f"{k} {v}" for k, v in sorted(s.failures.items()) if v and k != "PASSED") or "none")
    head.add_row("duplicates", str(s.duplicates), "cut", str(s.cut), "", "")
    return Group(head, Text(s.last, overflow="ellipsis", no_wrap=True))


def summary_table(result) -> tuple[Table, list[str]]:
    """The per-workload table (eager, torch.compile, best, SOL, the overhead floor, in ms;
    each timed figure with its spread, IQR / median) and its footnotes: where
    torch.compile has no figure the cell names a footnote that says why, never a bare
    '-'; an unstable figure is marked '!' and footnoted."""
    sol = f"SOL ({result.sol_source})" if result.sol_source else "SOL"
    title = ("per workload: best vs eager vs torch.compile vs SOL vs the harness's call-overhead floor (ms)"
             if not result.compile_only else "per workload: compile-only run, no timings")
    table = Table(title=title, title_justify="left")
    for col in ("workload", "set", "status", "eager", "compile", "best", sol, "floor", "SOL frac", "x eager"):
        table.add_column(col, justify="left" if col in ("workload", "set", "status") else "right")
    notes: list[str] = []
    for r in result.rows:
        speedup = r.eager_ms / r.best_ms if r.eager_ms and r.best_ms else None
        compile_cell = timed_cell(r.compile_ms, r.compile_spread)
        if r.compile_ms is None:
            why = r.compile_failure or "not measured"
            if why not in notes:
                notes.append(why)
            compile_cell = f"[{notes.index(why) + 1}]"
        status = r.status + (f" ({r.verdict})" if r.verdict and r.verdict not in ("scored", "failed") else "")
        table.add_row(r.label, "held-out" if r.held_out else "search", status, timed_cell(r.eager_ms, r.eager_spread),
                      compile_cell, timed_cell(r.best_ms, r.best_spread), fmt_or_dash(r.sol_ms, ".4f"),
                      fmt_or_dash(r.floor_ms, ".4f"), fmt_or_dash(r.sol_fraction, ".3f"), fmt_or_dash(speedup, ".2f"))
    footnotes = [f"[{i + 1}] torch.compile: {why}" for i, why in enumerate(notes)]
    spreads = [s for r in result.rows for s in (r.eager_spread, r.compile_spread, r.best_spread) if s is not None]
    if spreads:
        footnotes.append("±: the spread of the timed samples (IQR / median)"
                         + ("; !: unstable even after a re-run (too few samples or too wide a spread): not a sound "
                            "figure" if any(unstable for _, unstable in spreads) else ""))
    return table, footnotes


_OPERATORS_HELP = "Comma-separated, of: " + "; ".join(f"{n} ({s})" for n, s in describe_registry().items()) + \
    f". Default: {describe_defaults()}."


def evolve(
    problem: Annotated[str, typer.Argument(help="A built-in problem name, or a definition name in --dataset.")],
    dataset: Annotated[Optional[Path], typer.Option(help="A FlashInfer-Trace dataset directory.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when present).")] = None,
    strategy: Annotated[str, typer.Option(
        help="lineage, map-elites, or best-of-n (independent samples: the baseline).")] = "lineage",
    operators: Annotated[Optional[str], typer.Option(help=_OPERATORS_HELP)] = None,
    budget: Annotated[Optional[str], typer.Option(help="Wall-clock budget of this invocation, e.g. 90s, 10m, 1h.")] = None,
    max_candidates: Annotated[Optional[int], typer.Option(help="Stop after this many evaluated candidates.")] = None,
    random_seed: Annotated[int, typer.Option("--random-seed", "--seed",
                                             help="Seed of the operators' random choices (--seed: the old name).")] = 0,
    resume: Annotated[Optional[str], typer.Option(help="Continue the run with this id (or run directory).")] = None,
    runs_root: Annotated[Path, typer.Option(help="Where runs are kept.")] = Path("solforge-runs"),
    llm: Annotated[Optional[list[str]], typer.Option(
        help="Model(s) of the agent operator: openai:MODEL or anthropic:MODEL, weights as =W, repeatable.")] = None,
    llm_config: Annotated[Optional[Path], typer.Option(help="LLM config file (TOML; see docs/agent.md).")] = None,
    max_cost_usd: Annotated[Optional[float], typer.Option(help="LLM budget of the whole run, in US dollars.")] = None,
    agent_cmd: Annotated[Optional[str], typer.Option(
        help="Command template of the agent-cli operator, with {workspace}, {prompt_file}, {prompt}.")] = None,
    agent_timeout: Annotated[float, typer.Option(help="Time limit of one agent-cli step, seconds.")] = 1800.0,
    tune: Annotated[str, typer.Option(
        help="The tune operator's tuner: tpe (Optuna's model; default), gp (needs scipy), random, grid, "
             "local.")] = "tpe",
    workloads: Annotated[str, typer.Option(
        help="auto: on the CPU, real shapes chosen by memory and time caps; smoke: the CPU smoke workloads; "
             "given: every workload of the dataset that is neither held-out nor smoke, uncapped.")] = "auto",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="No compile caches and no source/IR dedup.")] = False,
    no_cut: Annotated[bool, typer.Option("--no-cut", help="Never cut timing at 3x the best, and time every candidate with the full budget (no "
                                        "screening budget for first timings).")] = False,
    no_build_ahead: Annotated[bool, typer.Option(
        "--no-build-ahead", help="On the CPU, evaluate one candidate at a time: no candidate builds (and numba "
                                 "compiles) while another is judged.")] = False,
    target: Annotated[Optional[str], typer.Option(
        help="Cross-compile every Triton/CUDA candidate for this GPU target first: sm_80, sm_90a, sm_100a.")] = None,
    compile_only: Annotated[bool, typer.Option(
        "--compile-only", help="With --target: judge on compile reports alone (no GPU needed); not a timing.")] = False,
    ray: Annotated[Optional[str], typer.Option(
        help="Evaluate on Ray: auto (this machine's cluster, else a local one) or a cluster address.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Ray actors (default: one per GPU, or per CPU).")] = None,
    baselines: Annotated[Optional[str], typer.Option(
        help="Comma-separated baselines timed first: eager, compile (default: both).")] = None,
) -> None:
    """Search for a faster correct kernel, then gate the best on the held-out workloads."""
    from solforge.problems import resolve_problem
    from solforge.search.config import EvolveConfig
    from solforge.search.evolve import RunFailed, RunInterrupted, execute, interrupt_on_signals, prepare

    ops = None if operators is None else tuple(o.strip() for o in operators.split(",") if o.strip())
    defn, wls, root = resolve_problem(problem, dataset)
    config = EvolveConfig(device=device, strategy=strategy, operators=ops,
                          max_wall_seconds=parse_duration_s(budget) if budget else None,
                          max_candidates=max_candidates, random_seed=random_seed, runs_root=runs_root,
                          llm=tuple(llm or ()), llm_config=llm_config, max_cost_usd=max_cost_usd, agent_cmd=agent_cmd,
                          agent_timeout_s=agent_timeout, dataset_root=root, tune_strategy=tune,
                          workloads=workloads, cache=not no_cache, cut=not no_cut, build_ahead=not no_build_ahead,
                          target=target,
                          compile_only=compile_only, ray=ray, workers=workers,
                          baselines=tuple(b.strip() for b in baselines.split(",") if b.strip()) if baselines else None)
    if ray is not None:
        _check_ray_installed()
    plan = prepare(defn, wls, config, resume=resume)
    for notice in plan.notices:
        console.print(notice, soft_wrap=True)
    if plan.restored:
        console.print(f"resuming {resume}: restored {', '.join(plan.restored)}", soft_wrap=True)
    c = plan.config
    console.print(f"[bold]evolve[/bold] {defn.name} on {c.device}: strategy {c.strategy}, "
                  f"operators {', '.join(c.operators)} (tune: {c.tune_strategy}); evaluator "
                  f"{plan.evaluator.description}", soft_wrap=True)
    console.print(f"search workloads ({plan.split.rule}): {', '.join(w.label for w in plan.split.search)}",
                  soft_wrap=True)
    if c.compile_only:
        console.print(f"[bold red]COMPILE-ONLY[/bold red]: candidates are cross-compiled for {c.target} and judged "
                      "on ptxas' registers, spills and occupancy. Nothing is run, checked for correctness or timed: "
                      "the fitness is NOT a timing.", soft_wrap=True)
    with Live(console=console, refresh_per_second=4, transient=False) as live, interrupt_on_signals():
        try:
            result = execute(plan, on_progress=lambda s: live.update(progress_view(s)))
        except RunInterrupted as exc:
            live.stop()
            if exc.run_id is not None:
                console.print(f"[yellow]interrupted[/yellow]: the archive is consistent; continue with "
                              f"--resume {exc.run_id}", soft_wrap=True)
            else:
                console.print("[yellow]interrupted[/yellow] before the run was created: nothing to resume")
            raise typer.Exit(128 + int(exc.signal_number)) from None
        except RunFailed as exc:
            live.stop()
            print(f"solforge: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
    console.print()
    table, notes = summary_table(result)
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True)
    dup = {k.removeprefix("duplicate_"): v for k, v in result.duplicates.items() if v}
    console.print(f"run {result.run_id}: {result.evaluated} candidates evaluated; not evaluated as duplicates: "
                  f"{sum(dup.values())}" + (f" ({', '.join(f'{k} {v}' for k, v in dup.items())})" if dup else "")
                  + f"; timings cut at {c.cut_factor:g}x the best: {result.cut}; stopped: {result.stop_reason}",
                  soft_wrap=True)
    if result.compile_only:
        console.print("[bold red]COMPILE-ONLY[/bold red]: the fitness below is compile-level (occupancy from "
                      "ptxas), not a timing", soft_wrap=True)
    console.print(f"fitness (geometric-mean SOL score): first {fmt_or_dash(result.first_fitness, '.4f')}, "
                  f"best {fmt_or_dash(result.best_fitness, '.4f')}"
                  + (f", reached after {result.seconds_to_best:.0f} s" if result.seconds_to_best is not None else ""))
    _print_report(result.run_dir)
    if result.winner_id is None:
        console.print("[red]no winner[/red]: no candidate passed every search and held-out workload")
        raise typer.Exit(1)
    verdict = {True: "the best candidate generalizes to the held-out workloads",
               False: "the best candidate failed held-out; the best one that passes is exported",
               None: "no held-out workloads to check"}[result.generalizes]
    console.print(f"winner #{result.winner_id}: {verdict}")
    for kind, path in result.exported.items():
        console.print(f"  {kind}: {path}")


def _check_ray_installed() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SpecError("--ray: Ray is not installed (pip install 'solforge[dist]')") from None


def _print_report(run_dir: Path) -> None:
    """The run's HTML report, written and named; a report that fails costs one line, never the run."""
    from solforge.report import write_report

    try:
        path = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run is done and saved; the report is a view of it
        console.print(f"report: not written ({type(exc).__name__}: {exc})")
        return
    console.print(f"report: {path}")


def register(app: typer.Typer) -> None:
    app.command("evolve")(evolve)
