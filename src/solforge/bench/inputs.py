"""Inputs of a workload: seeded random values, custom generators, scalars and stored tensors.

Every call of `make_inputs` allocates new tensors, so two calls never share an address.
Random floating-point inputs follow one of four value distributions, cycled across the
correctness trials so that a kernel is checked beyond the standard normal:

- `normal`: N(0, 1);
- `large`: N(0, 1) scaled up to `min(1e3, max**(1/4))` of the dtype, so that sums of
  squares over a row stay finite in the dtype (16 for float16, 1000 for bfloat16);
- `tiny`: N(0, 1) scaled down to `max(1e-3, sqrt(tiny))`, above the dtype's smallest
  normal number (so the values are not flushed to zero);
- `mixed`: each row (all but the last dimension) scaled by its own factor, log-uniform
  between the `tiny` and `large` scales: several orders of magnitude in one tensor.

fp8 and other narrow float inputs are drawn in float32, clamped to the dtype's finite
range, then cast (a cast past the range gives NaN for e4m3fn, which has no infinity).

A definition with a whole-input generator (`solforge.inputs_generator`, see
`INPUTS_GENERATORS`) gets its random inputs from it instead: the values are what the
source benchmark draws (a KernelBench file's `get_inputs()`), and the distribution is
ignored; trials differ by seed only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solforge.spec import Definition, RandomInput, SafetensorsInput, ScalarInput, SpecError, Workload, eval_axis_expr

if TYPE_CHECKING:
    import torch

DISTRIBUTIONS: tuple[str, ...] = ("normal", "large", "tiny", "mixed")

# name -> (required args, optional args with defaults)
GENERATORS: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
    "randint": (("low", "high"), {}),
    "uniform": (("low", "high"), {}),
    "normal": ((), {"mean": 0.0, "std": 1.0}),
    "arange": ((), {"start": 0}),
    "permutation": ((), {}),
    "unique_randint": (("high",), {}),
    "sorted_lengths": (("low", "high"), {}),
    # suite part B: paged KV caches and MoE groups (see `_SUITE_B_GENERATORS`)
    "page_table": (("num_pages",), {}),
    "mirrored_lengths": (("low", "high"), {}),
    "group_offsets": (("total",), {}),
    # suite part A: cross-entropy labels and sampling noise (see `_SUITE_A_GENERATORS`)
    "labels": (("high",), {"ignore_fraction": 0.0, "ignore_index": -100}),
    "exponential": ((), {"rate": 1.0}),
}

# Integer inputs without a generator get small non-negative values, valid as int8 and
# as indices into any axis of at least 128; structured ints need a generator.
_RANDOM_INT_HIGH = 128
# unique_randint draws `rows x high` uniforms per chunk; this bounds a chunk's floats.
_UNIQUE_CHUNK_ELEMENTS = 1 << 24


def _scales(dtype: torch.dtype) -> tuple[float, float]:
    """(tiny, large) magnitudes for `dtype`; see the module docstring."""
    import torch

    info = torch.finfo(dtype)
    return max(1e-3, math.sqrt(info.tiny)), min(1e3, info.max ** 0.25)


def is_packed(dtype: torch.dtype) -> bool:
    """Whether `dtype` packs two values per byte (float4_e2m1fn_x2)."""
    import torch

    return getattr(torch, "float4_e2m1fn_x2", None) is dtype


def cast_clamped(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`values` (floating point) as `dtype`, clamped to the finite range of a narrower
    float dtype first (past its range, e4m3fn gives NaN and float16 infinity)."""
    import torch

    if values.dtype == dtype:
        return values
    if dtype.is_floating_point and torch.finfo(dtype).max < torch.finfo(values.dtype).max:
        bound = torch.finfo(dtype).max
        values = values.clamp(-bound, bound)
    return values.to(dtype)


