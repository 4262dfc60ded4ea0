"""`solforge problems`: list, show, validate and export problem definitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from solforge.spec import SpecError

console = Console()
problems_app = typer.Typer(help="The built-in problem suite, and checks of your own definitions.", no_args_is_help=True)


DatasetOption = Annotated[
    Optional[Path], typer.Option(help="A FlashInfer-Trace dataset directory (e.g. one `solforge import` wrote).")
]


@problems_app.command("list")
def list_problems(
    op_type: Annotated[Optional[str], typer.Option(help="Only this op_type.")] = None,
    tag: Annotated[Optional[str], typer.Option(help="Only definitions with this tag, e.g. stage:decode.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Only definitions tagged model:<this>.")] = None,
    dataset: DatasetOption = None,
) -> None:
    """The built-in definitions (or a dataset's), filtered by op_type, tag and model."""
    from solforge.problems import builtin_dataset
    from solforge.spec import load_dataset

    if dataset is not None and not dataset.is_dir():
        raise SpecError(f"--dataset {dataset}: not a dataset directory")
    ds = load_dataset(dataset.resolve()) if dataset is not None else builtin_dataset()
    table = Table(title=f"problems in {dataset}" if dataset is not None else "built-in problems", title_justify="left")
    for col in ("name", "op_type", "models", "workloads (held-out, smoke)"):
        table.add_column(col)
    for name, defn in sorted(ds.definitions.items()):
        models = [t.split(":", 1)[1] for t in defn.tags if t.startswith("model:")]
        if op_type and defn.op_type != op_type or tag and tag not in defn.tags or model and model not in models:
            continue
        wls = ds.workloads.get(name, [])
        full = [w for w in wls if not w.smoke]
        table.add_row(
            name, defn.op_type, ", ".join(models),
            f"{len(full)} ({sum(w.held_out for w in full)}, {sum(w.smoke for w in wls)})",
        )
    console.print(table)


@problems_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A built-in problem name, or a definition name in --dataset.")],
    device: Annotated[Optional[str], typer.Option(help="Device for the SOL bounds (default: this machine's).")] = None,
    dataset: DatasetOption = None,
) -> None:
    """The axes, the workloads, and each workload's SOL bound on the device, with its binding term."""
    from solforge.cli.bench import default_device
    from solforge.problems import resolve_problem
    from solforge.hardware import detect
    from solforge.roofline import count_work, sol_bound

    if dataset is not None and not dataset.is_dir():
        raise SpecError(f"--dataset {dataset}: not a dataset directory")
    defn, workloads, _ = resolve_problem(name, dataset)
    detected = detect(device or default_device())
    console.print(f"[bold]{defn.name}[/bold] ({defn.op_type})  tags: {', '.join(defn.tags)}")
    if defn.description:
        console.print(defn.description)
    axes = Table(title="axes", title_justify="left")
    for col in ("axis", "type", "value"):
        axes.add_column(col)
    for aname, axis in defn.axes.items():
        axes.add_row(aname, axis.type, str(getattr(axis, "value", None) or getattr(axis, "expression", "") or "per workload"))
    console.print(axes)
    if defn.constraints:
        console.print(f"constraints: {'; '.join(defn.constraints)}", markup=False, highlight=False)
    generator = defn.solforge.inputs_generator
    if generator is not None:
        console.print(f"inputs: {generator.generator}({generator.args})"
                      + (f": {generator.description}" if generator.description else ""), markup=False, highlight=False)
    datasheet, calibrated = detected.datasheet_peaks(), detected.calibrated_peaks()
    console.print(f"device: {detected.name} — {detected.reason}")
    table = Table(title="workloads", title_justify="left")
    for col in ("workload", "set", "GFLOP", "MB moved", "FLOP/B", "SOL_ms datasheet", "SOL_ms calibrated", "binding"):
        table.add_column(col, justify="left" if col in ("workload", "set", "binding") else "right")
    uncounted = None
    for wl in workloads:
        kind = "smoke" if wl.smoke else "held-out" if wl.held_out else "search"
        try:
            work = count_work(defn, wl)
        except SpecError as exc:  # a reference that cannot run on meta tensors, without work formulas
            uncounted = str(exc)
            table.add_row(wl.label, kind, "-", "-", "-", "-", "-", "-")
            continue
        ds_bound = sol_bound(work, datasheet) if datasheet else None
        cal_bound = sol_bound(work, calibrated) if calibrated else None
        binding = (cal_bound or ds_bound).binding if (cal_bound or ds_bound) else "-"
        table.add_row(
            wl.label, kind, f"{work.total_flops / 1e9:.3f}", f"{work.bytes_moved / 1e6:.2f}",
            f"{work.arithmetic_intensity:.1f}",
            f"{ds_bound.time_ms:.4f}" if ds_bound else "-", f"{cal_bound.time_ms:.4f}" if cal_bound else "-", binding,
        )
    console.print(table)
    if uncounted:
        console.print(f"not counted: {uncounted}", markup=False, highlight=False)


