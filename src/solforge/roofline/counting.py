"""Counting the work of one workload: tensor-core FLOPs by dtype, other FLOPs, bytes.

The FLOPs come from running the definition's reference once on META tensors (shapes
and dtypes, no storage) under a counting `TorchDispatchMode`, so a 32k-token attention
or an 8192^3 GEMM costs the same few milliseconds as a toy shape. Every aten op the
reference reaches is sorted into one of three kinds:

- **tensor-core ops** (matmul, conv, attention): the FLOP formulas PyTorch registers
  for `torch.utils.flop_counter.FlopCounterMode` (`2*M*N*K` for a matmul), keyed by the
  dtype of the operands. `aten._int_mm` (int8 x int8) is added with the matmul formula.
- **ops that do no arithmetic**, counted 0 (see `_NO_ARITHMETIC` and `_moves_data`):
  views (every op whose schema marks its output an alias, `OpOverload.is_view`: view,
  reshape's view, expand, permute, transpose, t, squeeze, unsqueeze, select, slice,
  split, unbind, diagonal, alias, detach, as_strided, unfold ...) and their `*_copy`
  forms (`torch.Tag.view_copy`); copies and dtype conversions; concatenation; gathers,
  repeats, flips, rolls and padding; creation ops (empty, zeros, ones, full, arange,
  random ...); scatters that overwrite without reducing. They move or reinterpret
  data; their cost is memory traffic, which compulsory bytes already bound.
- **every other op** (elementwise math, comparisons, selects, softmax, norms ...):
  one FLOP per output element, a lower bound on its SIMT work (a softmax costs several
  per element), which keeps SOL a lower bound on time. Reductions (`_REDUCTIONS`:
  sum, mean, prod, amax, amin, max, min, argmax, argmin, all, any, var, std, norm,
  logsumexp ...) count one per element of their first input instead (or of their
  output, if larger, as for the elementwise `max(a, b)`), since reducing n values
  takes n-1 operations, not one.

Bytes are not counted from the reference at all: they are the compulsory traffic of
the definition (every input read once, every output written once), whatever the
reference happens to touch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from solforge.spec import Definition, DType, SpecError, TensorSpec, Workload, eval_axis_expr
from solforge.spec.workload import ScalarInput

aten = torch.ops.aten


@dataclass(frozen=True)
class Work:
    """The work of one workload, as the roofline model needs it."""

    tensor_flops: dict[str, int]  # tensor-core FLOPs by operand dtype (DType.canonical names)
    other_flops: int  # FLOPs on the SIMT units (CUDA cores)
    bytes_moved: int  # compulsory DRAM bytes: each input read once, each output written once

    def __post_init__(self) -> None:
        negative = [k for k, v in self.tensor_flops.items() if v < 0]
        if negative or self.other_flops < 0 or self.bytes_moved < 0:
            raise ValueError(f"Work counts must be non-negative, got {self}")

    @property
    def total_flops(self) -> int:
        """Tensor-core plus other FLOPs."""
        return sum(self.tensor_flops.values()) + self.other_flops

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per compulsory byte; `math.inf` when FLOPs move no bytes (scalar-only
        inputs and outputs), 0.0 when there is neither."""
        if self.bytes_moved == 0:
            return math.inf if self.total_flops else 0.0
        return self.total_flops / self.bytes_moved


# Tensor-core FLOP formulas: PyTorch's own, plus the int8 matmul it lacks.
_TENSOR_CORE_FORMULAS = {**flop_registry, aten._int_mm: flop_registry[aten.mm]}
# Which positional argument holds the operand whose dtype keys the count (default 0):
# addmm and baddbmm take the bias first.
_OPERAND_INDEX = {aten.addmm: 1, aten.baddbmm: 1}

