"""A winner as a `torch.library` custom op with a fake (meta) implementation.

The op `solforge::<definition>__<8 hex of the solution's sources>` takes the
definition's inputs in order (tensors, and float/int/bool scalars) and returns its
outputs (a tensor, or a tuple in the definition's order). Its real implementation
allocates the outputs at the shapes the definition's axes give and calls the solution's
entry point (destination-passing style), or returns what a value-returning entry point
returns. Its fake implementation allocates the same outputs on the inputs' device
without running anything, so `torch.compile(fullgraph=True)` traces through the op and
never into the solution's code (numba, Triton or any other).

The solution's sources are written under the solforge cache (`runtime/<hash>/`) and
imported from there: deploying a winner loads its code into this process, as any
installed kernel library would. Ops are registered once per process and solution.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solforge.runtime.winners import Winner
from solforge.spec import Definition, DType, SpecError

NAMESPACE = "solforge"
_SCALAR_SCHEMA = {"float": "float", "int": "int", "bool": "bool"}
_lock = threading.Lock()
_ops: dict[str, KernelOp] = {}


@dataclass
class KernelOp:
    """A registered op: call it like the definition's reference, positionally or by keyword.

    Outside torch.compile, a positional call that needs no gradient runs the real
    implementation directly: torch's custom-op dispatch (dispatcher, autograd wrapper,
    dynamo's guard) cost about 18 us a call on the 2-vCPU development machine, an
    eighth of a 64-token RMSNorm (`benchmarks/kernelize_overhead.py`,
    docs/measurements.md). Under torch.compile, or when an input requires grad, the call
    goes through the registered op, so that tracing sees it and autograd says it has no
    derivative."""

    winner: Winner
    qualname: str  # e.g. "solforge::rmsnorm_h4096__1a2b3c4d"
    op: Any  # the torch.ops handle
    calls: int = 0  # how many times the real implementation ran (eager or compiled): proof it ran
    entry: Any = field(default=None, repr=False)
    real: Any = field(default=None, repr=False)  # the implementation the op runs (eager calls go straight to it)

    def __call__(self, *args, **kwargs):
        import torch

        if self.real is not None and not kwargs and not torch.compiler.is_compiling() and not (
                torch.is_grad_enabled() and any(torch.is_tensor(a) and a.requires_grad for a in args)):
            return self.real(*args)
        return self.op(*args, **kwargs)


def solution_digest(winner: Winner) -> str:
    """8 hex digits naming a winner's op: the one source hash (`source_hash`: what runs)
    with the definition it serves, since one kernel may serve two definitions."""
    from solforge.search.archive_schema import source_hash

    return hashlib.sha256(f"{source_hash(winner.solution)}\0{winner.definition.name}".encode()).hexdigest()[:8]


def _import_entry(winner: Winner, digest: str):
    """Write the solution's sources to the cache and import its entry function."""
    from solforge.cache import cache_root

    folder = cache_root() / "runtime" / digest
    folder.mkdir(parents=True, exist_ok=True)
    for src in winner.solution.sources:
        target = folder / src.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text() != src.content:
            target.write_text(src.content)
    entry_file = folder / winner.solution.spec.entry_file
    if entry_file.suffix != ".py":
        raise SpecError(f"{winner.source}: spec.entry_point: solforge kernelize loads Python entry points only "
                        f"(language {winner.solution.spec.language.value}, '{winner.solution.spec.entry_point}')")
    module_name = f"solforge_winner_{digest}"
    if module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        spec = importlib.util.spec_from_file_location(module_name, entry_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(folder))  # a multi-file solution imports its siblings
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - a winner that cannot load is the user's input error
            raise SpecError(f"{winner.source}: importing the solution raised {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        finally:
            sys.path.remove(str(folder))
        sys.modules[module_name] = module
    fn = getattr(module, winner.solution.spec.entry_function, None)
    if not callable(fn):
        raise SpecError(f"{winner.source}: spec.entry_point: no function '{winner.solution.spec.entry_function}'")
    return fn


def _schema(defn: Definition) -> str:
    args = []
    for name, spec in defn.inputs.items():
        if spec.shape is None:
            kind = "bool" if spec.dtype is DType.bool else ("float" if spec.dtype.is_floating else "int")
            args.append(f"{_SCALAR_SCHEMA[kind]} {name}")
        else:
            args.append(f"Tensor {name}")
    outs = ["Tensor"] * len(defn.outputs)
    ret = outs[0] if len(outs) == 1 else f"({', '.join(outs)})"
    return f"({', '.join(args)}) -> {ret}"


def var_axes_of(defn: Definition, tensors: dict[str, Any]) -> dict[str, int]:
    """The definition's var axes read off the input tensors' shapes (SpecError on a rank mismatch)."""
    values: dict[str, int] = {}
    for name, spec in defn.inputs.items():
        if spec.shape is None:
            continue
        t = tensors[name]
        if t.dim() != len(spec.shape):
            raise SpecError(f"definition '{defn.name}': input '{name}' has {t.dim()} dims, expected {len(spec.shape)}")
        for axis, size in zip(spec.shape, t.shape):
            if getattr(defn.axes[axis], "type", None) == "var":
                values.setdefault(axis, size)
    return values


def output_shapes(defn: Definition, tensors: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Each output's shape: const axes from the definition, var and expr axes from the inputs.
    Works on symbolic sizes too (under torch.compile)."""
    sizes: dict[str, Any] = {}
    for name, spec in defn.inputs.items():
        for axis, size in zip(spec.shape or (), tensors[name].shape if spec.shape else ()):
            sizes.setdefault(axis, size)
    for name, axis in defn.axes.items():
        if getattr(axis, "type", None) == "const":
            sizes.setdefault(name, axis.value)
    for name, axis in defn.axes.items():
        if getattr(axis, "type", None) == "expr" and name not in sizes:
            sizes[name] = eval(compile(axis.expression, "<axis>", "eval"), {"__builtins__": {}}, dict(sizes))  # noqa: S307 - axis arithmetic, parsed by spec
    return [tuple(sizes[a] for a in spec.shape or ()) for spec in defn.outputs.values()]


def kernel_op(winner: Winner) -> KernelOp:
    """The custom op of `winner`, registered on first use (see the module docstring).

    Raises SpecError when the solution cannot be imported or its entry point is missing.
    """
    import torch

    digest = solution_digest(winner)
    with _lock:
        if digest in _ops:
            return _ops[digest]
        defn = winner.definition
        entry = _import_entry(winner, digest)
        op_name = re.sub(r"[^A-Za-z0-9_]", "_", defn.name)[:60] + f"__{digest}"
        qualname = f"{NAMESPACE}::{op_name}"
        names = list(defn.inputs)
        out_dtypes = [spec.dtype.to_torch() for spec in defn.outputs.values()]
        dps = winner.solution.spec.destination_passing_style
        handle = KernelOp(winner, qualname, None, entry=entry)

        def real(*args):
            handle.calls += 1
            kwargs = {n: (a.contiguous() if torch.is_tensor(a) else a) for n, a in zip(names, args)}
            if dps:
                device = next(a.device for a in args if torch.is_tensor(a))
                outs = [torch.empty(s, dtype=dt, device=device)
                        for s, dt in zip(output_shapes(defn, kwargs), out_dtypes)]
                entry(**kwargs, **dict(zip(defn.outputs, outs)))
            else:
                result = entry(**kwargs)
                outs = list(result) if isinstance(result, (tuple, list)) else [result]
                outs = [o.clone() if any(o is a for a in args) else o for o in outs]  # an op must not alias
            return outs[0] if len(outs) == 1 else tuple(outs)

        def fake(*args):
            kwargs = dict(zip(names, args))
            device = next(a.device for a in args if torch.is_tensor(a))
            outs = [torch.empty(s, dtype=dt, device=device) for s, dt in zip(output_shapes(defn, kwargs), out_dtypes)]
            return outs[0] if len(outs) == 1 else tuple(outs)

        lib_op = torch.library.custom_op(qualname, real, mutates_args=(), schema=_schema(defn))
        lib_op.register_fake(fake)
        handle.op = getattr(getattr(torch.ops, NAMESPACE), op_name).default
        handle.real = real
        _ops[digest] = handle
        return handle
