"""Definition: what a kernel must compute, as the FlashInfer Trace schema writes it.

A Definition names its axes (`const` with a value, `var` set per workload, `expr`
computed from other axes), its input and output tensors (a shape is a list of axis
names, `null` for a scalar), and a PyTorch reference whose top-level `run` is the
mathematical specification. What solforge adds (tolerances, forbidden calls, FLOP and
byte formulas, input generators) lives under the `solforge` key, which other readers
of the schema ignore.
"""

from __future__ import annotations

import ast
import enum
import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from solforge.spec.errors import SpecError


class DType(str, enum.Enum):
    """Element types of the FlashInfer Trace schema, plus float64 and uint8."""

    float64 = "float64"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float8_e4m3fn = "float8_e4m3fn"
    float8_e4m3 = "float8_e4m3"  # older FlashInfer spelling of float8_e4m3fn
    float8_e5m2 = "float8_e5m2"
    float4_e2m1 = "float4_e2m1"
    int64 = "int64"
    int32 = "int32"
    int16 = "int16"
    int8 = "int8"
    uint8 = "uint8"
    bool = "bool"

    @property
    def is_floating(self) -> bool:
        return self.value.startswith("float") or self.value == "bfloat16"

    @property
    def canonical(self) -> str:
        """The name used for peaks and tolerances (`float8_e4m3` reads as `float8_e4m3fn`)."""
        return "float8_e4m3fn" if self is DType.float8_e4m3 else self.value

    @property
    def itemsize_bits(self) -> int:
        return _ITEMSIZE_BITS[self.canonical]

    def to_torch(self):  # -> torch.dtype
        """The torch dtype; raises SpecError where this torch build lacks it."""
        import torch

        name = {"float8_e4m3fn": "float8_e4m3fn", "float4_e2m1": "float4_e2m1fn_x2"}.get(
            self.canonical, self.canonical
        )
        dt = getattr(torch, name, None)
        if dt is None:
            raise SpecError(f"dtype '{self.value}' is not available in torch {torch.__version__}")
        return dt


_ITEMSIZE_BITS = {
    "float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "float8_e4m3fn": 8,
    "float8_e5m2": 8, "float4_e2m1": 4, "int64": 64, "int32": 32, "int16": 16, "int8": 8,
    "uint8": 8, "bool": 8,
}


class _Tagged(BaseModel):
    """A member of a union told apart by `type`: the tag is always written, even when it
    was left to its default, so that what is written reads back as the same member."""

    def model_post_init(self, context: Any, /) -> None:
        self.__pydantic_fields_set__.add("type")


class AxisConst(_Tagged):
    """An axis whose size is fixed by the definition (e.g. a model's hidden size)."""

    type: Literal["const"] = "const"
    value: int = Field(gt=0, description="The axis size.")
    description: str | None = None


class AxisVar(_Tagged):
    """An axis whose size each workload sets (e.g. the number of tokens)."""

    type: Literal["var"] = "var"
    parent: str | None = None
    description: str | None = None


class AxisExpr(_Tagged):
    """An axis computed from other axes, e.g. `num_qo_heads // num_kv_heads`."""

    type: Literal["expr"] = "expr"
    expression: str = Field(description="Integer arithmetic over other axis names.")
    description: str | None = None


Axis = Annotated[Union[AxisConst, AxisVar, AxisExpr], Field(discriminator="type")]


class TensorSpec(BaseModel):
    """One input or output: its shape as axis names (None for a scalar) and its dtype."""

    shape: list[str] | None
    dtype: DType
    description: str | None = None


class Tolerance(BaseModel):
    """Closeness required of an output: |out - ref| <= atol + rtol * |ref| on at least
    `required_matched_ratio` of the elements (names as FlashInfer Trace and SOL-ExecBench use)."""

    atol: float = Field(ge=0.0)
    rtol: float = Field(ge=0.0)
    required_matched_ratio: float = Field(default=1.0, gt=0.0, le=1.0)


class WorkFormulas(BaseModel):
    """Hand formulas over the axes that replace counted work, for references that do
    wasteful work (e.g. a causal mask applied after a full QK^T)."""

    tensor_flops: dict[str, str] = Field(
        default_factory=dict, description="Tensor-core FLOPs by operand dtype, e.g. {'bfloat16': '2*M*N*K'}."
    )
    other_flops: str | None = Field(default=None, description="FLOPs on the SIMT units.")
    bytes: str | None = Field(default=None, description="Compulsory DRAM bytes moved.")


class InputGenerator(BaseModel):
    """A seeded custom generator for a structured input (page tables, routing indices,
    sequence lengths). `args` values may be axis expressions given as strings."""

    generator: str
    args: dict[str, Any] = Field(default_factory=dict)


class InputsGenerator(BaseModel):
    """A generator that makes every input of a workload at once, where the values of one
    input depend on the others' or on how the source benchmark draws them (a KernelBench
    file's own `get_inputs()`, softmaxed probabilities, +-1 targets, a model's initial
    weights). The harness's value distributions (normal, large, tiny, mixed) are then not
    used: correctness trials differ only in the seed.

    `generator` names one of the harness's whole-input generators
    (`solforge.bench.inputs.INPUTS_GENERATORS`); `reference_function` calls the function
    `args.function` of the definition's reference as
    `fn(axes_and_scalars: dict[str, int | float | bool], device: torch.device)
    -> dict[str, Tensor | number]` under torch's global RNG seeded by the harness (the
    contract of SOL-ExecBench's `custom_inputs_entrypoint`). A workload's `scalar` and
    `safetensors` inputs keep their values; the generator makes the rest.
    """

    generator: str = Field(description="A whole-input generator, e.g. 'reference_function'.")
    args: dict[str, Any] = Field(default_factory=dict, description="The generator's arguments, e.g. {'function': 'kernelbench_get_inputs'}.")
    description: str | None = Field(default=None, description="What the values are, for a reader (where they come from).")


