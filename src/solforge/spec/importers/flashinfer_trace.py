"""FlashInfer-Trace and SOL-ExecBench dataset directories, normalized into solforge's schema.

Two layouts are read, in one directory or mixed:

- FlashInfer-Trace: `definitions/**/*.json`, `workloads/**/*.jsonl` (workload-only
  traces), `solutions/**/*.json`, `traces/**/*.jsonl`, `blob/**`.
- SOL-ExecBench: a directory per problem, anywhere under the root, holding
  `definition.json`, `workload.jsonl` (one bare workload per line), `reference.py` and
  `solution*.json`.

Both write the FlashInfer Trace schema, with differences solforge normalizes, each noted
in the report:

- `op_type` may be null or written as `type`: taken from `type`, else the folder the
  definition sits in (`definitions/<op_type>/`, or a problem's category folder), else the
  name's first word. Null `tags` and `constraints` become empty lists.
- dtype spellings: `float8_e4m3` is `float8_e4m3fn`, `float4_e2m1fn_x2` is
  `float4_e2m1` (the same packed torch dtype), and `fp16`, `bf16`, `fp32`, `half`,
  `float`, `torch.float16`-style names are read as what they name.
- a literal size in a shape (SOL-ExecBench allows `"1"`) becomes a const axis `const_1`.
- an empty `reference` is read from the problem's `reference.py`.
- a solution's `languages` list becomes `language`; an absent
  `destination_passing_style` is true, the default of both tools.
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
import types
import typing
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Union

from pydantic import BaseModel

from solforge.spec.dataset import Dataset
from solforge.spec.definition import Definition
from solforge.spec.errors import SpecError
from solforge.spec.importers import ImportReport, ImportResult, Imported, ItemKind, Note, Skipped, check_out_dir, write_import
from solforge.spec.io import check_definition, check_solution, check_workload, parse_model
from solforge.spec.solution import Language, Solution
from solforge.spec.trace import Trace
from solforge.spec.workload import Workload

# Spellings other tools write, as solforge's DType names.
DTYPE_ALIASES = {
    "float8_e4m3": "float8_e4m3fn", "float4_e2m1fn_x2": "float4_e2m1", "fp64": "float64", "double": "float64",
    "fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
    "fp8_e4m3": "float8_e4m3fn", "fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2", "long": "int64",
}
MAX_MATERIALIZED_BYTES = 256 * 2**20  # per workload; a larger custom workload is skipped, not written


class Unsupported(Exception):
    """An item that cannot be imported; the message is the one-line reason."""


# -- unknown fields -----------------------------------------------------------------------


def unknown_fields(model: type[BaseModel], data: Any, prefix: str = "") -> dict[str, Any]:
    """Fields of `data` that `model` (and the models nested in it) does not declare, by
    dotted path, with their values; null values are left out."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            if value is not None:
                out[f"{prefix}{key}"] = value
            continue
        for sub, sub_data, path in _nested(info.annotation, value, f"{prefix}{key}"):
            out.update(unknown_fields(sub, sub_data, f"{path}."))
    return out


def _nested(annotation: Any, value: Any, path: str):
    """(model, data, path) for each model `annotation` holds at `value`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        yield from _nested(args[0], value, path)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, value, path
    elif origin in (Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(value, dict) and models:
            tagged = [m for m in models if "type" in m.model_fields and m.model_fields["type"].default == value.get("type")]
            chosen = tagged or (models if len(models) == 1 else [])
            yield from ((m, value, path) for m in chosen[:1])
        else:
            for a in args:
                yield from _nested(a, value, path)
    elif origin is dict and isinstance(value, dict):
        for k, v in value.items():
            yield from _nested(args[1], v, f"{path}.{k}")
    elif origin is list and isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nested(args[0], v, f"{path}[{i}]")


# -- normalization ------------------------------------------------------------------------


class _Item:
    """One item being read: where it came from, and the notes made about it (kept only
    when the item is imported)."""

    def __init__(self, display: str):
        self.display = display
        self.notes: list[Note] = []

    def note(self, message: str, value: Any = None) -> None:
        self.notes.append(Note(self.display, message, value))

    def keep_unknown(self, model: type[BaseModel], data: Any) -> None:
        for path, value in unknown_fields(model, data).items():
            self.note(f"{path}: no solforge field; kept here", value)


def _dtype(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    name = value.removeprefix("torch.")
    return DTYPE_ALIASES.get(name, name)


def normalize_definition(data: Any, folder: str | None, reference_py: Path | None, item: _Item) -> Any:
    """The definition JSON `data` with the differences of the module docstring normalized."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if not data.get("op_type"):
        if isinstance(data.get("type"), str) and data["type"]:
            data["op_type"] = data.pop("type")
            item.note(f"op_type: taken from the field 'type' ('{data['op_type']}')")
        else:
            data.pop("op_type", None)
            data["op_type"] = folder or str(data.get("name", "unknown")).split("_")[0]
            item.note(f"op_type: null or absent; set to '{data['op_type']}' from the {'folder' if folder else 'name'}")
    for key in ("tags", "constraints"):
        if key in data and data[key] is None:
            data[key] = []
    if not data.get("reference") and reference_py is not None and reference_py.is_file():
        data["reference"] = reference_py.read_text()
        item.note(f"reference: empty; read from {reference_py.name}")
    axes = dict(data.get("axes") or {})
    for group in ("inputs", "outputs"):
        tensors = data.get(group)
        if not isinstance(tensors, dict):
            continue
        data[group] = {}
        for name, spec in tensors.items():
            if isinstance(spec, dict):
                spec = dict(spec)
                dtype = _dtype(spec.get("dtype"))
                if dtype != spec.get("dtype"):
                    item.note(f"{group}.{name}.dtype: '{spec['dtype']}' read as '{dtype}'")
                    spec["dtype"] = dtype
                if isinstance(spec.get("shape"), list):
                    spec["shape"] = [_literal_axis(a, axes, item, f"{group}.{name}") for a in spec["shape"]]
            data[group][name] = spec
    if axes:
        data["axes"] = axes
    return data


