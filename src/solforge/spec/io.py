"""Reading and writing FlashInfer Trace JSON, with errors that name the file and the field.

Every loader turns a pydantic error or a semantic problem (an unknown axis, a reference
without `run`, an entry point whose signature does not match) into a `SpecError` of one
line, `FILE: FIELD: what was expected`. `check_*` functions return every problem found,
for `solforge problems validate`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from solforge.spec.definition import AxisExpr, Definition, DType, eval_axis_expr
from solforge.spec.errors import SpecError, located
from solforge.spec.solution import Solution
from solforge.spec.trace import Trace
from solforge.spec.workload import ScalarInput, Workload

M = TypeVar("M", bound=BaseModel)

_UNION_TAGS = {"const", "var", "expr", "random", "scalar", "safetensors"}


def _field_path(loc: tuple) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS and i >= 2 and loc[i - 2] in ("axes", "inputs"):
            continue  # pydantic's tag of a discriminated union member, not a user field
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_message(err: dict) -> str:
    if err["type"] == "enum" and err["loc"] and err["loc"][-1] == "dtype":
        allowed = ", ".join(d.value for d in DType)
        return f"unknown dtype '{err['input']}' (expected one of: {allowed})"
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "union_tag_invalid":
        return f"unknown type '{err['input'].get('type') if isinstance(err['input'], dict) else err['input']}' ({err['ctx']['expected_tags']} expected)"
    return err["msg"]


def parse_model(model: type[M], data: object, source: str) -> M:
    """Validate `data` as `model`; raise SpecError naming `source` and the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecError(located(source, _field_path(err["loc"]), _pydantic_message(err))) from None


def read_json(path: Path) -> object:
    """Parse a JSON file; raise SpecError naming the file, line and column when it is malformed."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def dump_json(model: BaseModel, indent: int | None = 2) -> str:
    """FlashInfer Trace JSON for `model`: the fields that were given or set, nothing invented."""
    return model.model_dump_json(exclude_unset=True, indent=indent)


def to_dict(model: BaseModel) -> dict:
    return model.model_dump(mode="json", exclude_unset=True)


# -- semantic checks --------------------------------------------------------------------


def _run_signature(source: str, fn_name: str) -> tuple[list[str], bool] | None:
    """Parameter names of top-level `fn_name` in `source`, and whether it takes **kwargs.
    None when there is no such function. Raises SyntaxError."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn_name:
            a = node.args
            names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            return names, a.kwarg is not None
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == fn_name for t in node.targets):
            return [], True  # e.g. `run = make_kernel(...)`: the signature is only known at run time
    return None


def check_definition(defn: Definition) -> list[str]:
    """Every semantic problem in `defn`, each as `field: message`."""
    problems: list[str] = []
    axes = set(defn.axes)
    for group in ("inputs", "outputs"):
        for tname, spec in getattr(defn, group).items():
            for i, axis in enumerate(spec.shape or ()):
                if axis not in axes:
                    problems.append(f"{group}.{tname}.shape[{i}]: unknown axis '{axis}'")
    for aname, axis in defn.axes.items():
        if isinstance(axis, AxisExpr):
            try:
                eval_axis_expr(axis.expression, {a: 1 for a in axes if a != aname})
            except KeyError as exc:
                problems.append(f"axes.{aname}.expression: unknown axis '{exc.args[0]}'")
            except (SpecError, ZeroDivisionError, ValueError) as exc:
                problems.append(f"axes.{aname}.expression: {exc}")
    clash = set(defn.inputs) & set(defn.outputs)
    for name in sorted(clash):
        problems.append(f"outputs.{name}: the name is also an input")
    try:
        sig = _run_signature(defn.reference, "run")
    except SyntaxError as exc:
        problems.append(f"reference: not valid Python (line {exc.lineno}: {exc.msg})")
    else:
        if sig is None:
            problems.append("reference: no top-level function 'run'")
        else:
            params, kw = sig
            missing = [n for n in defn.inputs if n not in params]
            if missing and not kw:
                problems.append(f"reference: run() takes ({', '.join(params)}) but lacks input(s) {missing}")
    for i, c in enumerate(defn.constraints):
        try:
            ast.parse(c, mode="eval")
        except SyntaxError:
            problems.append(f"constraints[{i}]: not a Python expression: '{c}'")
    ext = defn.solforge
    for name in ext.input_generators:
        if name not in defn.inputs:
            problems.append(f"solforge.input_generators.{name}: not an input of the definition")
    whole = ext.inputs_generator
    if whole is not None and whole.generator == "reference_function":
        fn = whole.args.get("function")
        try:
            found = isinstance(fn, str) and _run_signature(defn.reference, fn) is not None
        except SyntaxError:
            found = True  # the reference's own syntax error is reported above
        if not found:
            problems.append(f"solforge.inputs_generator.args.function: {fn!r} is not a top-level function of the reference")
    for dt in ext.tolerances:
        if dt not in {d.canonical for d in DType}:
            problems.append(f"solforge.tolerances.{dt}: unknown dtype")
    if ext.work is not None:
        formulas = {f"tensor_flops.{k}": v for k, v in ext.work.tensor_flops.items()}
        formulas.update({"other_flops": ext.work.other_flops, "bytes": ext.work.bytes})
        for field, expr in formulas.items():
            if expr is None:
                continue
            try:
                eval_axis_expr(expr, {a: 2 for a in axes})
            except KeyError as exc:
                problems.append(f"solforge.work.{field}: unknown axis '{exc.args[0]}'")
            except SpecError as exc:
                problems.append(f"solforge.work.{field}: {exc}")
    return problems


