"""`solforge calibrate`: measure this device's ceilings, show them beside the datasheet, cache them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pathlib import Path

    from solforge.hardware import Ceilings, DetectedDevice


def register(app: typer.Typer) -> None:
    """Add the `calibrate` command to `app`."""

    @app.command("calibrate")
    def calibrate_command(
        device: str | None = typer.Option(None, "--device", help="cuda or cpu (default: cuda if available, else cpu)."),
        force: bool = typer.Option(False, "--force", help="Measure again even if ceilings are cached."),
    ) -> None:
        """Measure the DRAM bandwidth and matmul TFLOP/s this device reaches, and cache them."""
        from solforge.hardware import calibrate, ceilings_path, detect

        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        ceilings = calibrate(device, force=force)
        detected = detect(device)
        _print(detected, ceilings, ceilings_path(device))


def _print(detected: DetectedDevice, ceilings: Ceilings, path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    spec = detected.spec
    table = Table(title=f"Ceilings of {ceilings.device_name} ({ceilings.device})")
    table.add_column("ceiling")
    table.add_column("measured", justify="right")
    table.add_column("datasheet", justify="right")
    table.add_column("measured / datasheet", justify="right")

    def row(label: str, measured: float, datasheet: float | None, unit: str) -> None:
        shown = f"{datasheet:,.1f} {unit}" if datasheet is not None else "-"
        ratio = f"{measured / datasheet:.0%}" if datasheet else "-"
        table.add_row(label, f"{measured:,.3g} {unit}" if measured < 10 else f"{measured:,.1f} {unit}", shown, ratio)

    row("DRAM bandwidth", ceilings.dram_bandwidth_gb_s, spec.dram_bandwidth_gb_s if spec else None, "GB/s")
    for dtype_name, tflops in ceilings.matmul_tflops.items():
        label = f"matmul {dtype_name}" + (" (SIMT, TF32 off)" if dtype_name == "float32" else "")
        row(label, tflops, spec.peak_tflops(dtype_name) if spec else None, "TFLOP/s")

    console = Console(markup=False, highlight=False)  # device names and error texts are not markup
    console.print(table)
    console.print(f"device: {detected.reason}", soft_wrap=True)
    console.print(f"measured at {ceilings.measured_at} with torch {ceilings.torch_version}", soft_wrap=True)
    for dtype_name, why in ceilings.skipped.items():
        console.print(f"not measured: matmul {dtype_name} ({why})", soft_wrap=True)
    for warning in ceilings.warnings:
        console.print(f"warning: {warning}", soft_wrap=True, style="yellow")
    console.print(f"cache: {path}", soft_wrap=True)
