"""Running a KernelBench file: executing it and observing its model.

`execute_file` runs a file's source as a module of its own, in a fresh namespace
(registered in `sys.modules` only while its top level runs): it is the user's code, and
running it is the point of an import. `observe` builds `Model(*get_init_inputs())`,
calls `get_inputs()` and runs the forward on the meta device (torch.distributions'
argument checks, which read values, are off meanwhile), else on the CPU at the file's
real sizes. Naming the dims is `kernelbench_axes`' job.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


_DTYPES = {
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int64", "int32", "int16",
    "int8", "uint8", "bool",
}


from solforge.spec.importers.skipped import Unsupported  # noqa: E402  (shared by every importer)


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module's top level defines, assigns or imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def solution_language(tree: ast.Module) -> str:
    """`cuda` when the source builds a torch extension (`load_inline` or
    `torch.utils.cpp_extension.load`), `triton` when it imports triton, else `pytorch`."""
    calls = {
        (n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", ""))
        for n in ast.walk(tree) if isinstance(n, ast.Call)
    }
    imports = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    builds = "load_inline" in calls or ("load" in calls and "cpp_extension" in ast.unparse(tree))
    return "cuda" if builds else "triton" if "triton" in imports else "pytorch"


def ident(text: str) -> str:
    """`text` with every character that cannot be in an identifier made `_`."""
    return re.sub(r"\W", "_", text)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters of it."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def execute_file(path: Path, source: str) -> types.ModuleType:
    """Run `source` (the file at `path`) as a module of its own, fresh namespace; see the
    module docstring. Raises Unsupported with the error when its top level raises."""
    name = f"solforge_kernelbench_{ident(path.stem)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and typing look a class's module up while it is made
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except Exception as exc:
        raise Unsupported(f"running the file raised {one_line(exc)}") from None
    finally:
        sys.modules.pop(name, None)
    return module


@dataclass
class Observed:
    """One run of a problem file: where it ran, the model, its inputs and outputs."""

    device: str  # "meta" or "cpu"
    model: Any  # torch.nn.Module
    inputs: list[Any]
    outputs: list[Any]
    meta_failure: str | None = None  # why the meta device failed, when it ran on the CPU


class _Step(Exception):
    """A step of the observation raised; the message names the step."""


def _step(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Unsupported:
        raise
    except Exception as exc:
        raise _Step(f"{what} raised {one_line(exc)}") from None


class DeviceScope:
    """Default device `device` for factory functions; on meta, torch.distributions'
    argument validation is off (it calls .item(), which meta tensors cannot)."""

    def __init__(self, device: str):
        import torch
        from torch.distributions import Distribution

        self.device, self.distribution = torch.device(device), Distribution

    def __enter__(self) -> None:
        self.saved = self.distribution._validate_args
        if self.device.type == "meta":
            self.distribution.set_default_validate_args(False)
        self.device.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.device.__exit__(*exc)
        self.distribution.set_default_validate_args(self.saved)


def forward_outputs(value: Any) -> list[Any]:
    """The forward's value as a list of tensors; raises Unsupported for anything else."""
    import torch

    items = list(value) if isinstance(value, (tuple, list)) else [value]
    bad = [type(v).__name__ for v in items if not isinstance(v, torch.Tensor)]
    if bad or not items:
        what = bad[0] if bad else "nothing"
        raise Unsupported(f"Model.forward returned {what}; only a tensor or a tuple of tensors is supported")
    return items


def check_inputs(value: Any) -> list[Any]:
    """get_inputs()'s value as a list; raises Unsupported unless it holds only tensors and numbers."""
    import torch

    if not isinstance(value, (list, tuple)):
        raise Unsupported(f"get_inputs() returned a {type(value).__name__}; expected a list")
    for v in value:
        if not isinstance(v, (torch.Tensor, bool, int, float)):
            raise Unsupported(
                f"get_inputs() returned a list with a {type(v).__name__}; only tensors and numbers are supported"
            )
    return list(value)


def observe(module: types.ModuleType, init_inputs: Sequence[Any]) -> Observed:
    """Build the model, call get_inputs() and run the forward: on the meta device, else on
    the CPU (see the module docstring). Raises Unsupported with the reason."""
    import torch

    failures: dict[str, str] = {}
    for device in ("meta", "cpu"):
        try:
            with DeviceScope(device), torch.no_grad():
                model = _step("Model(*get_init_inputs())", lambda: module.Model(*init_inputs))
                inputs = check_inputs(_step("get_inputs()", module.get_inputs))
                outputs = forward_outputs(_step("Model.forward", lambda: model(*inputs)))
        except _Step as exc:
            failures[device] = str(exc)
            continue
        return Observed(device, model, inputs, outputs, meta_failure=failures.get("meta"))
    if len(set(failures.values())) == 1:
        raise Unsupported(failures["cpu"])
    raise Unsupported(f"on the meta device {failures['meta']}; on the CPU {failures['cpu']}")


def forward_names(model_cls: type, count: int) -> list[str]:
    """Names of the first `count` positional arguments of `model_cls.forward` (`args0`,
    `args1`, ... past them when it takes *args). Raises Unsupported when it takes fewer."""
    params = list(inspect.signature(model_cls.forward).parameters.values())[1:]
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
    if count <= len(positional):
        return positional[:count]
    if varargs is not None:
        return positional + [f"{varargs}{i}" for i in range(count - len(positional))]
    raise Unsupported(f"get_inputs() returned {count} values but Model.forward takes {len(positional)} positional arguments")


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... whichever `taken` lacks; added to `taken`."""
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def state_input_names(keys: Sequence[str], taken: set[str]) -> dict[str, str]:
    """Input name -> state_dict key: dots as underscores, `param_` before a leading digit,
    a `_2` suffix on a clash with a name in `taken` (which is updated)."""
    out = {}
    for key in keys:
        base = ident(key)
        if not base.isidentifier():
            base = f"param_{base}"
        out[unique_name(base, taken)] = key
    return out


def dtype_name(dtype: torch.dtype, what: str) -> str:
    """The schema's name of a torch dtype. Raises Unsupported for one the schema lacks."""
    name = str(dtype).removeprefix("torch.")
    if name == "float4_e2m1fn_x2":
        return "float4_e2m1"
    if name not in _DTYPES:
        raise Unsupported(f"{what} has dtype {name}, which the FlashInfer Trace schema cannot express")
    return name
