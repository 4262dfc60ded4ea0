"""`solforge compile`: cross-compile a solution or a seed kernel for a GPU target, on any machine.

    solforge compile triton/rmsnorm_row --target sm_90a --target sm_100a
    solforge compile my_solution.json --target sm_90a --workload search
    solforge compile kernel.py --definition rmsnorm_h4096 --target sm_80

Prints one table per kernel (a row per distinct specialization: registers, spills,
shared memory, block size, theoretical occupancy and its limiter, ptxas' warnings).
Exits 0 when everything compiles, 1 on a compile error (Triton's, ptxas' or nvcc's
message), 2 on bad input: an unknown target, a launch that cannot be specialized, a
launch beyond the target's limits, or a bad file, seed or workload. Errors are one line
naming the kernel, the workload and the compiler's message. The solution's Python runs
in this process (it is the user's own code; `cross_compile` isolates it for the search).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from solforge.spec import Definition, SpecError, Workload

console = Console(width=None if Console().is_terminal else 160)  # logs and CI: wide enough for the tables

# CrossCompileError kinds that are the user's input (rc 2) rather than a kernel that fails to compile (rc 1).
_BAD_INPUT_KINDS = ("specialize", "limit")


def _select(workloads: list[Workload], wanted: list[str], where: str) -> list[Workload]:
    """Workloads by selection name (all, search, held-out, smoke), uuid or label, in order, no repeats."""
    from solforge.problems import WORKLOAD_SELECTIONS, select_workloads

    picked: dict[str, Workload] = {}
    for item in wanted:
        if item in WORKLOAD_SELECTIONS:
            chosen = select_workloads(workloads, item)
        else:
            chosen = [w for w in workloads if item in (w.uuid, w.solforge.label)]
        if not chosen:
            raise SpecError(f"--workload: '{item}' matches no workload of {where} (expected a uuid, a label, or one of: "
                            f"{', '.join(WORKLOAD_SELECTIONS)})")  # fmt: skip
        picked.update((w.uuid, w) for w in chosen)
    return list(picked.values())


def _py_solution(path: Path, definition: Definition, language: str):
    """A `.py` file with a top-level `run` as a Solution; destination-passing when run takes
    the definition's inputs then its outputs."""
    from solforge.spec import BuildSpec, Language, Solution, SourceFile, check_solution

    text = path.read_text()
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise SpecError(f"{path}: not valid Python (line {exc.lineno}: {exc.msg})") from None
    run = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"), None)
    if run is None:
        raise SpecError(f"{path}: run: expected a top-level function `run`")
    args = tuple(a.arg for a in (*run.args.posonlyargs, *run.args.args, *run.args.kwonlyargs))
    try:
        lang = Language(language)
    except ValueError:
        raise SpecError(f"--language: expected one of {[x.value for x in Language]}, got '{language}'") from None
    solution = Solution(
        name=path.stem, definition=definition.name,
        spec=BuildSpec(language=lang, entry_point=f"{path.name}::run",
                       destination_passing_style=args == (*definition.inputs, *definition.outputs)),
        sources=[SourceFile(path=path.name, content=text)],
    )  # fmt: skip
    problems = check_solution(definition, solution)
    if problems:
        raise SpecError(f"{path}: {problems[0]}")
    return solution


def resolve_subjects(subject: str, definition: str | None, dataset: Path | None, language: str):
    """[(solution, definition, workloads, dataset root)] for a Solution JSON, a `.py` or `.cu`
    file, or a seed name (every built-in definition it implements, or `definition`)."""
    from solforge.problems import resolve_problem
    from solforge.spec import load_solution, read_json

    path = Path(subject)
    if path.is_file():
        if path.suffix == ".json":
            name = definition or read_json(path).get("definition")
            if not isinstance(name, str):
                raise SpecError(f"{path}: definition: expected the name of the definition it implements")
            defn, workloads, root = resolve_problem(name, dataset)
            return [(load_solution(path, defn), defn, workloads, root)]
        if path.suffix in (".py", ".cu"):
            if definition is None:
                raise SpecError(f"{path}: --definition: a {path.suffix} solution needs the definition it implements")
            defn, workloads, root = resolve_problem(definition, dataset)
            if path.suffix == ".py":
                return [(_py_solution(path, defn, language), defn, workloads, root)]
            from solforge.spec import BuildSpec, Solution, SourceFile

            spec = BuildSpec(language="cuda", entry_point=f"{path.name}::run", destination_passing_style=False)
            source = SourceFile(path=path.name, content=path.read_text())
            sol = Solution(name=path.stem, definition=defn.name, spec=spec, sources=[source])
            return [(sol, defn, workloads, root)]
        raise SpecError(f"{path}: expected a Solution .json, a .py or a .cu file")
    from solforge.knowledge import load_seeds
    from solforge.problems import builtin_names, builtin_root, load_builtin

    seeds = [s for s in load_seeds() if subject in (s.name, s.stem)]
    if not seeds:
        known = ", ".join(s.name for s in load_seeds("triton"))
        raise SpecError(f"{subject}: no such file, and no seed of that name (Triton seeds: {known})")
    seed = seeds[0]
    if definition is not None:
        defn, workloads, root = resolve_problem(definition, dataset)
        if not seed.applies_to(defn):
            raise SpecError(f"--definition: seed '{seed.name}' does not implement '{defn.name}'")
        return [(seed.to_solution(defn), defn, workloads, root)]
    out = []
    for name in builtin_names():
        defn, workloads = load_builtin(name)
        if seed.applies_to(defn):
            out.append((seed.to_solution(defn), defn, workloads, builtin_root()))
    if not out:
        raise SpecError(f"{subject}: the seed implements no built-in definition (give --definition and --dataset)")
    return out