@problems_app.command("validate")
def validate(path: Annotated[Path, typer.Argument(help="A definition JSON file or a dataset directory.")]) -> None:
    """Check a definition or a whole dataset; print every problem found, each naming its file and field."""
    from solforge.spec import Definition, Solution, Trace, check_definition, check_solution, check_workload, parse_model, read_json

    found: list[str] = []

    def guarded(source: str, fn):
        try:
            return fn()
        except SpecError as exc:
            found.append(str(exc) if str(exc).startswith(source) else f"{source}: {exc}")
            return None

    if not path.exists():
        raise SpecError(f"{path}: no such file or directory")
    files = [path] if path.is_file() else sorted((path / "definitions").rglob("*.json"))
    definitions = {}
    for f in files:
        defn = guarded(str(f), lambda f=f: parse_model(Definition, read_json(f), str(f)))
        if defn is not None:
            found.extend(f"{f}: {p}" for p in check_definition(defn))
            definitions[defn.name] = defn
    if path.is_dir():
        uuids: dict[tuple[str, str], str] = {}  # (definition, workload uuid) -> where first seen
        for f in sorted((path / "workloads").rglob("*.jsonl")):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                src = f"{f}:{i}"
                trace = guarded(src, lambda line=line, src=src: parse_model(Trace, _loads(line, src), src))
                if trace is None:
                    continue
                if trace.definition not in definitions:
                    found.append(f"{src}: definition: unknown definition '{trace.definition}'")
                    continue
                found.extend(f"{src}: {p}" for p in check_workload(definitions[trace.definition], trace.workload))
                first = uuids.setdefault((trace.definition, trace.workload.uuid), src)
                if first != src:  # the same workload twice: a duplicated definition's workloads attached again
                    found.append(f"{src}: workload.uuid: '{trace.workload.uuid}' of '{trace.definition}' "
                                 f"is already at {first}")
        for f in sorted((path / "solutions").rglob("*.json")):
            sol = guarded(str(f), lambda f=f: parse_model(Solution, read_json(f), str(f)))
            if sol is None:
                continue
            if sol.definition not in definitions:
                found.append(f"{f}: definition: unknown definition '{sol.definition}'")
                continue
            found.extend(f"{f}: {p}" for p in check_solution(definitions[sol.definition], sol))
    for line in found:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # one greppable line each
    if found:
        console.print(f"{len(found)} problem(s) found")
        raise typer.Exit(1)
    console.print(f"ok: {len(files)} definition(s) checked")


def _loads(line: str, source: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{source}: malformed JSON at column {exc.colno}: {exc.msg}") from None


@problems_app.command("export")
def export(out_dir: Annotated[Path, typer.Argument(help="Where to write the suite as a FlashInfer-Trace dataset.")]) -> None:
    """Write the built-in suite as a FlashInfer-Trace dataset directory."""
    from solforge.problems import builtin_dataset
    from solforge.spec import write_dataset

    ds = builtin_dataset()
    write_dataset(ds, out_dir)
    console.print(f"wrote {len(ds.definitions)} definitions to {out_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(problems_app, name="problems")
