"""`solforge runs list|show|export`: the search runs kept under the runs root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from solforge.search import DEFAULT_RUNS_ROOT

runs_app = typer.Typer(help="The search runs kept under the runs root (solforge-runs/).", no_args_is_help=True)
console = Console(width=None if Console().is_terminal else 160, markup=False, highlight=False)

RunsRoot = Annotated[Path, typer.Option(help="Where runs are kept.")]
RunArg = Annotated[str, typer.Argument(help="A run id (under --runs-root) or a run directory.")]


@runs_app.command("list")
def list_command(runs_root: RunsRoot = DEFAULT_RUNS_ROOT) -> None:
    """One line per run, oldest first: problem, device, strategy, status, candidates evaluated, best fitness."""
    from solforge.report.analysis import when
    from solforge.report.runs import list_runs

    runs = list_runs(runs_root)
    table = Table(title=f"runs in {runs_root}", title_justify="left")
    for col in ("run", "problem", "device", "strategy", "status", "started", "evaluated", "best fitness"):
        table.add_column(col, justify="right" if col in ("evaluated", "best fitness") else "left")
    for r in runs:
        if r.error is not None:
            table.add_row(r.run_id, f"unreadable: {r.error}", "", "", "", "", "", "")
            continue
        table.add_row(r.run_id, r.problem, r.device, r.strategy, r.status, when(r.created_at), str(r.evaluated),
                      "-" if r.best_fitness is None else f"{r.best_fitness:.4f}")
    console.print(table if runs else f"no runs in {runs_root}")


@runs_app.command("show")
def show_command(run: RunArg, runs_root: RunsRoot = DEFAULT_RUNS_ROOT) -> None:
    """The run's facts, its lineage, and what could not be read from its archive."""
    from solforge.report import REPORT_FILE, read_snapshot, resolve_run_dir
    from solforge.report.analysis import find_winner, run_facts, when

    snap = read_snapshot(resolve_run_dir(run, runs_root))
    winner_id, how = find_winner(snap)
    facts = Table.grid(padding=(0, 2))
    for name, value in run_facts(snap, winner_id, how):
        facts.add_row(name, value)
    report = snap.run_dir / REPORT_FILE
    facts.add_row("report", str(report) if report.is_file() else f"none yet (solforge report {run})")
    console.print(facts)
    if snap.lineage:
        table = Table(title="lineage", title_justify="left")
        for col in ("version", "candidate", "fitness", "committed", "reason"):
            table.add_column(col)
        for e in snap.lineage:
            table.add_row(str(e.version), f"#{e.candidate_id}", f"{e.fitness:.4f}", when(e.committed_at), e.reason)
        console.print(table)
    for line in snap.unreadable:
        console.print(f"could not read {line}")


@runs_app.command("export")
def export_command(
    run: RunArg,
    out: Annotated[Path, typer.Option(help="A new (or empty) directory for the FlashInfer-Trace dataset.")],
    runs_root: RunsRoot = DEFAULT_RUNS_ROOT,
) -> None:
    """Write the run as a FlashInfer-Trace dataset: definition, workloads, every candidate's solution, every trace."""
    from solforge.report import resolve_run_dir
    from solforge.report.runs import export_run

    print(export_run(resolve_run_dir(run, runs_root), out))


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