def kernel_tables(reports, labels: dict[str, str]) -> list[Table]:
    """One table per kernel name, a row per specialization."""
    from solforge.bench.crosscompile import exceeds_spill_threshold

    tables = []
    for kernel in dict.fromkeys(r.kernel for r in reports):
        mine = [r for r in reports if r.kernel == kernel]
        table = Table(title=escape(f"{kernel} [{mine[0].language}, {mine[0].target}]"), title_justify="left")
        for col in ("workloads", "regs", "spills st/ld B", "smem static+dyn B", "block", "max block",
                    "occupancy", "limited by", "ptxas warnings"):
            table.add_column(col, justify="left" if col in ("workloads", "limited by", "ptxas warnings") else "right")
        for r in mine:
            names = [labels.get(w, w) for w in r.workloads]
            shown = ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")
            spill = f"{r.spill_store_bytes}/{r.spill_load_bytes}"
            occ = r.occupancy
            block = str(r.threads_per_block) if r.threads_per_block else f"best {occ.threads_per_block}"
            table.add_row(
                escape(shown or "-"), str(r.registers_per_thread),
                f"[yellow]{spill}[/yellow]" if exceeds_spill_threshold(r) else spill,
                f"{r.static_shared_memory_bytes}+{r.dynamic_shared_memory_bytes}", block, str(r.max_threads_per_block),
                f"{occ.active_warps_per_sm}/{occ.max_warps_per_sm} warps ({occ.fraction:.0%}), {occ.blocks_per_sm} blocks",
                ", ".join(occ.limited_by), escape("; ".join(r.ptxas_warnings) or "-"),
            )  # fmt: skip
        tables.append(table)
    return tables


def compile_command(
    subject: Annotated[str, typer.Argument(help="A Solution JSON, a .py or .cu file, or a seed name (triton/rmsnorm_row).")],
    target: Annotated[Optional[list[str]], typer.Option(
        "--target", "-t", help="sm_80, sm_90a or sm_100a; repeatable (default: sm_90a).")] = None,
    workload: Annotated[Optional[list[str]], typer.Option(
        "--workload", "-w", help="all, search, held-out, smoke, a uuid or a label; repeatable (default: search).")] = None,
    definition: Annotated[Optional[str], typer.Option(help="The definition (needed for a .py or .cu file).")] = None,
    dataset: Annotated[Optional[Path], typer.Option(help="A FlashInfer-Trace dataset directory.")] = None,
    language: Annotated[str, typer.Option(help="Language of a .py file: triton or cuda.")] = "triton",
    out: Annotated[Optional[Path], typer.Option(help="Write the compile reports here, as JSON lines.")] = None,
) -> None:
    """Cross-compile every kernel for the target chip, without a GPU: registers, spills, shared memory, occupancy."""
    from solforge.bench.crosscompile import DEFAULT_TARGET, CrossCompileError, can_cross_compile, cross_compile
    from solforge.bench.crosscompile import spill_note, target_by_name

    targets = [target_by_name(t) for t in (target or [DEFAULT_TARGET])]
    every = []
    for solution, defn, workloads, root in resolve_subjects(subject, definition, dataset, language):
        if not can_cross_compile(solution):
            raise SpecError(f"{subject}: a {solution.spec.language.value} solution has no GPU kernel of its own to compile")
        selected = _select(workloads, workload or ["search"], f"definition '{defn.name}'")
        labels = {w.uuid: w.solforge.label or w.uuid for w in selected}
        for tgt in targets:
            console.print(f"[bold]{escape(solution.name)}[/bold] for {tgt.name} ({', '.join(tgt.devices)}): "
                          f"{len(selected)} workload(s) of {defn.name}")  # fmt: skip
            try:
                reports = cross_compile(solution, defn, selected, tgt, isolate=False, dataset_root=root)
            except CrossCompileError as exc:
                if exc.workload in labels:
                    exc.workload = f"{labels[exc.workload]} [{exc.workload}]"
                typer.echo(f"solforge compile: {solution.name}: {exc.one_line()}", err=True)
                raise typer.Exit(2 if exc.kind in _BAD_INPUT_KINDS else 1) from None
            for table in kernel_tables(reports, labels):
                console.print(table)
            note = spill_note(reports)
            if note:
                console.print(f"[yellow]{escape(note)}[/yellow]")
            every.extend(reports)
    console.print("ptxas' figures and the occupancy calculator's rules, compiled on this machine: not a GPU measurement")
    if out is not None:
        out.write_text("".join(r.model_dump_json() + "\n" for r in every))
        console.print(f"wrote {len(every)} compile reports to {out}")


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)