def _literal_axis(axis: Any, axes: dict[str, Any], item: _Item, where: str) -> Any:
    if not (isinstance(axis, str) and axis.isdigit()):
        return axis
    name = f"const_{int(axis)}"
    if name not in axes:
        axes[name] = {"type": "const", "value": int(axis)}
        item.note(f"{where}.shape: the literal size {axis} became the const axis '{name}'")
    return name


def normalize_solution(data: Any, item: _Item) -> Any:
    """The solution JSON `data` normalized; raises Unsupported for a language or binding
    solforge cannot build."""
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        return data
    data = {**data, "spec": dict(data["spec"])}
    spec = data["spec"]
    known = [lang.value for lang in Language]
    if "language" not in spec and isinstance(spec.get("languages"), list):
        languages = spec.pop("languages")
        spec["language"] = next((lang for lang in languages if lang in known), languages[0] if languages else None)
        item.note(f"spec.languages {languages} read as spec.language '{spec['language']}'")
    if spec.get("language") not in known:
        raise Unsupported(f"spec.language '{spec.get('language')}': solforge builds {', '.join(known)} solutions")
    if spec.get("binding") not in (None, "torch"):
        raise Unsupported(f"spec.binding '{spec['binding']}': solforge binds CUDA C++ through torch's load_inline only")
    if "destination_passing_style" not in spec:
        spec["destination_passing_style"] = True
        item.note("spec.destination_passing_style: absent; true, the default of FlashInfer-Bench and SOL-ExecBench")
    return data


def normalize_evaluation(data: Any, item: _Item) -> Any:
    """A trace JSON with an older evaluation's environment.device read as hardware."""
    evaluation = data.get("evaluation") if isinstance(data, dict) else None
    env = evaluation.get("environment") if isinstance(evaluation, dict) else None
    if isinstance(env, dict) and "hardware" not in env and "device" in env:
        env = dict(env)
        env["hardware"] = env.pop("device")
        data = {**data, "evaluation": {**evaluation, "environment": env}}
        item.note("evaluation.environment.device read as evaluation.environment.hardware")
    return data


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
        self.generators: dict[str, Any] = {}  # definition name -> its custom entry point, executed

    def skip(self, display: str, reason: str) -> None:
        self.report.skipped.append(Skipped(display, reason))

    def commit(self, item: _Item, kind: ItemKind, name: str) -> None:
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
    def definition(self, path: Path, folder: str | None, reference_py: Path | None) -> str | None:
        item = _Item(str(path))
        raw = None
        try:
            raw = self.read(path)
            data = normalize_definition(raw, folder, reference_py, item)
            defn = self.parse(Definition, data)
            problems = check_definition(defn)
            if problems:
                raise Unsupported(problems[0])
            if defn.name in self.ds.definitions:
                raise Unsupported(f"name: definition '{defn.name}' is already defined by {self.origin[defn.name]}")
        except Unsupported as exc:
            name = raw.get("name") if isinstance(raw, dict) else None
            if isinstance(name, str):
                self.skipped_definitions.setdefault(name, str(path))
            self.skip(str(path), str(exc))
            return None
        item.keep_unknown(Definition, data)
        if data.get("custom_inputs_entrypoint"):
            self.entrypoints[defn.name] = data["custom_inputs_entrypoint"]
        self.ds.definitions[defn.name] = defn
        self.origin[defn.name] = str(path)
        self.commit(item, ItemKind.definition, defn.name)
        return defn.name

    def workload_line(self, display: str, data: Any, file_definition: str | None, bare_note: str | None) -> None:
        item = _Item(display)
        if isinstance(data, dict) and data.get("evaluation") is not None:
            return self.trace_line(display, data)
        wrapped = isinstance(data, dict) and "workload" in data
        name = data.get("definition") if wrapped else file_definition
        try:
            if not wrapped and bare_note:
                item.note(bare_note)
            defn = self.ds.definitions.get(name)
            if defn is None:
                raise Unsupported(self.missing(name))
            wl = self.workload(defn, data["workload"] if wrapped else data, item, allow_custom=True)
        except Unsupported as exc:
            return self.skip(display, str(exc))
        item.keep_unknown(Trace if wrapped else Workload, data)
        self.ds.workloads.setdefault(defn.name, []).append(wl)
        self.commit(item, ItemKind.workload, wl.uuid)

    def workload(self, defn: Definition, data: Any, item: _Item, allow_custom: bool) -> Workload:
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

    def blob_path(self, raw: Any, item: _Item, field: str) -> str:
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
            raise Unsupported(f"{field}: no such file {src}")
        self.blobs[dest] = src
        if norm.is_absolute() or norm.parts[0] != "blob":
            item.note(f"{field}: '{raw}' is outside blob/; copied to '{dest}'")
            return dest
        return raw

    def materialize(self, defn: Definition, data: dict[str, Any], item: _Item) -> dict[str, Any]:
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

    def solution(self, path: Path) -> None:
        item = _Item(str(path))
        try:
            data = normalize_solution(self.read(path), item)
            sol = self.parse(Solution, data)
            defn = self.ds.definitions.get(sol.definition)
            if defn is None:
                raise Unsupported(self.missing(sol.definition))
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
        item = _Item(display)
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


