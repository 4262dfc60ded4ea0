"""`solforge calibrate`: measure this device's ceilings, show them beside the datasheet, cache them.

Every run measures. A measurement taken under load does not replace a clean cached
calibration unless `--force`: the command then prints one line saying so and exits 2,
and the clean file is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from solforge.hardware import Ceilings, Device


def register(app: typer.Typer) -> None:
    """Add the `calibrate` command to `app`."""

    @app.command("calibrate")
    def calibrate_command(
        device: str | None = typer.Option(None, "--device", help="cuda, cuda:N or cpu (default: cuda if available, "
                                                                  "else cpu)."),
        force: bool = typer.Option(False, "--force", help="Write the result even if it was measured under load "
                                                           "and the cached calibration is clean."),
    ) -> None:
        """Measure the DRAM bandwidth and matmul TFLOP/s this device reaches, and the load it ran under; cache them."""
        from solforge.hardware import Device, calibrate, resolve_device

        target = resolve_device(device)
        ceilings = calibrate(target, force=force)
        _print(Device.parse(str(target)), ceilings)


def figure_text(value: float, unit: str) -> str:
    """How the table prints a measured figure: 3 significant digits under 10, else one decimal; with its unit."""
    return f"{value:,.3g} {unit}" if value < 10 else f"{value:,.1f} {unit}"


def _print(device: Device, ceilings: Ceilings) -> None:
    from rich.console import Console
    from rich.table import Table

    spec = device.spec
    table = Table(title=f"Ceilings of {ceilings.device_name} ({ceilings.device})")
    table.add_column("ceiling")
    table.add_column("measured", justify="right")
    table.add_column("spread (IQR / median)", justify="right")
    table.add_column("datasheet", justify="right")
    table.add_column("measured / datasheet", justify="right")

    def row(label: str, figure: str, measured: float, datasheet: float | None, unit: str) -> None:
        shown = f"{datasheet:,.1f} {unit}" if datasheet is not None else "-"
        ratio = f"{measured / datasheet:.0%}" if datasheet else "-"
        spread = ceilings.spread.get(figure)
        stability = "-" if spread is None else (
            f"{spread.relative_iqr:.1%}" + ("" if spread.stable else f" unstable ({spread.attempts} rounds)"))
        table.add_row(label, figure_text(measured, unit), stability, shown, ratio)

    row("DRAM bandwidth", "dram_bandwidth_gb_s", ceilings.dram_bandwidth_gb_s,
        spec.dram_bandwidth_gb_s if spec else None, "GB/s")
    for dtype_name, tflops in ceilings.matmul_tflops.items():
        label = f"matmul {dtype_name}" + (" (SIMT, TF32 off)" if dtype_name == "float32" else "")
        row(label, f"matmul_tflops.{dtype_name}", tflops, spec.peak_tflops(dtype_name) if spec else None, "TFLOP/s")

    console = Console(markup=False, highlight=False)  # device names and error texts are not markup
    console.print(table)
    console.print(f"device: {device.reason}", soft_wrap=True)
    versions = ", ".join(f"{name} {version}" for name, version in ceilings.versions.items())
    console.print(f"measured at {ceilings.measured_at} with {versions or 'torch ' + ceilings.torch_version}",
                  soft_wrap=True)
    if ceilings.load is not None:
        console.print(f"load: {ceilings.load.summary()}", soft_wrap=True)
    for dtype_name, why in ceilings.skipped.items():
        console.print(f"not measured: matmul {dtype_name} ({why})", soft_wrap=True)
    for warning in ceilings.warnings:
        console.print(f"warning: {warning}", soft_wrap=True, style="yellow")
    console.print(f"cache: {device.ceilings_path}", soft_wrap=True)