# Ops (by overload packet name) that move, reinterpret or create data without
# arithmetic, beyond the views that `OpOverload.is_view` already names.
_NO_ARITHMETIC = frozenset({
    # a view the schema does not mark as one, and bookkeeping
    "_unsafe_view", "lift_fresh", "resize_", "set_", "_reshape_alias",
    # copies and dtype conversions
    "clone", "copy", "copy_", "_copy_from", "_copy_from_and_resize", "_to_copy", "to",
    "contiguous", "lift_fresh_copy",
    # concatenation
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack",
    # gathers, repeats, reorders and padding
    "index", "_unsafe_index", "index_select", "gather", "take", "embedding", "repeat",
    "repeat_interleave", "tile", "flip", "roll", "constant_pad_nd",
    # pure overwrites (their reducing forms, scatter_add and friends, do arithmetic)
    "index_copy", "index_copy_", "masked_scatter", "masked_scatter_", "slice_scatter",
    "select_scatter", "diagonal_scatter", "as_strided_scatter",
    # creation
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty", "new_empty_strided",
    "zeros", "zeros_like", "new_zeros", "zero_", "ones", "ones_like", "new_ones", "full",
    "full_like", "new_full", "fill", "fill_", "scalar_tensor", "arange", "linspace",
    "logspace", "eye", "tril_indices", "triu_indices", "rand", "rand_like", "randn",
    "randn_like", "randint", "randint_like", "randperm", "normal", "normal_", "uniform_",
    "bernoulli", "bernoulli_",
})


# Ops (by overload packet name) that reduce over dimensions. `max` and `min` also have
# elementwise overloads, which the max() in the count handles.
_REDUCTIONS = frozenset({
    "sum", "nansum", "mean", "nanmean", "prod", "amax", "amin", "aminmax", "max", "min",
    "argmax", "argmin", "all", "any", "count_nonzero", "var", "std", "var_mean", "std_mean",
    "norm", "linalg_vector_norm", "logsumexp", "median", "nanmedian", "mode",
})


def _moves_data(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> bool:
    """True for an op that does no arithmetic (see the module docstring)."""
    name = func._overloadpacket.__name__
    if func.is_view or name in _NO_ARITHMETIC or torch.Tag.view_copy in func.tags:
        return True
    if name in ("scatter", "scatter_"):
        return func._overloadname in ("src", "value")  # the `reduce` overloads add or multiply
    if name in ("index_put", "index_put_", "_index_put_impl_"):
        accumulate = kwargs.get("accumulate", args[3] if len(args) > 3 else False)
        return not accumulate
    return False


def _dtype_name(dtype: torch.dtype) -> str:
    """The DType.canonical name of a torch dtype ('torch.bfloat16' -> 'bfloat16')."""
    name = str(dtype).removeprefix("torch.")
    return {"float4_e2m1fn_x2": "float4_e2m1"}.get(name, name)


def _numel(tree: object) -> int:
    leaves, _ = tree_flatten(tree)
    return sum(t.numel() for t in leaves if isinstance(t, torch.Tensor))


def _first_tensor(args: tuple) -> torch.Tensor | None:
    leaves, _ = tree_flatten(args)
    return next((t for t in leaves if isinstance(t, torch.Tensor)), None)


class _WorkCounterMode(TorchDispatchMode):
    """Sorts each aten op into tensor-core FLOPs, other FLOPs, or none."""

    def __init__(self) -> None:
        super().__init__()
        self.tensor_flops: dict[str, int] = {}
        self.other_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        # Under inference mode, composite ops (linear, matmul) reach this mode whole;
        # decompose them so their matmuls meet the formulas, as FlopCounterMode does.
        if packet not in _TENSOR_CORE_FORMULAS:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if packet in _TENSOR_CORE_FORMULAS:
            operand = args[_OPERAND_INDEX.get(packet, 0)]
            flops = _TENSOR_CORE_FORMULAS[packet](*args, **kwargs, out_val=out)
            if operand.dtype == getattr(torch, "float4_e2m1fn_x2", None):
                flops *= 2  # two fp4 values per stored element along K
            key = _dtype_name(operand.dtype)
            self.tensor_flops[key] = self.tensor_flops.get(key, 0) + int(flops)
        elif _moves_data(func, args, kwargs):
            pass
        elif packet.__name__ in _REDUCTIONS:
            first = _first_tensor(args)
            self.other_flops += max(first.numel() if first is not None else 0, _numel(out))
        else:
            self.other_flops += _numel(out)
        return out


def compulsory_bytes(definition: Definition, axes: dict[str, int]) -> int:
    """Bytes that any implementation must move: every input tensor read once and every
    output tensor written once, at the definition's dtypes (fp4 at half a byte, each
    tensor rounded up to a whole byte); scalars count 0.

    Raises KeyError where `axes` lacks an axis a shape names (use
    `definition.resolve_axes` first).
    """
    total = 0
    for spec in (*definition.inputs.values(), *definition.outputs.values()):
        if spec.shape is not None:
            numel = math.prod(definition.shape_of(spec, axes))
            total += math.ceil(numel * spec.dtype.itemsize_bits / 8)
    return total


def _where(definition: Definition) -> str:
    return f"definition '{definition.name}'"


def _formula(definition: Definition, field: str, expression: str, axes: dict[str, int]) -> int:
    where = f"{_where(definition)}: solforge.work.{field}"
    try:
        value = eval_axis_expr(expression, axes)
    except KeyError as exc:
        raise SpecError(f"{where}: unknown axis '{exc.args[0]}' in '{expression}'") from None
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    except (ArithmeticError, ValueError) as exc:
        raise SpecError(f"{where}: '{expression}' does not evaluate ({exc})") from None
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"{where}: expected a non-negative count, '{expression}' gives {value}")
    return round(value)


