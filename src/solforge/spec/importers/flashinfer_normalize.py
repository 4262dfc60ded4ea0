"""Normalizing FlashInfer-Trace and SOL-ExecBench JSON into solforge's reading of the schema.

The field-level differences of `flashinfer_trace`'s module docstring: op_type, dtype
spellings, literal sizes in shapes, a reference kept in `reference.py`, language names,
an older evaluation's `device`, and fields solforge has no place for (kept in the report
with their values by `unknown_fields`).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel

from solforge.spec.importers import Note
from solforge.spec.importers.sol_execbench import op_type_of
from solforge.spec.solution import Language

# Spellings other tools write, as solforge's DType names.
DTYPE_ALIASES = {
    "float8_e4m3": "float8_e4m3fn", "float4_e2m1fn_x2": "float4_e2m1", "fp64": "float64", "double": "float64",
    "fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
    "fp8_e4m3": "float8_e4m3fn", "fp8_e4m3fn": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2", "long": "int64",
}
# SOL-ExecBench's language names for what solforge builds under another name: CUDA C++
# bound through torch is solforge's `cuda` (load_inline).
LANGUAGE_ALIASES = {"cuda_cpp": "cuda"}
MAX_MATERIALIZED_BYTES = 256 * 2**20  # per workload; a larger custom workload is skipped, not written


from solforge.spec.importers.skipped import Unsupported  # noqa: E402  (shared by every importer)


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


class Item:
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


def normalize_definition(data: Any, reference_py: Path | None, item: Item) -> Any:
    """The definition JSON `data` with the differences of the module docstring normalized."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if not (isinstance(data.get("op_type"), str) and data["op_type"].strip()):
        found = op_type_of(data)
        data.pop("op_type", None)
        if found is not None:
            data["op_type"], where = found
            if where == "the field 'type'":
                data.pop("type", None)
            item.note(f"op_type: null or absent; '{data['op_type']}' from {where}")
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


def _literal_axis(axis: Any, axes: dict[str, Any], item: Item, where: str) -> Any:
    if not (isinstance(axis, str) and axis.isdigit()):
        return axis
    name = f"const_{int(axis)}"
    if name not in axes:
        axes[name] = {"type": "const", "value": int(axis)}
        item.note(f"{where}.shape: the literal size {axis} became the const axis '{name}'")
    return name


def normalize_solution(data: Any, item: Item) -> Any:
    """The solution JSON `data` normalized; raises Unsupported for a language or binding
    solforge cannot build."""
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        return data
    data = {**data, "spec": dict(data["spec"])}
    spec = data["spec"]
    known = [lang.value for lang in Language]
    if "language" not in spec and isinstance(spec.get("languages"), list):
        languages = spec.pop("languages")
        lowered = [str(lang).lower() for lang in languages]
        spec["language"] = next((lang for lang in lowered if lang in known), lowered[0] if lowered else None)
        item.note(f"spec.languages {languages} read as spec.language '{spec['language']}'")
    elif isinstance(spec.get("language"), str) and spec["language"].lower() != spec["language"]:
        item.note(f"spec.language '{spec['language']}' read as '{spec['language'].lower()}'")
        spec["language"] = spec["language"].lower()
    if spec.get("language") in LANGUAGE_ALIASES:
        alias = LANGUAGE_ALIASES[spec["language"]]
        item.note(f"spec.language '{spec['language']}' read as '{alias}' (CUDA C++ bound through torch)")
        spec["language"] = alias
    if spec.get("language") not in known:
        raise Unsupported(f"spec.language '{spec.get('language')}': solforge builds {', '.join(known)} solutions")
    if spec.get("binding") not in (None, "torch"):
        raise Unsupported(f"spec.binding '{spec['binding']}': solforge binds CUDA C++ through torch's load_inline only")
    if "destination_passing_style" not in spec:
        spec["destination_passing_style"] = True
        item.note("spec.destination_passing_style: absent; true, the default of FlashInfer-Bench and SOL-ExecBench")
    return data


def normalize_evaluation(data: Any, item: Item) -> Any:
    """A trace JSON with an older evaluation's environment.device read as hardware."""
    evaluation = data.get("evaluation") if isinstance(data, dict) else None
    env = evaluation.get("environment") if isinstance(evaluation, dict) else None
    if isinstance(env, dict) and "hardware" not in env and "device" in env:
        env = dict(env)
        env["hardware"] = env.pop("device")
        data = {**data, "evaluation": {**evaluation, "environment": env}}
        item.note("evaluation.environment.device read as evaluation.environment.hardware")
    return data