class DefinitionExtension(BaseModel):
    """solforge's fields on a Definition, under the `solforge` key."""

    model_config = ConfigDict(extra="forbid")

    tolerances: dict[str, Tolerance] = Field(
        default_factory=dict, description="Per output dtype; overrides solforge's defaults."
    )
    forbidden_calls: list[str] = Field(
        default_factory=list,
        description="Dotted names a solution may not call, e.g. 'torch.nn.functional.scaled_dot_product_attention'.",
    )
    work: WorkFormulas | None = None
    input_generators: dict[str, InputGenerator] = Field(default_factory=dict)
    inputs_generator: InputsGenerator | None = Field(
        default=None,
        description="Makes every input at once (see InputsGenerator); per-input `input_generators` still "
        "win for the inputs they name.",
    )


class Definition(BaseModel):
    """A kernel problem in the FlashInfer Trace schema.

    The reference's `run` takes the inputs as keyword arguments, named as in `inputs`,
    and returns the outputs (a tensor, or a tuple in the order of `outputs`).
    """

    name: str = Field(min_length=1)
    op_type: str = Field(min_length=1)
    axes: dict[str, Axis]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    reference: str
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    constraints: list[str] = Field(default_factory=list)
    solforge: DefinitionExtension = Field(default_factory=DefinitionExtension)

    # -- axes -------------------------------------------------------------------------
    def var_axes(self) -> list[str]:
        return [n for n, a in self.axes.items() if isinstance(a, AxisVar)]

    def resolve_axes(self, values: dict[str, int]) -> dict[str, int]:
        """All axis sizes, given the var axes' `values`.

        Raises SpecError when a var axis is missing or an expression does not evaluate
        to a positive integer.
        """
        out: dict[str, int] = {}
        for name, axis in self.axes.items():
            if isinstance(axis, AxisConst):
                out[name] = axis.value
            elif isinstance(axis, AxisVar):
                if name not in values:
                    raise SpecError(f"axes.{name}: the workload gives no value for var axis '{name}'")
                out[name] = int(values[name])
        pending = {n: a for n, a in self.axes.items() if isinstance(a, AxisExpr)}
        for _ in range(len(pending) + 1):
            for name, axis in list(pending.items()):
                try:
                    out[name] = int(eval_axis_expr(axis.expression, out))
                    del pending[name]
                except KeyError:
                    continue
        if pending:
            name = next(iter(pending))
            raise SpecError(f"axes.{name}: expression '{pending[name].expression}' names an unknown axis")
        return out

    def shape_of(self, tensor: TensorSpec, axes: dict[str, int]) -> tuple[int, ...]:
        """Concrete shape of `tensor` under resolved `axes` (empty for a scalar)."""
        return tuple(axes[a] for a in tensor.shape or ())

    # -- solforge extension helpers --------------------------------------------------------
    def tolerance_for(self, dtype: DType) -> Tolerance:
        """The tolerance for outputs of `dtype`: the definition's own, else the default."""
        return self.solforge.tolerances.get(dtype.canonical) or DEFAULT_TOLERANCES[dtype.canonical]


# Defaults per output dtype. The float rows allow the rounding of the output itself
# (half an ulp: 2^-8 for bf16, 2^-11 for fp16, 2^-4 for e4m3) plus a few ulps of
# reassociation in reductions; integers and bools must match exactly.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-10, rtol=1e-10),
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
    "float16": Tolerance(atol=2e-3, rtol=2e-3, required_matched_ratio=0.999),
    "bfloat16": Tolerance(atol=1.6e-2, rtol=1.6e-2, required_matched_ratio=0.999),
    "float8_e4m3fn": Tolerance(atol=1.25e-1, rtol=1.25e-1, required_matched_ratio=0.99),
    "float8_e5m2": Tolerance(atol=2.5e-1, rtol=2.5e-1, required_matched_ratio=0.99),
    "float4_e2m1": Tolerance(atol=5e-1, rtol=5e-1, required_matched_ratio=0.99),
    **{k: Tolerance(atol=0.0, rtol=0.0) for k in ("int64", "int32", "int16", "int8", "uint8", "bool")},
}

_ALLOWED_EXPR_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Call,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
)
_EXPR_FUNCS = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor, "log2": math.log2}


def eval_axis_expr(expression: str, axes: dict[str, int | float]) -> float:
    """Evaluate integer arithmetic over axis names (`+ - * / // % **`, min, max, ceil,
    floor, log2). Raises KeyError for an unknown name and SpecError for anything else."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"'{expression}' is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_EXPR_NODES):
            raise SpecError(f"'{expression}': {type(node).__name__} is not allowed in an axis expression")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _EXPR_FUNCS):
            raise SpecError(f"'{expression}': only {sorted(_EXPR_FUNCS)} may be called")
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_EXPR_FUNCS)
    missing = names - set(axes)
    if missing:
        raise KeyError(sorted(missing)[0])
    return eval(compile(tree, "<axis-expr>", "eval"), {"__builtins__": {}, **_EXPR_FUNCS}, dict(axes))