def check_workload(defn: Definition, wl: Workload) -> list[str]:
    """Every problem with `wl` as a workload of `defn`, each as `field: message`."""
    problems: list[str] = []
    var = set(defn.var_axes())
    for a in wl.axes:
        if a not in var:
            kind = "a const or expr axis" if a in defn.axes else "not an axis of the definition"
            problems.append(f"workload.axes.{a}: {kind}")
    for a in sorted(var - set(wl.axes)):
        problems.append(f"workload.axes.{a}: missing value for var axis")
    for a, v in wl.axes.items():
        if not isinstance(v, int) or v <= 0:
            problems.append(f"workload.axes.{a}: expected a positive integer, got {v!r}")
    for name in wl.inputs:
        if name not in defn.inputs:
            problems.append(f"workload.inputs.{name}: not an input of the definition")
    for name, spec in defn.inputs.items():
        if spec.shape is None and name not in defn.solforge.input_generators:
            given = wl.inputs.get(name)
            if not isinstance(given, ScalarInput):
                problems.append(f"workload.inputs.{name}: scalar input needs {{'type': 'scalar', 'value': ...}}")
    return problems


def check_solution(defn: Definition, sol: Solution) -> list[str]:
    """Every problem with `sol` as a solution of `defn`, each as `field: message`."""
    problems: list[str] = []
    if sol.definition != defn.name:
        problems.append(f"definition: names '{sol.definition}', expected '{defn.name}'")
    paths = [s.path for s in sol.sources]
    if len(set(paths)) != len(paths):
        problems.append("sources: duplicate paths")
    entry = sol.entry_source
    if entry is None:
        problems.append(f"spec.entry_point: file '{sol.spec.entry_file}' is not among the sources {paths}")
        return problems
    if not entry.path.endswith(".py"):
        return problems  # a CUDA C++ entry point: its signature is checked when it is built
    try:
        sig = _run_signature(entry.content, sol.spec.entry_function)
    except SyntaxError as exc:
        problems.append(f"sources.{entry.path}: not valid Python (line {exc.lineno}: {exc.msg})")
        return problems
    if sig is None:
        problems.append(f"spec.entry_point: no top-level function '{sol.spec.entry_function}' in {entry.path}")
        return problems
    params, kw = sig
    expected = list(defn.inputs) + (list(defn.outputs) if sol.spec.destination_passing_style else [])
    if not kw and sorted(params) != sorted(expected):
        problems.append(
            f"spec.entry_point: {sol.spec.entry_function}({', '.join(params)}) does not match the "
            f"definition's {'inputs and outputs' if sol.spec.destination_passing_style else 'inputs'} "
            f"({', '.join(expected)})"
        )
    return problems


def _raise_first(source: str, problems: list[str]) -> None:
    if problems:
        raise SpecError(located(source, None, problems[0]))


# -- files ------------------------------------------------------------------------------


def load_definition(path: str | Path) -> Definition:
    """Read and check one Definition JSON file. Raises SpecError (one line) on any problem."""
    defn = parse_model(Definition, read_json(Path(path)), str(path))
    _raise_first(str(path), check_definition(defn))
    return defn


def load_solution(path: str | Path, definition: Definition | None = None) -> Solution:
    """Read one Solution JSON file, checked against `definition` when given."""
    sol = parse_model(Solution, read_json(Path(path)), str(path))
    if definition is not None:
        _raise_first(str(path), check_solution(definition, sol))
    return sol


def read_jsonl(path: str | Path, model: type[M]) -> list[M]:
    """Read one model per non-blank line; errors name `file:line`."""
    out: list[M] = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}:{i}: malformed JSON at column {exc.colno}: {exc.msg}") from None
        out.append(parse_model(model, data, f"{path}:{i}"))
    return out


def load_workloads(path: str | Path, definition: Definition | None = None) -> list[Workload]:
    """Read a workloads JSONL file (one workload-only Trace per line)."""
    traces = read_jsonl(path, Trace)
    workloads = []
    for i, t in enumerate(traces, 1):
        if definition is not None:
            if t.definition != definition.name:
                raise SpecError(f"{path}:{i}: definition: names '{t.definition}', expected '{definition.name}'")
            _raise_first(f"{path}:{i}", check_workload(definition, t.workload))
        workloads.append(t.workload)
    return workloads


def workload_trace(definition: str, wl: Workload) -> Trace:
    return Trace(definition=definition, workload=wl, solution=None, evaluation=None)


def write_jsonl(path: str | Path, models: list[BaseModel], append: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w") as f:
        for m in models:
            f.write(dump_json(m, indent=None) + "\n")