def random_tensor(
    shape: tuple[int, ...], dtype: torch.dtype, distribution: str, gen: torch.Generator, device: str
) -> torch.Tensor:
    """Fresh random values of `shape` and `dtype` on `device`, drawn from `gen`.

    Floating dtypes follow `distribution` (one of DISTRIBUTIONS; see the module
    docstring); integers are uniform in [0, 128); bools are fair coin flips; packed fp4
    gets uniform random bytes. Raises SpecError for an unknown distribution.
    """
    import torch

    if distribution not in DISTRIBUTIONS:
        raise SpecError(f"distribution '{distribution}': expected one of {', '.join(DISTRIBUTIONS)}")
    if is_packed(dtype):
        return torch.randint(0, 256, shape, generator=gen, device=device, dtype=torch.uint8).view(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen, device=device) == 1
    if not dtype.is_floating_point:
        return torch.randint(0, _RANDOM_INT_HIGH, shape, generator=gen, device=device, dtype=torch.int64).to(dtype)
    work_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    values = torch.randn(shape, generator=gen, device=device, dtype=work_dtype)
    tiny, large = _scales(dtype)
    if distribution == "large":
        values *= large
    elif distribution == "tiny":
        values *= tiny
    elif distribution == "mixed":
        rows = shape[:-1] + (1,) if len(shape) > 1 else shape
        exponent = torch.rand(rows, generator=gen, device=device, dtype=work_dtype)
        values *= torch.exp(math.log(tiny) + exponent * (math.log(large) - math.log(tiny)))
    return cast_clamped(values, dtype)


