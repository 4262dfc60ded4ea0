"""A dataset directory as FlashInfer-Bench lays it out.

    definitions/**/*.json                  one Definition per file
    solutions/**/*.json                    one Solution per file
    workloads/<op_type>/<definition>.jsonl one workload-only Trace per line
    traces/**/*.jsonl                      evaluated Traces
    blob/                                  safetensors files that workloads point to
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from solforge.spec.definition import Definition
from solforge.spec.errors import SpecError
from solforge.spec.io import (
    check_definition,
    check_solution,
    check_workload,
    dump_json,
    load_definition,
    load_solution,
    load_workloads,
    parse_model,
    read_json,
    read_jsonl,
    workload_trace,
    write_jsonl,
)
from solforge.spec.solution import Solution
from solforge.spec.trace import Trace
from solforge.spec.workload import Workload


@dataclass
class Dataset:
    """Definitions, their workloads, solutions and traces, keyed by definition name."""

    root: Path | None = None
    definitions: dict[str, Definition] = field(default_factory=dict)
    workloads: dict[str, list[Workload]] = field(default_factory=dict)
    solutions: dict[str, list[Solution]] = field(default_factory=dict)
    traces: list[Trace] = field(default_factory=list)

    def definition(self, name: str) -> Definition:
        if name not in self.definitions:
            where = f"{self.root}: " if self.root else ""
            raise SpecError(f"{where}no definition named '{name}' (have: {', '.join(sorted(self.definitions)) or 'none'})")
        return self.definitions[name]


def load_dataset(root: str | Path) -> Dataset:
    """Load a whole dataset directory. Raises SpecError at the first bad file."""
    root = Path(root)
    if not root.is_dir():
        raise SpecError(f"{root}: not a dataset directory")
    ds = Dataset(root=root)
    for path in sorted((root / "definitions").rglob("*.json")):
        defn = load_definition(path)
        if defn.name in ds.definitions:
            raise SpecError(f"{path}: name: definition '{defn.name}' is defined twice")
        ds.definitions[defn.name] = defn
    for path in sorted((root / "workloads").rglob("*.jsonl")):
        for i, t in enumerate(read_jsonl(path, Trace), 1):
            defn = ds.definitions.get(t.definition)
            if defn is None:
                raise SpecError(f"{path}:{i}: definition: unknown definition '{t.definition}'")
            problems = check_workload(defn, t.workload)
            if problems:
                raise SpecError(f"{path}:{i}: {problems[0]}")
            ds.workloads.setdefault(t.definition, []).append(t.workload)
    for path in sorted((root / "solutions").rglob("*.json")):
        sol = parse_model(Solution, read_json(path), str(path))
        defn = ds.definitions.get(sol.definition)
        if defn is None:
            raise SpecError(f"{path}: definition: unknown definition '{sol.definition}'")
        problems = check_solution(defn, sol)
        if problems:
            raise SpecError(f"{path}: {problems[0]}")
        ds.solutions.setdefault(sol.definition, []).append(sol)
    for path in sorted((root / "traces").rglob("*.jsonl")):
        ds.traces.extend(read_jsonl(path, Trace))
    return ds


def write_dataset(ds: Dataset, root: str | Path) -> Path:
    """Write `ds` under `root` in the FlashInfer-Bench layout; returns `root`."""
    root = Path(root)
    for name, defn in ds.definitions.items():
        p = root / "definitions" / defn.op_type / f"{name}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dump_json(defn) + "\n")
    for name, wls in ds.workloads.items():
        op_type = ds.definitions[name].op_type
        write_jsonl(root / "workloads" / op_type / f"{name}.jsonl", [workload_trace(name, w) for w in wls])
    for name, sols in ds.solutions.items():
        for sol in sols:
            p = root / "solutions" / ds.definitions[name].op_type / f"{sol.name}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(dump_json(sol) + "\n")
    by_def: dict[str, list[Trace]] = {}
    for t in ds.traces:
        by_def.setdefault(t.definition, []).append(t)
    for name, traces in by_def.items():
        write_jsonl(root / "traces" / f"{name}.jsonl", traces)
    return root


__all__ = ["Dataset", "load_dataset", "write_dataset", "load_definition", "load_solution", "load_workloads"]