def read_flashinfer_trace(root: str | Path, materialize_custom: bool = False) -> ImportResult:
    """A FlashInfer-Trace or SOL-ExecBench dataset directory (module docstring) as a
    Dataset, a report and the blobs to copy; nothing is written (see
    `import_flashinfer_trace`).

    With `materialize_custom`, workloads with `custom` inputs are made once by the
    definition's entry point (user code, executed) and stored as safetensors. Raises
    SpecError when `root` is not a directory of either layout.
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

    # Definitions first: workloads, solutions and traces name them.
    for path in sorted(defs_dir.rglob("*.json")):
        reader.definition(path, path.parent.name if path.parent != defs_dir else None, None)
    problem_definition: dict[Path, str | None] = {}
    for d in problem_dirs:
        name = reader.definition(d / "definition.json", d.parent.name if d.parent != root else None, d / "reference.py")
        raw_name = next((n for n, f in reader.skipped_definitions.items() if f == str(d / "definition.json")), None)
        problem_definition[d] = name or raw_name

    for path in sorted((root / "workloads").rglob("*.jsonl")):
        for display, data in reader.lines(path):
            reader.workload_line(display, data, path.stem, "a bare workload line; its definition named by the file")
    for d in problem_dirs:
        for path in (d / "workload.jsonl", d / "workloads.jsonl"):
            for display, data in reader.lines(path) if path.is_file() else ():
                reader.workload_line(display, data, problem_definition[d], None)
        for extra in sorted(p for p in d.iterdir() if p.is_file()):
            if extra.name not in _PROBLEM_FILES and not (extra.name.startswith("solution") and extra.suffix == ".json"):
                reader.report.notes.append(Note(str(extra), "not a file of the schema; not imported"))

    solution_files = sorted((root / "solutions").rglob("*.json"))
    solution_files += [p for d in problem_dirs for p in sorted(d.glob("solution*.json"))]
    for path in solution_files:
        reader.solution(path)
    for path in sorted((root / "traces").rglob("*.jsonl")):
        for display, data in reader.lines(path):
            reader.trace_line(display, data)
    for path in sorted((root / "blob").rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            reader.blobs[rel] = path
            reader.report.imported.append(Imported(str(path), ItemKind.blob, rel))
    return ImportResult(dataset=reader.ds, report=reader.report, blobs=reader.blobs, tensors=reader.tensors)


def import_flashinfer_trace(root: str | Path, out: str | Path, materialize_custom: bool = False) -> ImportReport:
    """`read_flashinfer_trace(root)` written as a dataset under `out`, with its blobs and
    `import-report.json` (see `write_import`). Raises SpecError when `root` is not a
    dataset directory or `out` is not a new or empty directory."""
    check_out_dir(out)
    return write_import(read_flashinfer_trace(root, materialize_custom), out)


__all__ = ["DTYPE_ALIASES", "import_flashinfer_trace", "read_flashinfer_trace", "unknown_fields"]
