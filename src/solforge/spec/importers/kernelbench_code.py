"""Code generated for KernelBench imports: the reference and a ModelNew entry point.

Both call a KernelBench module the same way (`CallSpec`): build it once per device, dtype
and sizes (read off the inputs; the init inputs bound as constants at the file's sizes,
as fitted expressions of the var axes at others), then call it through
`torch.func.functional_call` with its parameters and persistent buffers replaced by the
definition's inputs. The reference embeds the problem file verbatim and executes it in a
fresh namespace; the entry point imports the ModelNew file stored beside it.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from solforge.spec.importers.kernelbench_run import Unsupported

ENTRY_FILE = "kernelbench_entry.py"


def literal(value: Any, where: str = "get_init_inputs()") -> str:
    """Python source that evaluates to `value`: numbers, strings, bools, None, torch dtypes
    and lists or tuples of them. Raises Unsupported for anything else (a tensor, a module)."""
    import torch

    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else f"float({str(float(value))!r})"
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    raise Unsupported(
        f"{where} is a {type(value).__name__}; only numbers, strings, bools, None, torch dtypes and "
        "lists or tuples of them can be bound as constants"
    )


@dataclass
class CallSpec:
    """How `run` calls a KernelBench module: what the generated reference and a ModelNew
    entry point share."""

    init_inputs: str  # get_init_inputs() as Python source
    forward_args: list[str]  # Model.forward's arguments, in get_inputs() order
    state: dict[str, str]  # input name -> state_dict key it replaces
    buffers: list[str]  # inputs that are (persistent) buffers
    file_dtypes: dict[str, str]  # floating-point tensor inputs -> their dtype in the file
    state_specs: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)  # key -> (shape, dtype)
    # var axis -> the module globals (name, tuple index or None) the inputs generator sets to its size
    size_globals: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    axis_sources: dict[str, tuple[str, int]] = field(default_factory=dict)  # var axis -> (input, dim) of its size
    init_source: str | None = None  # get_init_inputs() over sizes['<axis>'] (None: INIT_INPUTS at every size)


def _pformat(value: Any) -> str:
    import pprint

    return pprint.pformat(value, sort_dicts=False, width=100)


def _constants(spec: CallSpec) -> str:
    return (
        f"INIT_INPUTS = {spec.init_inputs}  # get_init_inputs() of the problem file, bound as constants\n"
        f"FORWARD_ARGS = {_pformat(tuple(spec.forward_args))}  # Model.forward's arguments, in order\n"
        f"# Input -> the state_dict key it replaces.\nSTATE = {_pformat(spec.state)}\n"
        f"BUFFERS = {_pformat(tuple(spec.buffers))}  # inputs that are buffers\n"
        f"# Floating-point tensor inputs -> their dtype in the problem file.\nFILE_DTYPES = {_pformat(spec.file_dtypes)}\n"
        f"# Var axis -> (input, dim) whose size is the axis's: the model is built at the inputs' sizes.\n"
        f"AXIS_SOURCES = {_pformat(spec.axis_sources)}\n\n\n"
        "def _init_inputs(sizes):\n"
        '    """get_init_inputs() at `sizes` (var axis -> size), as fitted at import."""\n'
        f"    return {spec.init_source or 'INIT_INPUTS'}\n"
    )


_CALL = '''
def _sizes(args):
    """(var axis, size) pairs, read off the inputs (AXIS_SOURCES)."""
    return tuple((axis, int(args[name].shape[dim])) for axis, (name, dim) in AXIS_SOURCES.items())


@functools.cache
def _model(device, dtype, sizes):
    """The module, built once per device, dtype and sizes; its weights come from the inputs."""
    with torch.device(device):
        model = _build(dict(sizes))
    missing = sorted(set(STATE.values()) - set(model.state_dict()))
    if missing:
        raise RuntimeError(f"{type(model).__name__} has no parameters or buffers named {missing}")
    return model.to(dtype) if dtype is not None else model


def _upcast_dtype(args):
    """The dtype the harness upcast the float inputs to (a float64 reference), or None;
    the module's own float tensors then follow them."""
    first = next(iter(FILE_DTYPES), None)
    if first is None or str(args[first].dtype) == "torch." + FILE_DTYPES[first]:
        return None
    return args[first].dtype


def _call(args):
    tensors = [v for v in args.values() if isinstance(v, torch.Tensor)]
    model = _model(str(tensors[0].device) if tensors else "cpu", _upcast_dtype(args), _sizes(args))
    # Buffers are cloned: a training-mode forward (BatchNorm) updates them in place.
    state = {key: args[name].clone() if name in BUFFERS else args[name] for name, key in STATE.items()}
    # A forward that draws random numbers (an LSTM's initial state) draws the same ones on
    # every call, in the reference and in a ModelNew alike. Not torch.manual_seed: before
    # CUDA is initialized it queues a CUDA seed with the caller's stack trace, which the
    # harness's guards read as a solution walking the call stack.
    torch.default_generator.manual_seed(0)
    if tensors and tensors[0].is_cuda:
        torch.cuda.manual_seed(0)
    out = functional_call(model, state, tuple(args[name] for name in FORWARD_ARGS))
    return tuple(out) if isinstance(out, list) else out


@torch.no_grad()
def run({params}):
    return _call(dict(locals()))  # the arguments, by name
