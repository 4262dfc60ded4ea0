"""`solforge report RUN`: the run's HTML report, one self-contained file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from solforge.search import DEFAULT_RUNS_ROOT


def report(
    run: Annotated[str, typer.Argument(help="A run id (under --runs-root) or a run directory.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the HTML (default: RUN/report.html).")] = None,
    runs_root: Annotated[Path, typer.Option(help="Where runs are kept.")] = DEFAULT_RUNS_ROOT,
) -> None:
    """Write the run's report (fitness, lineage with diffs, roofline, winner, failures, cost) and print its path."""
    from solforge.report import resolve_run_dir, write_report

    print(write_report(resolve_run_dir(run, runs_root), out))


def register(app: typer.Typer) -> None:
    app.command("report")(report)
