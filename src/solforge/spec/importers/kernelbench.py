"""KernelBench problem files as Definitions and Workloads; `ModelNew` files as Solutions.

A KernelBench problem file defines `Model(nn.Module)`, `get_inputs()` (the forward's
arguments), `get_init_inputs()` (the constructor's) and its sizes as module globals
(`batch_size = 16`, `dim = 16384`). Importing one executes it: it is the user's code and
running it is the point, but each file runs in a fresh module namespace of its own
(registered in `sys.modules` only while its top level runs), never as an import of
another file. Then:

- **Observation.** `Model(*get_init_inputs())` is built, `get_inputs()` called and the
  forward run on the meta device (torch.distributions' argument checks, which read
  values, are off meanwhile), so no weight or input is allocated. If that fails (data-
  dependent code, an op without a meta kernel) all three run on the CPU at the file's
  real sizes.
- **Inputs.** The forward's arguments, named after `Model.forward`'s parameters; then the
  parameters and persistent buffers, named after their `state_dict` keys with dots as
  underscores (tied parameters once). Python numbers from `get_inputs()` are scalar
  inputs; anything else (a dict, a string, None) is not importable.
- **Axes** (`kernelbench_axes`): each size global doubled on its own, on meta; a dim is
  named after the global that moves it, so two globals of equal value never merge. The
  globals the file still runs with at other values are var axes (the data's sizes and
  the model's), with expr axes for the dims derived from them (`height - 2` after a 3x3
  convolution); the model is then built at the sizes its inputs have.
- **Values.** The definition's inputs generator, `kernelbench_get_inputs` in the
  generated reference (`solforge.inputs_generator`): the file's own `get_inputs()` run
  with the var axes' globals set to the workload's sizes, and the weights of a fresh
  `Model(*init)` as its constructor draws them, under the harness's seed. Softmaxed
  probabilities stay probabilities, +-1 targets stay +-1, and no normal / large / tiny /
  mixed values replace them. Persistent buffers keep the values the file's
  `Model(*init)` gives them (a causal mask must stay a causal mask): the model is built
  once on the CPU (seed 0) and its buffers stored as a safetensors blob,
  `blob/kernelbench/<op_type>/<name>.safetensors`, that every workload where they have
  the file's shape points to (elsewhere the generator builds them at those sizes).
- **Tolerance.** KernelBench's own, atol = rtol = 1e-2 on every element (`torch.allclose`
  in KernelBench v0 and v0.1's `run_and_check_correctness`), for every float output dtype.
- **Reference.** Generated: the file's source embedded verbatim and executed once per
  process, the Model built once per (device, dtype, sizes), the sizes read off the
  inputs, with the init inputs bound as constants at the file's sizes (fitted expressions
  of the var axes at others) and the file's size globals set while it is built, called
  through `torch.func.functional_call` with its parameters
  and buffers replaced by the inputs of the same names. Buffers are cloned first: a
  training-mode forward (BatchNorm) updates them in place, and the harness requires
  inputs unchanged. The global RNG is seeded with 0 before each forward, so that a
  forward drawing random numbers (an LSTM's initial state) is a function of its inputs.
  When the harness upcasts float inputs (a float64 reference), the module's own float
  tensors follow. It is checked on meta tensors before it is kept.
- **Workloads** (`kernelbench_workloads`): the file's own sizes, plus search and smoke
  workloads derived by shrinking the var axes, each checked on meta; the reference is
  run on the CPU at the smallest of them on two draws of `get_inputs()`, and a file
  whose output shape changes between draws (data-dependent) is skipped with the reason.
- **ModelNew.** A file defining `ModelNew` becomes a Solution of the problem it names:
  one imported in the same call whose file stem starts its own (`19_ReLU_v2.py`), or
  KernelBench's run naming `level_1_problem_19_...`. Its language is `cuda` when it
  builds an extension (`load_inline`, `cpp_extension.load`), `triton` when it imports
  triton, else `pytorch`. The file is a source (`model_new_<solution>.py`) beside a
  generated `kernelbench_entry.py::run` that builds `ModelNew(*INIT_INPUTS)` and calls it
  with the definition's weights, bound by state_dict key or, when the keys differ, in
  order where the shapes agree. CUDA files are never executed here (their top level
  compiles); their keys are assumed to be Model's.

op_type is `kernelbench_level<N>` for a file under a `level<N>` directory, else
`kernelbench`; every definition is tagged `source:kernelbench`. What cannot be imported
is reported file by file with the reason; nothing is dropped silently.

Running a file lives in `kernelbench_run`, naming its axes in `kernelbench_axes`, its
workloads in `kernelbench_workloads`, the generated reference and entry point in
`kernelbench_code`.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.spec.dataset import Dataset
from solforge.spec.definition import Definition
from solforge.spec.errors import SpecError
from solforge.spec.importers import ImportReport, ImportResult, Imported, ItemKind, Note, Skipped, check_out_dir, write_import
from solforge.spec.importers.kernelbench_axes import AxisPlan, infer_axes, shapes_of
from solforge.spec.importers.kernelbench_code import (
    ENTRY_FILE,
    INPUTS_FUNCTION,
    CallSpec,
    entry_source,
    literal,
    model_new_module,
    reference_source,
)
from solforge.spec.importers.kernelbench_run import (
    DeviceScope,
    Observed,
    Unsupported,
    dtype_name,
    execute_file,
    forward_names,
    ident,
    observe,
    one_line,
    solution_language,
    state_input_names,
    top_level_names,
    unique_name,
)
from solforge.spec.importers.kernelbench_workloads import SMOKE_BUDGET, check_draws, derive_workloads, meta_cost
from solforge.spec.io import check_definition, check_solution, check_workload, parse_model
from solforge.spec.solution import Solution
from solforge.spec.workload import Workload, WorkloadExtension

_LEVEL_DIR = re.compile(r"^level[_-]?(\d+)$", re.IGNORECASE)
_RUN_NAME = re.compile(r"level_?(\d+)_problem_?(\d+)", re.IGNORECASE)
# KernelBench v0 and v0.1 check every output with torch.allclose(atol=1e-2, rtol=1e-2)
# (src/kernelbench/eval.py, run_and_check_correctness); solforge checks against it.
KERNELBENCH_TOLERANCE = {"atol": 1e-2, "rtol": 1e-2, "required_matched_ratio": 1.0}


# -- a problem file -----------------------------------------------------------------------


@dataclass
class ImportedProblem:
    """A problem file made into a definition and its workloads."""

    display: str
    stem: str
    level: int | None
    init: list[Any]  # get_init_inputs()
    definition: Definition
    workloads: list[Workload]
    call: CallSpec
    notes: list[str]
    blob: str | None = None  # where the buffers' values go, relative to the dataset root
    buffer_values: dict[str, Any] = field(default_factory=dict)  # input name -> tensor


def level_of(display: str) -> int | None:
    """N of the nearest `levelN` directory in `display`, if any."""
    levels = [int(m.group(1)) for part in Path(display).parts[:-1] if (m := _LEVEL_DIR.match(part))]
    return levels[-1] if levels else None


def _buffer_values(
    module: types.ModuleType, observed: Observed, init: Sequence[Any], buffers: dict[str, str]
) -> tuple[dict[str, Any], str | None]:
    """Input name -> the value of each persistent buffer in the file's Model(*init), built
    on the CPU with seed 0 (the observed model when it already ran there), and a note
    when that build failed."""
    import torch

    if not buffers:
        return {}, None
    model = observed.model
    if observed.device != "cpu":
        try:
            with torch.random.fork_rng(devices=[]), DeviceScope("cpu"), torch.no_grad():
                torch.manual_seed(0)
                model = module.Model(*init)
        except Exception as exc:
            return {}, f"buffers are drawn at random: Model(*get_init_inputs()) on the CPU raised {one_line(exc)}"
    state = model.state_dict()
    return {name: state[key].detach().clone().contiguous() for name, key in buffers.items()}, None


def _rename_clashes(plan: AxisPlan, tensors: set[str]) -> None:
    """SOL-ExecBench forbids an input named as an axis: such axes get a `_size` suffix."""
    for old in [a for a in plan.axes if a in tensors]:
        plan.rename(old, unique_name(f"{old}_size", set(plan.axes) | tensors))


def _load_init(module: types.ModuleType) -> tuple[list[Any], list[str]]:
    """get_init_inputs() as a list, and notes. Raises Unsupported when it raises or returns no list."""
    if not callable(getattr(module, "get_init_inputs", None)):
        return [], ["defines no get_init_inputs(): Model() is built without arguments"]
    try:
        init = module.get_init_inputs()
    except Exception as exc:
        raise Unsupported(f"get_init_inputs() raised {one_line(exc)}") from None
    if not isinstance(init, (list, tuple)):
        raise Unsupported(f"get_init_inputs() returned a {type(init).__name__}; expected a list")
    return list(init), []


def _cpu_workloads(definition: Definition, file_workload: Workload) -> tuple[list[Workload], list[str]]:
    """Workloads of a file that runs only on the CPU: its own, and a smoke copy when it is small."""
    axes = definition.resolve_axes(file_workload.axes)
    specs = [*definition.inputs.values(), *definition.outputs.values()]
    moved = sum(math.prod(definition.shape_of(s, axes)) * s.dtype.itemsize_bits // 8 for s in specs if s.shape is not None)
    if moved > SMOKE_BUDGET.bytes_moved:
        return [file_workload], [f"no smoke workload: the file's sizes move {moved / 2**20:.1f} MiB and no axis can shrink"]
    smoke = file_workload.model_copy(update={
        "uuid": file_workload.uuid.removesuffix("-file") + "-smoke",
        "solforge": WorkloadExtension(label="smoke: the file's sizes", smoke=True),
    })
    return [file_workload, smoke], []


def import_problem(path: Path, display: str, source: str, op_type: str, name: str) -> ImportedProblem:
    """Make one problem file into a definition and its workloads (module docstring).
    Raises Unsupported with the reason when it cannot."""
    import torch

    module = execute_file(path, source)
    model_cls = getattr(module, "Model", None)
    if not (isinstance(model_cls, type) and issubclass(model_cls, torch.nn.Module)):
        raise Unsupported("`Model` is not a torch.nn.Module subclass")
    if not callable(getattr(module, "get_inputs", None)):
        raise Unsupported("defines no function get_inputs()")
    init, notes = _load_init(module)
    init_source = literal(init)
    observed = observe(module, init)
    plan, axis_notes = infer_axes(module, source, shapes_of(observed.inputs, observed.model, observed.outputs, init),
                                  observed.device == "meta")
    notes += axis_notes

    forward_args = forward_names(model_cls, len(observed.inputs))
    taken = set(forward_args)
    seen: set[int] = set()
    state_items = []
    for key, tensor in observed.model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:  # a tied parameter is one input
            seen.add(id(tensor))
            state_items.append((key, tensor))
    state = state_input_names([k for k, _ in state_items], taken)
    buffer_keys = {k for k, _ in observed.model.named_buffers()}
    outputs = ["output"] if len(observed.outputs) == 1 else [f"output{i}" for i in range(len(observed.outputs))]
    outputs = [unique_name(o, taken) for o in outputs]
    _rename_clashes(plan, set(forward_args) | set(state) | set(outputs))

    inputs: dict[str, dict[str, Any]] = {}
    workload_inputs: dict[str, dict[str, Any]] = {}
    file_dtypes: dict[str, str] = {}
    for i, (arg, value, axes) in enumerate(zip(forward_args, observed.inputs, plan.inputs)):
        if isinstance(value, torch.Tensor):
            dt = dtype_name(value.dtype, f"input {arg}")
            inputs[arg] = {"shape": axes, "dtype": dt, "description": f"Argument {i} of Model.forward."}
            workload_inputs[arg] = {"type": "random"}
            if value.dtype.is_floating_point:
                file_dtypes[arg] = dt
        else:
            dt = "bool" if isinstance(value, bool) else "int64" if isinstance(value, int) else "float64"
            inputs[arg] = {"shape": None, "dtype": dt, "description": f"Argument {i} of Model.forward (a Python number)."}
            workload_inputs[arg] = {"type": "scalar", "value": value}
    for (input_name, key), (_, tensor), axes in zip(state.items(), state_items, plan.state):
        kind = "persistent buffer" if key in buffer_keys else "parameter"
        inputs[input_name] = {"shape": axes, "dtype": dtype_name(tensor.dtype, f"{kind} {key}"),
                              "description": f"Model's {kind} `{key}`."}
        workload_inputs[input_name] = {"type": "random"}
        if tensor.dtype.is_floating_point:
            file_dtypes[input_name] = inputs[input_name]["dtype"]
    output_specs = {
        o: {"shape": axes, "dtype": dtype_name(t.dtype, f"output {o}")}
        for o, t, axes in zip(outputs, observed.outputs, plan.outputs)
    }
    buffers = {n: k for n, k in state.items() if k in buffer_keys}
    buffer_values, buffer_note = _buffer_values(module, observed, init, buffers)
    notes += [buffer_note] if buffer_note else []
    blob = f"blob/kernelbench/{op_type}/{name}.safetensors" if buffer_values else None
    for input_name in buffer_values:
        workload_inputs[input_name] = {"type": "safetensors", "path": blob, "tensor_key": input_name}

    call = CallSpec(
        init_inputs=init_source,
        forward_args=forward_args,
        state=state,
        buffers=list(buffers),
        file_dtypes=file_dtypes,
        state_specs={k: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in state_items},
        size_globals=plan.var_globals,
        axis_sources={axis: (forward_args[i] if group == "inputs" else list(state)[i], dim)
                      for axis, (group, i, dim) in plan.sources.items()},
        init_source=plan.init_source,
    )
    doc = inspect.cleandoc(model_cls.__doc__).split("\n\n")[0].replace("\n", " ") if model_cls.__doc__ else ""
    float_outputs = sorted({spec["dtype"] for spec in output_specs.values() if spec["dtype"].startswith(("float", "bfloat"))})
    definition: dict[str, Any] = {
        "name": name,
        "op_type": op_type,
        "description": (
            f"KernelBench problem {display}. {doc + ' ' if doc else ''}Imported by `solforge import kernelbench`: "
            f"the reference calls Model(*{init_source}) with its parameters and buffers taken from the inputs; "
            f"input values come from the file's own get_inputs() and Model constructor ({INPUTS_FUNCTION}); "
            "outputs are checked with KernelBench's tolerance, atol = rtol = 1e-2."
        ),
        "axes": plan.axes,
        "inputs": inputs,
        "outputs": output_specs,
        "reference": reference_source(display, source, call, list(inputs)),
        "tags": ["source:kernelbench"],
        "constraints": plan.constraints,
        "solforge": {
            "tolerances": {dt: KERNELBENCH_TOLERANCE for dt in float_outputs},
            "inputs_generator": {
                "generator": "reference_function",
                "args": {"function": INPUTS_FUNCTION},
                "description": "The file's get_inputs() at the workload's sizes, and a fresh Model(*init)'s weights.",
            },
        },
    }
    file_workload: dict[str, Any] = {"uuid": f"{name}-file", "axes": plan.file_axes, "inputs": workload_inputs,
                                     "solforge": {"label": "file"}}
    defn = parse_model(Definition, definition, display)
    wl = parse_model(Workload, file_workload, display)
    problems = check_definition(defn) + check_workload(defn, wl)
    assert not problems, f"{display}: generated an invalid definition: {problems[0]}"
    if observed.device == "meta":
        meta_cost(defn, wl)
        workloads, workload_notes = derive_workloads(defn, wl)
    else:
        notes.append(
            f"ran on the CPU at the file's sizes (on the meta device {observed.meta_failure}); the generated "
            "reference was not checked on meta tensors"
        )
        workloads, workload_notes = _cpu_workloads(defn, wl)
    notes += workload_notes
    notes += check_draws(defn, workloads[-1], buffer_values)
    return ImportedProblem(display, path.stem, level_of(display), init, defn, workloads, call, notes, blob, buffer_values)


# -- a ModelNew file ----------------------------------------------------------------------


def problem_for(stem: str, problems: Sequence[ImportedProblem]) -> ImportedProblem:
    """The problem a ModelNew file named `stem` solves (module docstring). Raises
    Unsupported when none or several match."""
    run_name = _RUN_NAME.search(stem)
    if run_name:
        level, number = int(run_name.group(1)), int(run_name.group(2))
        matches = [p for p in problems if p.level == level and re.match(rf"0*{number}_", p.stem)]
    else:
        prefixed = [p for p in problems if len(stem) > len(p.stem) and stem.startswith(p.stem) and stem[len(p.stem)] in "_-."]
        longest = max((len(p.stem) for p in prefixed), default=0)
        matches = [p for p in prefixed if len(p.stem) == longest]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise Unsupported(f"defines ModelNew and matches several problems: {', '.join(p.display for p in matches)}")
    raise Unsupported(
        "defines ModelNew but names no problem imported in this call (its file stem should start with the "
        "problem's, as 19_ReLU_fast.py for 19_ReLU.py, or follow KernelBench's level_1_problem_19_... naming)"
    )


def _model_new_state(path: Path, source: str, init: Sequence[Any]) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of ModelNew(*init)'s state, tied entries once; built on meta,
    else on the CPU. Raises Unsupported when the file or the constructor raises."""
    import torch

    module = execute_file(path, source)
    model_new = getattr(module, "ModelNew", None)
    if not (isinstance(model_new, type) and issubclass(model_new, torch.nn.Module)):
        raise Unsupported("`ModelNew` is not a torch.nn.Module subclass")
    failures = []
    for device in ("meta", "cpu"):
        try:
            with DeviceScope(device):
                model = model_new(*init)
            break
        except Exception as exc:
            failures.append(one_line(exc))
    else:
        raise Unsupported(f"ModelNew(*get_init_inputs()) raised {failures[-1]}")
    seen: set[int] = set()
    out = []
    for key, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            out.append((key, tuple(t.shape), str(t.dtype).removeprefix("torch.")))
    return out


