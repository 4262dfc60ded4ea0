"""FlashInfer-Trace and SOL-ExecBench dataset directories, normalized into solforge's schema.

Two layouts are read, in one directory or mixed:

- FlashInfer-Trace: `definitions/**/*.json`, `workloads/**/*.jsonl` (workload-only
  traces), `solutions/**/*.json`, `traces/**/*.jsonl`, `blob/**`. The older layout's
  `traces/workloads/*.workload.jsonl`, whose lines carry `"evaluation": {}`, holds
  workloads, and its safetensors paths may be relative to `blob/workloads/`.
- SOL-ExecBench: a directory per problem, anywhere under the root (often under a
  language folder, `examples/triton/rmsnorm/`), holding `definition.json`,
  `workload.jsonl` (one bare workload per line), `reference.py` and `solution*.json`.
  The same definition in several folders is imported once: the copies are ignored and
  their workloads merged, each UUID once.

Every file under the root is imported, skipped with a reason, or ignored with a reason
(a duplicate, a solution's own source file beside its JSON, a file of neither layout, a
`solution.json` whose definition is not in the dataset is skipped), all in the report.

Both write the FlashInfer Trace schema, with differences solforge normalizes
(`flashinfer_normalize`), each noted in the report:

- `op_type` may be null or written as `type`: see `sol_execbench.op_type_of` (the
  definition's own field, else a tag, else a word of its name; never a folder or the
  name's vendor prefix). Null `tags` and `constraints` become empty lists.
- dtype spellings: `float8_e4m3` is `float8_e4m3fn`, `float4_e2m1fn_x2` is
  `float4_e2m1` (the same packed torch dtype), and `fp16`, `bf16`, `fp32`, `half`,
  `float`, `torch.float16`-style names are read as what they name.
- a literal size in a shape (SOL-ExecBench allows `"1"`) becomes a const axis `const_1`.
- an empty `reference` is read from the problem's `reference.py`.
- a solution's `languages` list becomes `language`, matched case-insensitively
  (`Python`), `cuda_cpp` read as `cuda`; an absent `destination_passing_style` is true, the default of both tools.
- an entry point whose parameters are not the definition's names is bound by position,
  as SOL-ExecBench calls it (`sol_execbench.bind_positionally`), the mapping in the report.
- an evaluation's `environment.device` (older FlashInfer-Trace) becomes `hardware`.
- a safetensors file outside `blob/` is copied under `blob/` and its path rewritten;
  every file under `blob/` is copied, its path kept as written.
- `custom` inputs (made by the definition's `custom_inputs_entrypoint`) have no solforge
  equivalent: such workloads are skipped, or with `materialize_custom` made once, on the
  CPU with seed 0, by the entry point (executed from the reference, user code, in a fresh
  namespace) and stored as safetensors blobs.

A field solforge has no place for (`custom_inputs_entrypoint`, `spec.binding`,
`spec.pip_packages`, an evaluation's `log_file`, ...) is kept in the report with its
value; a null one carries nothing and is left out. Skipped, with the reason: anything that
fails the schema or its checks; solutions in a language solforge cannot build (cpp,
cute_dsl, cutile, ...) or bound other than through torch; workloads, solutions and traces
of a definition that was skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from solforge.spec.dataset import Dataset
from solforge.spec.definition import Definition
from solforge.spec.errors import SpecError
from solforge.spec.importers import (
    Ignored,
    ImportReport,
    ImportResult,
    Imported,
    ItemKind,
    Skipped,
    check_out_dir,
    write_import,
)
from solforge.spec.importers.flashinfer_normalize import (
    DTYPE_ALIASES,
    MAX_MATERIALIZED_BYTES,
    Item,
    Unsupported,
    normalize_definition,
    normalize_evaluation,
    normalize_solution,
    unknown_fields,
)
from solforge.spec.importers.sol_execbench import Refused, bind_positionally
from solforge.spec.io import check_definition, check_solution, check_workload, parse_model
from solforge.spec.solution import Solution
from solforge.spec.trace import Trace
from solforge.spec.workload import Workload

# -- the reader -----------------------------------------------------------------------------


class _Reader:
    """Reads one dataset directory into a Dataset, a report, and the blobs to copy."""

    def __init__(self, root: Path, materialize_custom: bool):
        self.root, self.materialize_custom = root, materialize_custom
        self.report = ImportReport(importer="flashinfer-trace", sources=[str(root)])
        self.ds = Dataset()
        self.blobs: dict[str, Path] = {}
        self.tensors: dict[str, dict[str, Any]] = {}
        self.origin: dict[str, str] = {}  # definition name -> the file it came from
        self.skipped_definitions: dict[str, str] = {}  # name -> the file that was skipped
        self.entrypoints: dict[str, str] = {}  # definition name -> custom_inputs_entrypoint
        self.workload_origin: dict[tuple[str, str], tuple[str, Workload]] = {}  # (definition, uuid) -> where, what
        self.references_read: set[Path] = set()  # reference.py files an empty `reference` was read from
        self.generators: dict[str, Any] = {}  # definition name -> its custom entry point, executed

    def skip(self, display: str, reason: str) -> None:
        self.report.skipped.append(Skipped(display, reason))

    def commit(self, item: Item, kind: ItemKind, name: str) -> None:
        self.report.imported.append(Imported(item.display, kind, name))
        self.report.notes.extend(item.notes)

    def missing(self, name: Any) -> str:
        if name in self.skipped_definitions:
            return f"definition '{name}' was not imported (see {self.skipped_definitions[name]})"
        return f"definition: unknown definition '{name}'"

    # -- files ------------------------------------------------------------------------
    def read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise Unsupported(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None

    def lines(self, path: Path):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            display = f"{path}:{i}"
            try:
                yield display, json.loads(line)
            except json.JSONDecodeError as exc:
                self.skip(display, f"malformed JSON at column {exc.colno}: {exc.msg}")

    def parse(self, model: type[BaseModel], data: Any) -> Any:
        try:
            return parse_model(model, data, "")
        except SpecError as exc:
            raise Unsupported(str(exc)) from None

    # -- items --------------------------------------------------------------------------
    def definition(self, path: Path, reference_py: Path | None) -> tuple[str | None, str | None]:
        """Read one definition file: (its name, None) when it is imported or is the same as
        one already imported (then ignored); (its name if any, why its workloads and
        solutions cannot attach) when it is skipped."""
        item = Item(str(path))
        raw = None
        try:
            raw = self.read(path)
            if reference_py is not None and reference_py.is_file() and isinstance(raw, dict) and not raw.get("reference"):
                self.references_read.add(reference_py)
            data = normalize_definition(raw, reference_py, item)
            defn = self.parse(Definition, data)
            problems = check_definition(defn)
            if problems:
                raise Unsupported(problems[0])
            if defn.name in self.ds.definitions:
                if defn == self.ds.definitions[defn.name]:
                    self.report.ignored.append(Ignored(
                        str(path), f"the same definition '{defn.name}' as {self.origin[defn.name]}: imported once, "
                        "with the workloads and solutions of both"))
                    return defn.name, None
                raise Unsupported(f"name: definition '{defn.name}' is already defined, differently, by "
                                  f"{self.origin[defn.name]}")
        except Unsupported as exc:
            name = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else None
            if name is not None:
                self.skipped_definitions.setdefault(name, str(path))
            self.skip(str(path), str(exc))
            return name, f"definition '{name}' in {path} was not imported (see its own entry)"
        item.keep_unknown(Definition, data)
        if data.get("custom_inputs_entrypoint"):
            self.entrypoints[defn.name] = data["custom_inputs_entrypoint"]
        self.ds.definitions[defn.name] = defn
        self.origin[defn.name] = str(path)
        self.commit(item, ItemKind.definition, defn.name)
        return defn.name, None

    def workload_line(self, display: str, data: Any, file_definition: str | None, bare_note: str | None,
                      blocked: str | None = None) -> None:
        item = Item(display)
        if isinstance(data, dict) and data.get("evaluation"):
            return self.trace_line(display, data)
        if blocked is not None:
            return self.skip(display, blocked)
        wrapped = isinstance(data, dict) and "workload" in data
        name = data.get("definition") if wrapped else file_definition
        try:
            if not wrapped and bare_note:
                item.note(bare_note)
            if wrapped and "evaluation" in data:
                item.note("a trace line with an empty evaluation (the older traces/workloads layout): read as a workload")
            defn = self.ds.definitions.get(name)
            if defn is None:
                raise Unsupported(self.missing(name))
            wl = self.workload(defn, data["workload"] if wrapped else data, item, allow_custom=True)
        except Unsupported as exc:
            return self.skip(display, str(exc))
        first = self.workload_origin.get((defn.name, wl.uuid))
        if first is not None:
            if first[1] == wl:
                self.report.ignored.append(Ignored(display, f"workload '{wl.uuid}' of '{defn.name}' again "
                                                            f"(first at {first[0]}): imported once"))
            else:
                self.skip(display, f"uuid: '{wl.uuid}' is already another workload of '{defn.name}' ({first[0]})")
            return
        self.workload_origin[(defn.name, wl.uuid)] = (display, wl)
        item.keep_unknown(Trace if wrapped else Workload, data)
        self.ds.workloads.setdefault(defn.name, []).append(wl)
        self.commit(item, ItemKind.workload, wl.uuid)

    def workload(self, defn: Definition, data: Any, item: Item, allow_custom: bool) -> Workload:
        """The workload `data` of `defn`, its inputs normalized (module docstring)."""
        if not isinstance(data, dict):
            raise Unsupported(f"workload: expected an object, got {type(data).__name__}")
        data = dict(data)
        if not data.get("uuid"):
            digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
            data["uuid"] = f"{defn.name}-{digest}"
            item.note(f"workload.uuid: absent; set to '{data['uuid']}' from a hash of the workload")
        inputs = data.get("inputs") or {}
        if any(isinstance(s, dict) and s.get("type") == "custom" for s in inputs.values()):
            if not allow_custom:
                raise Unsupported("workload.inputs: 'custom' inputs in an evaluated trace cannot be made again")
            data["inputs"] = self.materialize(defn, data, item)
        elif isinstance(inputs, dict):
            data["inputs"] = {
                n: {**s, "path": self.blob_path(s.get("path"), item, f"workload.inputs.{n}.path")}
                if isinstance(s, dict) and s.get("type") == "safetensors" else s
                for n, s in inputs.items()
            }
        wl = self.parse(Workload, data)
        problems = check_workload(defn, wl)
        if problems:
            raise Unsupported(problems[0])
        return wl

    def blob_path(self, raw: Any, item: Item, field: str) -> str:
        """The path to write for the safetensors file `raw`: as written when it lies under
        blob/, else a new path under blob/ (noted). The file is registered to be copied."""
        if not isinstance(raw, str) or not raw:
            raise Unsupported(f"{field}: expected a path, got {raw!r}")
        norm = PurePosixPath(os.path.normpath(raw))
        if norm.is_absolute():
            src, dest = Path(raw), f"blob/external/{norm.name}"
        elif norm.parts[0] == "..":
            raise Unsupported(f"{field}: '{raw}' leaves the dataset directory")
        else:
            src, dest = self.root / norm, norm.as_posix() if norm.parts[0] == "blob" else f"blob/{norm.as_posix()}"
            if not src.is_file():
                # the older layout wrote paths relative to blob/workloads/
                for base in ("blob/workloads", "blob"):
                    if (self.root / base / norm).is_file():
                        dest = (PurePosixPath(base) / norm).as_posix()
                        self.blobs[dest] = self.root / dest
                        item.note(f"{field}: '{raw}' is relative to {base}/ (the older layout); read as '{dest}'")
                        return dest
        if not src.is_file():
            raise Unsupported(f"{field}: no such file {src}")
        self.blobs[dest] = src
        if norm.is_absolute() or norm.parts[0] != "blob":
            item.note(f"{field}: '{raw}' is outside blob/; copied to '{dest}'")
            return dest
        return raw

    def materialize(self, defn: Definition, data: dict[str, Any], item: Item) -> dict[str, Any]:
        """Inputs made once by the definition's custom entry point, as safetensors blobs
        (module docstring). Raises Unsupported when not asked for, or when it fails."""
        import torch

        entry = self.entrypoints.get(defn.name)
        if entry is None:
            raise Unsupported("workload.inputs: 'custom' inputs, but the definition names no custom_inputs_entrypoint")
        if not self.materialize_custom:
            raise Unsupported(
                f"workload.inputs: 'custom' inputs are made by the definition's {entry}(), which solforge "
                "workloads cannot call; import with --materialize-custom to store them as safetensors blobs"
            )
        try:
            axes = defn.resolve_axes(data.get("axes") or {})
        except SpecError as exc:
            raise Unsupported(str(exc)) from None
        given = data.get("inputs") or {}
        scalars = {n: s["value"] for n, s in given.items() if isinstance(s, dict) and s.get("type") == "scalar"}
        size_bytes = sum(
            math.prod(defn.shape_of(spec, axes)) * spec.dtype.itemsize_bits // 8
            for spec in defn.inputs.values() if spec.shape is not None
        )
        if size_bytes > MAX_MATERIALIZED_BYTES:
            raise Unsupported(
                f"workload.inputs: 'custom' inputs of {size_bytes / 2**20:.0f} MiB exceed the "
                f"{MAX_MATERIALIZED_BYTES // 2**20} MiB stored per workload"
            )
        try:
            if defn.name not in self.generators:
                namespace: dict[str, Any] = {"__name__": f"solforge_reference_{defn.name}"}
                exec(compile(defn.reference, f"<reference {defn.name}>", "exec"), namespace)
                self.generators[defn.name] = namespace[entry]
            with torch.random.fork_rng(devices=[]):  # seed 0 without touching the caller's generator
                torch.manual_seed(0)
                values = self.generators[defn.name]({**axes, **scalars}, torch.device("cpu"))
        except Exception as exc:
            message = (str(exc).strip().splitlines() or [""])[0]
            raise Unsupported(f"{entry}() raised {type(exc).__name__}: {message}") from None
        stem = re.sub(r"[^\w.-]", "_", str(data["uuid"]))
        rel = f"blob/workloads/{defn.op_type}/{defn.name}/{stem}.safetensors"
        inputs: dict[str, Any] = {}
        tensors: dict[str, Any] = {}
        for name, spec in defn.inputs.items():
            if name in scalars:
                inputs[name] = {"type": "scalar", "value": scalars[name]}
                continue
            if not isinstance(values, dict) or name not in values:
                raise Unsupported(f"{entry}() returned no input '{name}'")
            value = values[name]
            if spec.shape is None:
                inputs[name] = {"type": "scalar", "value": value.item() if isinstance(value, torch.Tensor) else value}
                continue
            expected = (defn.shape_of(spec, axes), spec.dtype.to_torch())
            if not isinstance(value, torch.Tensor) or (tuple(value.shape), value.dtype) != expected:
                got = (tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__
                raise Unsupported(f"{entry}() made input '{name}' as {got}, the definition expects {expected}")
            tensors[name] = value.detach().to("cpu").contiguous().clone()
            inputs[name] = {"type": "safetensors", "path": rel, "tensor_key": name}
        if tensors:
            self.tensors[rel] = tensors
        item.note(f"workload.inputs: 'custom' inputs made once by {entry}() on the CPU with seed 0 and stored in {rel}")
        return inputs

    def solution(self, path: Path, blocked: str | None = None) -> None:
        item = Item(str(path))
        if blocked is not None:
            return self.skip(str(path), blocked)
        try:
            data = normalize_solution(self.read(path), item)
            sol = self.parse(Solution, data)
            defn = self.ds.definitions.get(sol.definition)
            if defn is None:
                raise Unsupported(self.missing(sol.definition))
            try:
                bound = bind_positionally(defn, sol)
            except Refused as exc:
                raise Unsupported(str(exc)) from None
            if bound is not None:
                sol, note = bound
                item.note(note)
            problems = check_solution(defn, sol)
            if problems:
                raise Unsupported(problems[0])
            if any(s.name == sol.name for s in self.ds.solutions.get(defn.name, [])):
                raise Unsupported(f"name: solution '{sol.name}' of '{defn.name}' is already imported")
        except Unsupported as exc:
            return self.skip(str(path), str(exc))
        item.keep_unknown(Solution, data)
        self.ds.solutions.setdefault(defn.name, []).append(sol)
        self.commit(item, ItemKind.solution, sol.name)

    def trace_line(self, display: str, data: Any) -> None:
        if isinstance(data, dict) and "workload" in data and not data.get("evaluation"):
            return self.workload_line(display, data, None, None)  # `"evaluation": {}`: a workload
        item = Item(display)
        try:
            data = normalize_evaluation(data, item)
            name = data.get("definition") if isinstance(data, dict) else None
            defn = self.ds.definitions.get(name)
            if defn is None:
                raise Unsupported(self.missing(name))
            wl = self.workload(defn, data.get("workload"), item, allow_custom=False)
            trace = self.parse(Trace, {**data, "workload": wl.model_dump(mode="json", exclude_unset=True)})
        except Unsupported as exc:
            return self.skip(display, str(exc))
        item.keep_unknown(Trace, data)
        self.ds.traces.append(trace)
        self.commit(item, ItemKind.trace, f"{trace.solution or 'workload'}@{wl.uuid}")


# -- the importer ---------------------------------------------------------------------------

_PROBLEM_FILES = ("definition.json", "workload.jsonl", "workloads.jsonl", "reference.py")


def _source_paths(path: Path) -> set[str]:
    """The source paths a solution JSON carries (empty when it does not parse)."""
    try:
        data = json.loads(path.read_text())
        return {s.get("path") for s in data.get("sources", []) if isinstance(s, dict)}
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return set()


def read_flashinfer_trace(root: str | Path, materialize_custom: bool = False) -> ImportResult:
    """A FlashInfer-Trace or SOL-ExecBench dataset directory (module docstring) as a
    Dataset, a report and the blobs to copy; nothing is written (see
    `import_flashinfer_trace`).

    With `materialize_custom`, workloads with `custom` inputs are made once by the
    definition's entry point (user code, executed) and stored as safetensors. Every file
    under `root` ends up imported, skipped or ignored in the report. Raises SpecError when
    `root` is not a directory of either layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise SpecError(f"{root}: not a directory")
    reader = _Reader(root, materialize_custom)
    defs_dir = root / "definitions"
    problem_dirs = sorted({p.parent for p in root.rglob("definition.json") if defs_dir not in p.parents})
    if not defs_dir.is_dir() and not problem_dirs:
        raise SpecError(
            f"{root}: no definitions/ directory and no definition.json: not a FlashInfer-Trace or SOL-ExecBench dataset"
        )
    read: set[Path] = set()

    # Definitions first: workloads, solutions and traces name them.
    for path in sorted(defs_dir.rglob("*.json")):
        read.add(path)
        reader.definition(path, None)
    problems: dict[Path, tuple[str | None, str | None]] = {}  # dir -> (definition name, why nothing attaches)
    for d in problem_dirs:
        read.add(d / "definition.json")
        problems[d] = reader.definition(d / "definition.json", d / "reference.py")
    read |= reader.references_read  # noted with their definitions

    for path in sorted((root / "workloads").rglob("*.jsonl")):
        read.add(path)
        for display, data in reader.lines(path):
            reader.workload_line(display, data, path.stem, "a bare workload line; its definition named by the file")
    for d in problem_dirs:
        name, blocked = problems[d]
        for path in (d / "workload.jsonl", d / "workloads.jsonl"):
            read.add(path)
            for display, data in reader.lines(path) if path.is_file() else ():
                reader.workload_line(display, data, name, None, blocked)

    solution_files = sorted((root / "solutions").rglob("*.json"))
    solution_files += [p for d in problem_dirs for p in sorted(d.glob("solution*.json"))]
    # solution files anywhere else (SOL-ExecBench's reward-hack samples, evil_*/solution.json)
    solution_files += sorted(p for p in root.rglob("solution*.json") if p not in solution_files and p.is_file())
    for path in solution_files:
        read.add(path)
        reader.solution(path, problems.get(path.parent, (None, None))[1])
    for path in sorted((root / "traces").rglob("*.jsonl")):
        read.add(path)
        for display, data in reader.lines(path):
            reader.trace_line(display, data)
    for path in sorted((root / "blob").rglob("*")):
        if path.is_file():
            read.add(path)
            rel = path.relative_to(root).as_posix()
            reader.blobs[rel] = path
            reader.report.imported.append(Imported(str(path), ItemKind.blob, rel))

    for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in read):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # .git and other hidden trees are no part of a dataset
        owners = [s.name for s in sorted(path.parent.glob("solution*.json")) if path.name in _source_paths(s)]
        if owners:
            reason = f"a source file of {', '.join(owners)}, whose JSON carries it"
        elif path.parent in problems and path.name == "reference.py":
            reason = "a copy of the reference that definition.json carries"
        elif path.parent in problems and path.suffix == ".jsonl":
            reason = "not a file SOL-ExecBench reads (workload.jsonl holds a problem's workloads)"
        else:
            reason = "not a file of the FlashInfer-Trace or SOL-ExecBench layout"
        reader.report.ignored.append(Ignored(str(path), reason))
    return ImportResult(dataset=reader.ds, report=reader.report, blobs=reader.blobs, tensors=reader.tensors)


def import_flashinfer_trace(root: str | Path, out: str | Path, materialize_custom: bool = False) -> ImportReport:
    """`read_flashinfer_trace(root)` written as a dataset under `out`, with its blobs and
    `import-report.json` (see `write_import`). Raises SpecError when `root` is not a
    dataset directory or `out` is not a new or empty directory."""
    check_out_dir(out)
    return write_import(read_flashinfer_trace(root, materialize_custom), out)


__all__ = ["DTYPE_ALIASES", "import_flashinfer_trace", "read_flashinfer_trace", "unknown_fields"]
