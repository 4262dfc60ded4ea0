"""`solforge import`: other projects' problem sets as solforge datasets.

- `solforge import kernelbench PATH... --out DIR`: KernelBench problem files (and
  directories of them) into definitions and workloads; ModelNew files into solutions.
- `solforge import flashinfer-trace DIR --out DIR`: a FlashInfer-Trace or SOL-ExecBench
  dataset directory, normalized, blobs copied.

Both print what was imported, every file that was skipped or ignored with its reason,
and the notes; both write `import-report.json` beside the dataset. Exit code: 0 when everything
was imported, 1 when anything was skipped (what could be imported is still written),
2 on bad usage (a missing path, an --out that is not a new or empty directory).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from solforge.spec import SpecError

if TYPE_CHECKING:
    from solforge.spec.importers import ImportReport

console = Console()
import_app = typer.Typer(
    help="Import other projects' problem sets (KernelBench, FlashInfer-Trace, SOL-ExecBench) as datasets.",
    no_args_is_help=True,
)

OutOption = Annotated[Path, typer.Option("--out", help="A new or empty directory for the dataset.")]


def _print_report(report: ImportReport, out: Path) -> None:
    from solforge.spec.importers import REPORT_FILE, ItemKind

    # One line per item, never wrapped: paths and reasons stay greppable.
    counts = ", ".join(f"{report.count(k)} {k.value}(s)" for k in ItemKind if report.count(k))
    console.print(f"imported {counts or 'nothing'} into {escape(str(out))}", soft_wrap=True)
    for note in report.notes:
        value = f" = {escape(repr(note.value))}" if note.value is not None else ""
        console.print(f"[dim]note: {escape(note.path)}: {escape(note.message)}{value}[/dim]", soft_wrap=True, highlight=False)
    for item in report.ignored:
        console.print(f"ignored {escape(item.path)}: {escape(item.reason)}", soft_wrap=True, highlight=False)
    for item in report.skipped:
        console.print(f"[red]skipped[/red] {escape(item.path)}: {escape(item.reason)}", soft_wrap=True, highlight=False)
    if report.skipped:
        console.print(f"{len(report.skipped)} item(s) skipped")
    console.print(f"report: {escape(str(out / REPORT_FILE))}", soft_wrap=True)


def _fail(exc: SpecError) -> typer.Exit:
    print(f"solforge: {exc}", file=sys.stderr)
    return typer.Exit(2)


@import_app.command("kernelbench")
def kernelbench(
    paths: Annotated[list[Path], typer.Argument(help="KernelBench problem or ModelNew files, or directories of them.")],
    out: OutOption,
) -> None:
    """KernelBench problems into definitions and workloads, ModelNew files into solutions.

    Each file is executed (it is your code) in a fresh module namespace.
    """
    from solforge.spec.importers import check_out_dir, write_import
    from solforge.spec.importers.kernelbench import read_kernelbench

    try:
        check_out_dir(out)
        report = write_import(read_kernelbench(paths), out)
    except SpecError as exc:
        raise _fail(exc) from None
    _print_report(report, out)
    raise typer.Exit(report.exit_code)


@import_app.command("flashinfer-trace")
def flashinfer_trace(
    root: Annotated[Path, typer.Argument(help="A FlashInfer-Trace or SOL-ExecBench dataset directory.")],
    out: OutOption,
    materialize_custom: Annotated[
        bool,
        typer.Option(help="Make 'custom' inputs once with the definition's entry point (your code) and store them."),
    ] = False,
) -> None:
    """A FlashInfer-Trace or SOL-ExecBench dataset, normalized into solforge's schema."""
    from solforge.spec.importers import check_out_dir, write_import
    from solforge.spec.importers.flashinfer_trace import read_flashinfer_trace

    try:
        check_out_dir(out)
        report = write_import(read_flashinfer_trace(root, materialize_custom=materialize_custom), out)
    except SpecError as exc:
        raise _fail(exc) from None
    _print_report(report, out)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