def generate(
    name: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    args: Mapping[str, Any],
    gen: torch.Generator,
    device: str,
) -> torch.Tensor:
    """Values of one input from the custom generator `name`, seeded by `gen`.

    `args` are numbers (axis expressions already resolved). The generators:
    `randint(low, high)`: uniform ints in [low, high); `uniform(low, high)`: uniform
    floats in [low, high); `normal(mean=0, std=1)`; `arange(start=0)`: start, start+1,
    ... along the last dim, repeated over the others; `permutation()`: each row (last
    dim) a permutation of range(shape[-1]); `unique_randint(high)`: each row distinct
    ints in [0, high), in random order; `sorted_lengths(low, high)`: a 1-D tensor of
    ints in [low, high), sorted descending (sequence lengths). `page_table(num_pages)`,
    `mirrored_lengths(low, high)` and `group_offsets(total)`: see their functions below.
    `labels(high, ignore_fraction=0, ignore_index=-100)` and `exponential(rate=1)`: see
    theirs, further below.
    Returns a tensor of `shape` and `dtype` on `device`. Raises SpecError for an unknown
    generator, missing or unknown args, or a shape the generator cannot fill.
    """
    import torch

    if name not in GENERATORS:
        raise SpecError(f"generator '{name}': unknown (expected one of {', '.join(GENERATORS)})")
    required, optional = GENERATORS[name]
    missing = [a for a in required if a not in args]
    unknown = [a for a in args if a not in required and a not in optional]
    if missing or unknown:
        what = f"missing {missing}" if missing else f"unknown {unknown}"
        raise SpecError(f"generator '{name}': args {what} (takes {list(required) + list(optional)})")
    a = {**optional, **args}
    if name in _SUITE_B_GENERATORS:  # suite part B
        return _SUITE_B_GENERATORS[name](tuple(shape), a, gen, device).to(dtype)
    if name in _SUITE_A_GENERATORS:  # suite part A
        values = _SUITE_A_GENERATORS[name](tuple(shape), a, gen, device)
        return cast_clamped(values, dtype) if values.dtype.is_floating_point else values.to(dtype)
    if name in ("arange", "permutation", "unique_randint") and not shape:
        raise SpecError(f"generator '{name}': needs a tensor of at least one dimension, got a scalar")
    if name == "sorted_lengths" and len(shape) != 1:
        raise SpecError(f"generator 'sorted_lengths': needs a 1-D tensor, got shape {tuple(shape)}")
    long = dict(generator=gen, device=device, dtype=torch.int64)
    if name == "randint" or name == "sorted_lengths":
        low, high = int(a["low"]), int(a["high"])
        if high <= low:
            raise SpecError(f"generator '{name}': needs low < high, got low={low}, high={high}")
        values = torch.randint(low, high, shape, **long)
        if name == "sorted_lengths":
            values = values.sort(descending=True).values
    elif name == "uniform":
        work = torch.float64 if dtype == torch.float64 else torch.float32
        values = float(a["low"]) + (float(a["high"]) - float(a["low"])) * torch.rand(
            shape, generator=gen, device=device, dtype=work
        )
    elif name == "normal":
        work = torch.float64 if dtype == torch.float64 else torch.float32
        values = float(a["mean"]) + float(a["std"]) * torch.randn(shape, generator=gen, device=device, dtype=work)
    elif name == "arange":
        start = a["start"]
        row = torch.arange(start, start + shape[-1], device=device)
        values = row.expand(shape).contiguous()
    elif name == "permutation":
        values = torch.rand(shape, generator=gen, device=device).argsort(dim=-1)
    else:  # unique_randint
        high, n = int(a["high"]), shape[-1]
        if n > high:
            raise SpecError(f"generator 'unique_randint': {n} distinct values per row need high >= {n}, got {high}")
        rows = math.prod(shape[:-1])
        chunk = max(1, _UNIQUE_CHUNK_ELEMENTS // high)
        parts = [
            torch.rand((min(chunk, rows - r), high), generator=gen, device=device).topk(n, dim=-1).indices
            for r in range(0, rows, chunk)
        ]
        values = (torch.cat(parts) if parts else torch.empty((0, n), dtype=torch.int64, device=device)).view(shape)
    return cast_clamped(values, dtype) if values.dtype.is_floating_point else values.to(dtype)


# -- suite part B: structured inputs of paged-attention and MoE problems ------------------
# Each takes (shape, args, gen, device) and returns int64 values; `generate` casts them.


def _page_table(shape: tuple[int, ...], args: Mapping[str, Any], gen: torch.Generator, device: str) -> torch.Tensor:
    """Page ids of a paged KV cache: distinct across the whole tensor (no two sequences
    share a page), in random order, drawn from [0, num_pages). A table of B rows of P pages
    needs num_pages >= B * P."""
    import torch

    num_pages, n = int(args["num_pages"]), math.prod(shape)
    if n > num_pages:
        raise SpecError(f"generator 'page_table': {n} distinct pages need num_pages >= {n}, got {num_pages}")
    return torch.randperm(num_pages, generator=gen, device=device)[:n].view(shape)


def _mirrored_lengths(
    shape: tuple[int, ...], args: Mapping[str, Any], gen: torch.Generator, device: str
) -> torch.Tensor:
    """1-D sequence lengths in [low, high] (both included), sorted descending, drawn in
    pairs (x, low + high - x), plus (low + high) // 2 when the count is odd: their sum is
    (n // 2) * (low + high) + (n % 2) * ((low + high) // 2) whatever the seed, so work
    formulas over the axes can count the tokens a varying-length batch holds."""
    import torch

    low, high = int(args["low"]), int(args["high"])
    if len(shape) != 1:
        raise SpecError(f"generator 'mirrored_lengths': needs a 1-D tensor, got shape {shape}")
    if not 0 <= low <= high:
        raise SpecError(f"generator 'mirrored_lengths': needs 0 <= low <= high, got low={low}, high={high}")
    n = shape[0]
    first = torch.randint(low, high + 1, (n // 2,), generator=gen, device=device)
    middle = torch.full((n % 2,), (low + high) // 2, dtype=torch.int64, device=device)
    return torch.cat([first, low + high - first, middle]).sort(descending=True).values


def _group_offsets(shape: tuple[int, ...], args: Mapping[str, Any], gen: torch.Generator, device: str) -> torch.Tensor:
    """Offsets (G + 1,) of `total` rows sorted into G groups (MoE experts): offsets[0] = 0,
    offsets[G] = total, non-decreasing; group g holds rows offsets[g] .. offsets[g + 1] - 1.
    Exactly min(G, total) groups, chosen at random, are non-empty, so formulas can count the
    expert weights a grouped GEMM must read; the rows past one per such group are spread
    over them uniformly at random (a balanced router's load)."""
    import torch

    total = int(args["total"])
    if len(shape) != 1 or shape[0] < 2:
        raise SpecError(f"generator 'group_offsets': needs a 1-D tensor of G + 1 >= 2 offsets, got shape {shape}")
    if total < 0:
        raise SpecError(f"generator 'group_offsets': needs total >= 0, got {total}")
    groups = shape[0] - 1
    busy = min(groups, total)
    chosen = torch.randperm(groups, generator=gen, device=device)[:busy]
    extra = torch.randint(0, max(busy, 1), (total - busy,), generator=gen, device=device)
    counts = torch.zeros(groups, dtype=torch.int64, device=device)
    counts[chosen] = 1 + torch.bincount(extra, minlength=busy)[:busy]
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


_SUITE_B_GENERATORS = {
    "page_table": _page_table,
    "mirrored_lengths": _mirrored_lengths,
    "group_offsets": _group_offsets,
}


# -- suite part A: labels of language-model training and the randomness of samplers ------
# Each takes (shape, args, gen, device) and returns int64 or float64 values; `generate`
# casts them.


def _labels(shape: tuple[int, ...], args: Mapping[str, Any], gen: torch.Generator, device: str) -> torch.Tensor:
    """Next-token labels: uniform ints in [0, high), each replaced by `ignore_index` with
    probability `ignore_fraction` (prompt and padding tokens, which torch's cross_entropy
    skips when they carry its ignore_index, -100)."""
    import torch

    high, fraction = int(args["high"]), float(args["ignore_fraction"])
    if high <= 0:
        raise SpecError(f"generator 'labels': needs high > 0, got {high}")
    if not 0.0 <= fraction <= 1.0:
        raise SpecError(f"generator 'labels': needs 0 <= ignore_fraction <= 1, got {fraction}")
    values = torch.randint(0, high, shape, generator=gen, device=device, dtype=torch.int64)
    ignored = torch.rand(shape, generator=gen, device=device, dtype=torch.float64) < fraction
    return values.masked_fill(ignored, int(args["ignore_index"]))


def _exponential(shape: tuple[int, ...], args: Mapping[str, Any], gen: torch.Generator, device: str) -> torch.Tensor:
    """Exp(rate) draws, -log(U) / rate with U uniform, strictly positive: U is drawn in
    float64 in [2^-53, 1), so the values lie in (0, 36.8 / rate] and stay positive after a
    cast to float32 (a sampler divides by them: the exponential race argmax(p / E))."""
    import torch

    rate = float(args["rate"])
    if not rate > 0.0:
        raise SpecError(f"generator 'exponential': needs rate > 0, got {rate}")
    u = torch.rand(shape, generator=gen, device=device, dtype=torch.float64).clamp_min(2.0 ** -53)
    return -torch.log(u) / rate


_SUITE_A_GENERATORS = {
    "labels": _labels,
    "exponential": _exponential,
}


# -- whole-input generators: every input at once --------------------------------------
# name -> (required args, optional args with defaults), as GENERATORS.
INPUTS_GENERATORS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "reference_function": (("function",), {}),
}

# (definition name, hash of its reference) -> the reference executed once per process.
_REFERENCE_NAMESPACES: dict[tuple[str, int], dict[str, Any]] = {}


def _reference_namespace(definition: Definition) -> dict[str, Any]:
    key = (definition.name, hash(definition.reference))
    namespace = _REFERENCE_NAMESPACES.get(key)
    if namespace is None:
        namespace = {"__name__": f"solforge_inputs_{definition.name}"}
        try:
            exec(compile(definition.reference, f"<reference {definition.name}>", "exec"), namespace)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise SpecError(f"reference: does not load ({type(exc).__name__}: {first})") from None
        _REFERENCE_NAMESPACES[key] = namespace
    return namespace


def generate_all(
    definition: Definition, axes_and_scalars: dict[str, Any], seed: int, device: str
) -> dict[str, Any]:
    """Every input from the definition's whole-input generator, seeded by `seed`.

    `reference_function(function)`: the reference's top-level `function` called as
    `function(axes_and_scalars, torch.device(device))` with torch's global RNG (and, on a
    GPU, that device's) forked and seeded with `seed`, so the caller's RNG is untouched and
    the same seed gives the same values (the contract of SOL-ExecBench's
    `custom_inputs_entrypoint`). Tensors are moved to `device`. Returns input name ->
    tensor or Python number. Raises SpecError for an unknown generator, bad args, a
    function that raises, or that returns no dict.
    """
    import torch

    spec = definition.solforge.inputs_generator
    assert spec is not None
    if spec.generator not in INPUTS_GENERATORS:
        raise SpecError(
            f"solforge.inputs_generator.generator: unknown '{spec.generator}' "
            f"(expected one of {', '.join(INPUTS_GENERATORS)})"
        )
    required, optional = INPUTS_GENERATORS[spec.generator]
    missing = [a for a in required if a not in spec.args]
    unknown = [a for a in spec.args if a not in required and a not in optional]
    if missing or unknown:
        what = f"missing {missing}" if missing else f"unknown {unknown}"
        raise SpecError(f"solforge.inputs_generator.args: {what} (takes {list(required) + list(optional)})")
    name = spec.args["function"]
    fn = _reference_namespace(definition).get(name)
    if not callable(fn):
        raise SpecError(f"solforge.inputs_generator.args.function: the reference defines no function '{name}'")
    target = torch.device(device)
    devices = [target.index if target.index is not None else torch.cuda.current_device()] if target.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            values = fn(dict(axes_and_scalars), target)
    except SpecError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise SpecError(f"solforge.inputs_generator: {name}() raised {type(exc).__name__}: {first}") from None
    if not isinstance(values, Mapping):
        raise SpecError(f"solforge.inputs_generator: {name}() returned a {type(values).__name__}, expected a dict")
    return {k: v.to(target) if isinstance(v, torch.Tensor) else v for k, v in values.items()}


def _check_generated(name: str, value: Any, shape: tuple[int, ...], dtype: torch.dtype, scalar: bool) -> Any:
    """`value` as the input `name` needs it; raises SpecError when its shape or dtype differ."""
    import torch

    if scalar:
        return value.item() if isinstance(value, torch.Tensor) else value
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or value.dtype != dtype:
        got = (tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else type(value).__name__
        raise SpecError(f"inputs.{name}: the inputs generator made {got}, the definition expects {(shape, dtype)}")
    return value.contiguous()


def _resolve_args(input_name: str, args: Mapping[str, Any], axes: dict[str, int]) -> dict[str, Any]:
    """Generator args with axis expressions (strings) evaluated against `axes`."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, str):
            try:
                value = eval_axis_expr(value, axes)
            except KeyError as exc:
                raise SpecError(
                    f"solforge.input_generators.{input_name}.args.{key}: unknown axis '{exc.args[0]}'"
                ) from None
            except (SpecError, ZeroDivisionError, ValueError) as exc:
                raise SpecError(f"solforge.input_generators.{input_name}.args.{key}: {exc}") from None
            value = int(value) if float(value).is_integer() else value
        out[key] = value
    return out


def _load_safetensors(
    name: str, spec: SafetensorsInput, shape: tuple[int, ...], dtype: torch.dtype, device: str, root: Path | None
) -> torch.Tensor:
    from safetensors import safe_open

    field = f"workload.inputs.{name}"
    if root is None:
        raise SpecError(f"{field}: a safetensors input needs a dataset root (BenchConfig.dataset_root)")
    path = Path(root) / spec.path
    if not path.is_file():
        raise SpecError(f"{field}.path: no such file {path}")
    with safe_open(str(path), framework="pt", device=device) as f:
        if spec.tensor_key not in f.keys():
            raise SpecError(f"{field}.tensor_key: '{spec.tensor_key}' is not in {path}")
        tensor = f.get_tensor(spec.tensor_key)
    if tuple(tensor.shape) != shape or tensor.dtype != dtype:
        raise SpecError(
            f"{field}: {path}['{spec.tensor_key}'] is {tuple(tensor.shape)} {tensor.dtype}, "
            f"the definition expects {shape} {dtype}"
        )
    return tensor


def make_inputs(
    definition: Definition,
    workload: Workload,
    axes: dict[str, int],
    seed: int,
    distribution: str,
    device: str,
    dataset_root: Path | None,
) -> dict[str, torch.Tensor | int | float | bool]:
    """Every input of `workload`, keyed by the definition's input names.

    `axes` are the resolved axis sizes (`definition.resolve_axes(workload.axes)`).
    A `random` input (or an input the workload does not name) takes the definition's
    generator when it has one, else its whole-input generator when it has one
    (`generate_all`; `distribution` is then ignored), else values from `distribution`;
    a `scalar` input passes its value; a `safetensors` input is loaded from
    `dataset_root / path`. A scalar input (shape null) from a generator is returned as a
    Python number. Same `seed`, same values; a new call always allocates new tensors.
    Raises SpecError naming the workload and input for anything it cannot make.
    """
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    generators = definition.solforge.input_generators
    whole: dict[str, Any] | None = None
    if definition.solforge.inputs_generator is not None:
        drawn = [n for n in definition.inputs
                 if isinstance(workload.inputs.get(n, RandomInput()), RandomInput) and n not in generators]
        if drawn:
            scalars = {n: s.value for n, s in workload.inputs.items() if isinstance(s, ScalarInput)}
            try:
                whole = generate_all(definition, {**axes, **scalars}, seed, device)
            except SpecError as exc:
                raise SpecError(f"workload {workload.uuid}: {exc}") from None
            absent = [n for n in drawn if n not in whole]
            if absent:
                raise SpecError(f"workload {workload.uuid}: inputs.{absent[0]}: the inputs generator made no such input")
    out: dict[str, Any] = {}
    for name, tensor_spec in definition.inputs.items():
        spec = workload.inputs.get(name, RandomInput())
        shape = definition.shape_of(tensor_spec, axes)
        dtype = tensor_spec.dtype.to_torch()
        if isinstance(spec, ScalarInput):
            out[name] = spec.value
        elif isinstance(spec, SafetensorsInput):
            out[name] = _load_safetensors(name, spec, shape, dtype, device, dataset_root)
        elif name in generators:
            g = generators[name]
            try:
                value = generate(g.generator, shape, dtype, _resolve_args(name, g.args, axes), gen, device)
            except SpecError as exc:
                raise SpecError(f"workload {workload.uuid}: inputs.{name}: {exc}") from None
            out[name] = value.item() if tensor_spec.shape is None else value
        elif whole is not None:
            try:
                out[name] = _check_generated(name, whole[name], shape, dtype, tensor_spec.shape is None)
            except SpecError as exc:
                raise SpecError(f"workload {workload.uuid}: {exc}") from None
        elif tensor_spec.shape is None:
            raise SpecError(f"workload {workload.uuid}: inputs.{name}: a scalar input needs a 'scalar' value")
        else:
            out[name] = random_tensor(shape, dtype, distribution, gen, device)
    return out