def bind_state(
    problem: ImportedProblem, new_state: list[tuple[str, tuple[int, ...], str]]
) -> tuple[dict[str, str], str | None]:
    """Input name -> ModelNew's state_dict key: by key when every one of Model's is there
    with the same shape and dtype, else in order when the shapes and dtypes agree one to
    one. Returns the map and a note. Raises Unsupported when neither holds."""
    specs = problem.call.state_specs
    new = {k: (shape, dt) for k, shape, dt in new_state}
    if all(new.get(key) == specs[key] for key in problem.call.state.values()):
        extra = sorted(set(new) - set(specs))
        note = f"ModelNew has state Model lacks, kept as ModelNew initializes it: {', '.join(extra)}" if extra else None
        return dict(problem.call.state), note
    if [specs[key] for key in problem.call.state.values()] == [(shape, dt) for _, shape, dt in new_state]:
        by_order = {name: new_state[i][0] for i, name in enumerate(problem.call.state)}
        return by_order, "ModelNew's state_dict keys differ from Model's: bound in order (the shapes and dtypes agree)"
    raise Unsupported(
        f"ModelNew's parameters and buffers ({', '.join(k for k, _, _ in new_state) or 'none'}) match Model's "
        f"({', '.join(problem.call.state.values()) or 'none'}) neither by name nor in order"
    )