'''


def _embedded(source: str) -> str:
    """`source` as a string literal: raw and triple-quoted where that is exact, else repr."""
    if "'''" not in source and not source.endswith("\\") and "\r" not in source:
        return f"r'''{source}'''"
    return repr(source)


INPUTS_FUNCTION = "kernelbench_get_inputs"

_PROBLEM_MODULE = '''
@functools.cache
def _problem_module():
    """The problem file, executed once per process in a fresh module namespace."""
    module = types.ModuleType("kernelbench_problem")
    module.__file__ = PROBLEM_FILE
    sys.modules[module.__name__] = module  # dataclasses look their module up while made
    try:
        exec(compile(PROBLEM_SOURCE, PROBLEM_FILE, "exec"), module.__dict__)
    finally:
        sys.modules.pop(module.__name__, None)
    return module


def _set_sizes(module, sizes):
    """Set the module globals of the var axes in `sizes` (SIZE_GLOBALS); the old values."""
    saved = {}
    for axis, targets in SIZE_GLOBALS.items():
        if axis not in sizes:
            continue
        for name, index in targets:
            saved.setdefault(name, module.__dict__[name])
            value = int(sizes[axis])
            if index is None:
                module.__dict__[name] = value
            else:
                items = list(module.__dict__[name])
                items[index] = value
                module.__dict__[name] = tuple(items)
    return saved


def _build(sizes):
    """Model at `sizes`: built while the file's size globals hold them, as the file
    builds it at its own."""
    module = _problem_module()
    saved = _set_sizes(module, sizes)
    try:
        return module.Model(*_init_inputs(sizes))
    finally:
        module.__dict__.update(saved)  # the forward sees the file's values


def kernelbench_get_inputs(axes_and_scalars, device):
    """Every input as the problem file draws it, at the workload's sizes: get_inputs() with
    the var axes' module globals (SIZE_GLOBALS) set to the workload's values, and the
    parameters and buffers of a fresh Model at those sizes, initialized as its
    constructor does. Draws from torch's global RNG, which the caller seeds."""
    module = _problem_module()
    saved = _set_sizes(module, axes_and_scalars)
    try:
        with torch.device(device), torch.no_grad():
            args = list(module.get_inputs())
            model = module.Model(*_init_inputs(axes_and_scalars))
    finally:
        module.__dict__.update(saved)
    values = dict(zip(FORWARD_ARGS, args))
    state = model.state_dict(keep_vars=True)
    values.update({name: state[key].detach() for name, key in STATE.items()})
    return values
'''


def reference_source(display: str, source: str, spec: CallSpec, params: list[str]) -> str:
    """The generated reference of a problem file; see the module docstring."""
    text = (
        f'"""Reference of KernelBench problem {display}, generated by `solforge import kernelbench`.\n\n'
        "run() calls the problem's Model, built at the sizes its inputs have (INIT_INPUTS at the\n"
        "file's), with its parameters and persistent buffers replaced by the inputs of the same\n"
        "names (torch.func.functional_call), and returns what its forward returns. The problem file is embedded verbatim as PROBLEM_SOURCE and executed once\n"
        f"per process in a fresh module namespace. {INPUTS_FUNCTION}() makes every input as the\n"
        'file\'s get_inputs() and Model constructor draw them (the definition\'s inputs generator).\n"""\n\n'
        "import functools\nimport sys\nimport types\n\nimport torch\nfrom torch.func import functional_call\n\n"
        f"PROBLEM_FILE = {display!r}\n{_constants(spec)}\n\n"
        f"# Var axis -> the module globals (name, tuple index or None) set to its size.\n"
        f"SIZE_GLOBALS = {_pformat(spec.size_globals)}\n\nPROBLEM_SOURCE = {_embedded(source)}\n\n"
        + _PROBLEM_MODULE + _CALL.replace("{params}", ", ".join(params))
    )
    tree = ast.parse(text)
    embedded = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PROBLEM_SOURCE")
    assert ast.literal_eval(embedded) == source, "the problem source did not embed verbatim"
    return text


def model_new_module(solution_name: str) -> str:
    """The module name the ModelNew file of solution `solution_name` is stored under:
    distinct per solution, so that two solutions built in one worker never share it."""
    return "model_new_" + re.sub(r"\W", "_", solution_name)


def entry_source(display: str, module: str, spec: CallSpec, params: list[str]) -> str:
    """The generated `run` of a ModelNew solution, importing it from `module`; see the
    module docstring."""
    return (
        f'"""Entry point of the KernelBench ModelNew in {display}, generated by `solforge import kernelbench`.\n\n'
        f"run() builds ModelNew(*INIT_INPUTS) from {module}.py once per device and dtype, and calls\n"
        "it with its parameters and persistent buffers replaced by the definition's inputs\n"
        '(torch.func.functional_call), as the reference calls Model.\n"""\n\n'
        "import functools\n\nimport torch\nfrom torch.func import functional_call\n\n"
        f"from {module} import ModelNew\n\n{_constants(spec)}\n\n"
        "def _build(sizes):\n    return ModelNew(*_init_inputs(sizes))\n\n"
        + _CALL.replace("{params}", ", ".join(params))
    )


def exec_run(source: str, filename: str) -> Callable[..., Any]:
    """The `run` of a generated module, executed in a fresh namespace."""
    namespace: dict[str, Any] = {"__name__": "solforge_kernelbench_generated"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["run"]
