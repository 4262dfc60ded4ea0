"""`solforge export`: winners in the Hugging Face `kernels` layout, loadable without solforge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from solforge.spec import SpecError

console = Console()
FORMATS = ("hf-kernels",)


def export(
    runs: Annotated[list[str], typer.Argument(help="Run folders, winner folders or solution JSONs.")],
    as_: Annotated[str, typer.Option("--as", help="The package format: hf-kernels.")] = "hf-kernels",
    out: Annotated[Path, typer.Argument(help="The package folder to write (replaced when it exists).")] = ...,
    dataset: Annotated[Optional[list[Path]], typer.Option(help="Dataset folder(s) with definitions that are not built in.")] = None,
) -> None:
    """Write winners as a local kernel package (Hugging Face `kernels` layout)."""
    from solforge.runtime.export import export_hf_kernels

    if as_ not in FORMATS:
        raise SpecError(f"--as: expected one of {', '.join(FORMATS)}, got '{as_}'")
    result = export_hf_kernels(runs, out, datasets=list(dataset or []))
    console.print(f"wrote {result['path']} (build/{result['variant']}), layers: {', '.join(result['layers'])}")
    for name, why in result["skipped"]:
        console.print(f"  not exported: {name}: {why}")
    console.print(f"load it: KernelConfig(kernel_mapping={{\"RMSNorm\": \"{Path(result['path']).resolve()}:RMSNorm\"}}, "
                  "use_local_kernel=True), or kernels.LocalLayerRepository")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