def import_model_new(
    path: Path, display: str, source: str, tree: ast.Module, problem: ImportedProblem, name: str
) -> tuple[Solution, list[str]]:
    """Make one ModelNew file into a Solution of `problem` (module docstring). Raises
    Unsupported with the reason when it cannot."""
    language = solution_language(tree)
    notes = []
    if language == "cuda":
        state = dict(problem.call.state)
        notes.append("builds a CUDA extension, so it was not run here: ModelNew's state_dict keys are assumed to be Model's")
    else:
        state, note = bind_state(problem, _model_new_state(path, source, problem.init))
        notes += [note] if note else []
    spec = CallSpec(**{**problem.call.__dict__, "state": state})
    module = model_new_module(name)
    entry = entry_source(display, module, spec, list(problem.definition.inputs))
    data = {
        "name": name,
        "definition": problem.definition.name,
        "author": "kernelbench",
        "description": f"KernelBench ModelNew from {display}, imported by `solforge import kernelbench`.",
        "spec": {
            "language": language,
            "target_hardware": [],
            "entry_point": f"{ENTRY_FILE}::run",
            "dependencies": [],
            "destination_passing_style": False,
        },
        "sources": [{"path": f"{module}.py", "content": source}, {"path": ENTRY_FILE, "content": entry}],
    }
    solution = parse_model(Solution, data, display)
    problems = check_solution(problem.definition, solution)
    assert not problems, f"{display}: generated an invalid solution: {problems[0]}"
    return solution, notes