def _tensor_flops_from_formulas(
    definition: Definition, formulas: dict[str, str], axes: dict[str, int]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for dtype_name, expression in formulas.items():
        try:
            canonical = DType(dtype_name).canonical
        except ValueError:
            raise SpecError(
                f"{_where(definition)}: solforge.work.tensor_flops: unknown dtype '{dtype_name}' "
                f"(expected one of: {', '.join(d.value for d in DType)})"
            ) from None
        out[canonical] = out.get(canonical, 0) + _formula(definition, f"tensor_flops.{dtype_name}", expression, axes)
    return out


def _scalar_value(definition: Definition, workload: Workload, name: str, spec: TensorSpec) -> int | float | bool:
    given = workload.inputs.get(name)
    if isinstance(given, ScalarInput):
        return given.value
    if name in definition.solforge.input_generators:
        # Its value only shapes the counts where the reference uses it as a size; such a
        # definition should give the scalar in its workloads.
        if spec.dtype is DType.bool:
            return True
        return 1.0 if spec.dtype.is_floating else 1
    raise SpecError(
        f"workload {workload.uuid}: inputs.{name}: scalar input needs {{'type': 'scalar', 'value': ...}}"
    )


def _meta_inputs(definition: Definition, workload: Workload, axes: dict[str, int]) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    for name, spec in definition.inputs.items():
        if spec.shape is None:
            kwargs[name] = _scalar_value(definition, workload, name, spec)
        else:
            shape = definition.shape_of(spec, axes)  # (one size per axis name in spec.shape)
            kwargs[name] = torch.empty(shape, dtype=spec.dtype.to_torch(), device="meta")
    return kwargs


def _count_reference(definition: Definition, kwargs: dict[str, object], missing: str) -> _WorkCounterMode:
    """Run the reference's `run(**kwargs)` on meta tensors under the counting mode."""
    where = f"{_where(definition)}: reference"
    namespace: dict[str, object] = {"__name__": f"solforge_reference_{definition.name}"}
    try:
        code = compile(definition.reference, f"<reference of {definition.name}>", "exec")
        with torch.device("meta"):  # tensors the module makes at import land on meta too
            exec(code, namespace)
    except Exception as exc:  # the reference's own code: any failure is the definition's
        raise SpecError(f"{where}: does not load ({type(exc).__name__}: {_first_line(exc)})") from None
    run = namespace.get("run")
    if not callable(run):
        raise SpecError(f"{where}: defines no top-level function 'run'")
    counter = _WorkCounterMode()
    try:
        with torch.device("meta"), counter:
            run(**kwargs)
    except Exception as exc:
        raise SpecError(
            f"{where}: cannot run on meta tensors ({type(exc).__name__}: {_first_line(exc)}); "
            f"a data-dependent reference (indexing by values, nonzero, .item()) needs "
            f"solforge.work formulas for {missing}"
        ) from None
    return counter


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# Counted Work per (definition as JSON, axes, scalar values); counting is cheap, but the
# harness asks again for every solution of a definition.
_CACHE: dict[tuple, Work] = {}
_CACHE_SIZE = 1024


def count_work(definition: Definition, workload: Workload) -> Work:
    """Tensor-core FLOPs by dtype, other FLOPs and compulsory bytes of one workload.

    Axis sizes come from `definition.resolve_axes(workload.axes)`. Bytes are every input
    read once plus every output written once at the definition's dtypes (scalars 0).
    FLOPs come from running the reference's `run` once on meta tensors of those shapes
    under a counting dispatch mode (see the module docstring for what counts as what;
    matmul, conv and attention formulas are `torch.utils.flop_counter`'s, e.g.
    `2*M*N*K` for an (M, K) x (K, N) matmul). Scalar inputs get the workload's
    `scalar` value, or 1 (1.0, True) when the definition gives them a generator.

    `definition.solforge.work` formulas (axis expressions) replace the counted value
    field by field: `tensor_flops` (the whole dict, when the key is given, even as
    `{}`), `other_flops`, `bytes`. When both FLOP fields are given the reference is not
    run at all (bytes never need it).

    Raises SpecError (one line) when an axis is missing, a scalar input has no value, a
    formula does not evaluate, or the reference fails on meta tensors, as a
    data-dependent reference does (indexing by values, nonzero, .item()): such a
    definition needs `solforge.work` formulas for its FLOPs.
    """
    axes = definition.resolve_axes(workload.axes)
    formulas = definition.solforge.work
    given_tensor = formulas is not None and "tensor_flops" in formulas.model_fields_set
    given_other = formulas is not None and formulas.other_flops is not None
    given_bytes = formulas is not None and formulas.bytes is not None

    kwargs = {}
    if not (given_tensor and given_other):
        kwargs = _meta_inputs(definition, workload, axes)
    key = (
        definition.model_dump_json(),
        (given_tensor, given_other),  # an explicit `tensor_flops: {}` dumps as the default does
        tuple(sorted(axes.items())),
        tuple((k, v) for k, v in kwargs.items() if not isinstance(v, torch.Tensor)),
    )
    cached = _CACHE.get(key)
    if cached is not None:
        return Work(dict(cached.tensor_flops), cached.other_flops, cached.bytes_moved)

    if given_tensor and given_other:
        tensor_flops: dict[str, int] = {}
        other_flops = 0
    else:
        missing = " and ".join(
            f for f, given in (("tensor_flops", given_tensor), ("other_flops", given_other)) if not given
        )
        counter = _count_reference(definition, kwargs, missing)
        tensor_flops, other_flops = counter.tensor_flops, counter.other_flops

    if given_tensor:
        tensor_flops = _tensor_flops_from_formulas(definition, formulas.tensor_flops, axes)
    if given_other:
        other_flops = _formula(definition, "other_flops", formulas.other_flops, axes)
    if given_bytes:
        bytes_moved = _formula(definition, "bytes", formulas.bytes, axes)
    else:
        bytes_moved = compulsory_bytes(definition, axes)

    work = Work({k: v for k, v in tensor_flops.items() if v}, other_flops, bytes_moved)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = work
    return Work(dict(work.tensor_flops), work.other_flops, work.bytes_moved)