# -- the importer ---------------------------------------------------------------------------


def _collect(paths: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(file, how to name it in the report) for each file given or found under a given
    directory, each once. Raises SpecError for a path that does not exist."""
    files: dict[Path, tuple[Path, str]] = {}
    for given in paths:
        p = Path(given)
        if not p.exists():
            raise SpecError(f"{p}: no such file or directory")
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            files.setdefault(f.resolve(), (f, str(f)))
    return list(files.values())


def read_kernelbench(paths: Sequence[str | Path]) -> ImportResult:
    """KernelBench problem files (and directories of them, searched for `*.py`) and ModelNew
    files, as a Dataset and a report; nothing is written (see `import_kernelbench`).

    Executes each file (module docstring). Problem files become one definition and its
    workloads each; ModelNew files a solution of the problem they name. A file that cannot
    be imported is in `report.skipped` with its reason. Raises SpecError when a path does
    not exist.
    """
    report = ImportReport(importer="kernelbench", sources=[str(p) for p in paths])
    ds = Dataset()
    problems: list[ImportedProblem] = []
    by_name: dict[str, str] = {}
    model_new_files = []
    problem_files = set()
    tensors: dict[str, dict[str, Any]] = {}
    for path, display in _collect(paths):
        if path.suffix != ".py":
            report.skipped.append(Skipped(display, "not a .py file"))
            continue
        if path.name == "__init__.py":
            report.notes.append(Note(display, "a package's __init__.py, not a problem file"))
            continue
        source = path.read_text()
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            report.skipped.append(Skipped(display, f"not valid Python (line {exc.lineno}: {exc.msg})"))
            continue
        names = top_level_names(tree)
        if "ModelNew" in names:
            model_new_files.append((path, display, source, tree))
        if "Model" not in names:
            if "ModelNew" not in names:
                report.skipped.append(Skipped(display, "defines no class Model (nor ModelNew): not a KernelBench file"))
            continue
        problem_files.add(display)
        level = level_of(display)
        op_type = f"kernelbench_level{level}" if level is not None else "kernelbench"
        name = f"{op_type}_{ident(path.stem)}"
        if name in by_name:
            report.skipped.append(Skipped(display, f"definition name '{name}' is already taken by {by_name[name]}"))
            continue
        try:
            problem = import_problem(path, display, source, op_type, name)
        except Unsupported as exc:
            report.skipped.append(Skipped(display, str(exc)))
            continue
        except AssertionError:
            raise  # a bug of the importer, not of the file
        except Exception as exc:  # the file's code raised where no step expected it (a state_dict hook)
            report.skipped.append(Skipped(display, f"importing raised {one_line(exc)}"))
            continue
        by_name[name] = display
        problems.append(problem)
        ds.definitions[name] = problem.definition
        ds.workloads[name] = problem.workloads
        if problem.blob is not None:
            tensors[problem.blob] = problem.buffer_values
        report.imported.append(Imported(display, ItemKind.definition, name))
        report.imported.extend(Imported(display, ItemKind.workload, w.uuid) for w in problem.workloads)
        report.notes.extend(Note(display, n) for n in problem.notes)

    solution_names: set[str] = set()
    for path, display, source, tree in model_new_files:
        try:
            own = [p for p in problems if p.display == display]
            if display in problem_files and not own:
                raise Unsupported("defines ModelNew beside a Model that was not imported (see its own entry)")
            problem = own[0] if own else problem_for(path.stem, problems)
            name = unique_name(ident(path.stem), solution_names)
            solution, notes = import_model_new(path, display, source, tree, problem, name)
        except Unsupported as exc:
            report.skipped.append(Skipped(display, str(exc)))
            continue
        except AssertionError:
            raise
        except Exception as exc:
            report.skipped.append(Skipped(display, f"importing raised {one_line(exc)}"))
            continue
        ds.solutions.setdefault(problem.definition.name, []).append(solution)
        report.imported.append(Imported(display, ItemKind.solution, solution.name))
        report.notes.extend(Note(display, n) for n in notes)
    return ImportResult(dataset=ds, report=report, tensors=tensors)


def import_kernelbench(paths: Sequence[str | Path], out: str | Path) -> ImportReport:
    """`read_kernelbench(paths)` written as a dataset under `out`, with
    `import-report.json` (see `write_import`). Raises SpecError when a path does not
    exist or `out` is not a new or empty directory."""
    check_out_dir(out)
    return write_import(read_kernelbench(paths), out)


__all__ = ["ENTRY_FILE", "import_kernelbench", "model_new_module", "read_kernelbench"]
