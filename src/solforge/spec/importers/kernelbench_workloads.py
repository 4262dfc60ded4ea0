"""Workloads of an imported KernelBench problem, and the checks that they run.

A KernelBench file has one size, often gigabytes (the median level-1 problem moves
4.3 GB). Beside that workload, two are derived by shrinking every var axis by the same
power of two (not below `MIN_SIZE`, or the file's value when smaller, unless nothing at
that floor fits the budget; then down to 1), and when that is not enough, one axis at a
time (`_candidates`):

- **search**: the largest shrink whose compulsory bytes and counted FLOPs fit
  `SEARCH_BUDGET`, small enough that a CPU checks it in seconds;
- **smoke**: the same within `SMOKE_BUDGET`, flagged `smoke` (CPU-sized).

A shrink is kept only when the generated reference runs on meta tensors of those sizes
and gives the outputs the definition declares, so a size the problem's constraints
forbid (a convolution smaller than its kernel, a stride that no longer divides) is never
chosen. When search is smaller than the file, the file's workload is held out (the
final gate at the real size); with no var axis it is the search workload itself.

`check_draws` then runs the reference on the CPU at the smallest derived size, twice,
on values from the file's own `get_inputs()` under two seeds: an output whose shape
changes between the draws (data-dependent: `nonzero`, `unique`, masking) is not
importable, and NaN or inf in the reference's output is noted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from solforge.spec.definition import Definition
from solforge.spec.importers.kernelbench_code import INPUTS_FUNCTION
from solforge.spec.importers.kernelbench_run import DeviceScope, Unsupported, one_line
from solforge.spec.workload import RandomInput, SafetensorsInput, ScalarInput, Workload, WorkloadExtension


@dataclass(frozen=True)
class Budget:
    """The most one derived workload may move and compute."""

    bytes_moved: int  # compulsory bytes: every input read once, every output written once
    flops: float  # FLOPs torch's FlopCounterMode counts (matmul, conv, attention)


# A CPU runs a smoke workload's float64 reference and checks in well under a second, and a
# search workload in a few seconds (2 GFLOP at ~1 GFLOP/s of float64 on a busy core).
SMOKE_BUDGET = Budget(bytes_moved=4 * 2**20, flops=2e8)
SEARCH_BUDGET = Budget(bytes_moved=32 * 2**20, flops=2e9)
MIN_SIZE = 8  # a var axis is never shrunk below this (or its file value, when smaller)
SHRINK_BUDGET_S = 60.0  # per file, for the axis-by-axis shrink (each step is a meta run)
_MAX_SHIFT = 40


_NAMESPACES: dict[tuple[str, int], dict[str, Any]] = {}  # (definition, hash of its reference) -> namespace


def exec_reference(definition: Definition) -> dict[str, Any]:
    """The generated reference executed in a fresh namespace (run, the inputs generator),
    once per definition and reference: its models stay built between size checks."""
    key = (definition.name, hash(definition.reference))
    if key not in _NAMESPACES:
        if len(_NAMESPACES) > 8:
            _NAMESPACES.clear()  # an import of hundreds of files keeps only the last few
        namespace: dict[str, Any] = {"__name__": "solforge_kernelbench_generated"}
        exec(compile(definition.reference, f"<reference {definition.name}>", "exec"), namespace)
        _NAMESPACES[key] = namespace
    return _NAMESPACES[key]


def _outputs(value: Any) -> list[Any]:
    return list(value) if isinstance(value, tuple) else [value]


def meta_cost(definition: Definition, workload: Workload) -> tuple[int, float]:
    """(compulsory bytes, counted FLOPs) of `workload`, from one run of the generated
    reference on meta tensors. Raises Unsupported when it fails or its outputs are not
    the shapes and dtypes the definition declares."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        axes = definition.resolve_axes(workload.axes)
        if any(v <= 0 for v in axes.values()):
            raise Unsupported(f"an axis is not positive at {workload.axes}")
        kwargs = {
            name: workload.inputs[name].value if spec.shape is None
            else torch.empty(definition.shape_of(spec, axes), dtype=spec.dtype.to_torch(), device="meta")
            for name, spec in definition.inputs.items()
        }
        counter = FlopCounterMode(display=False)
        with DeviceScope("meta"), counter:  # tensors the forward makes land on meta too
            out = exec_reference(definition)["run"](**kwargs)
    except Unsupported:
        raise
    except Exception as exc:
        raise Unsupported(f"the generated reference failed on meta tensors: {one_line(exc)}") from None
    for (name, spec), value in zip(definition.outputs.items(), _outputs(out)):
        expected = (definition.shape_of(spec, axes), spec.dtype.to_torch())
        if (tuple(value.shape), value.dtype) != expected:
            got = (tuple(value.shape), value.dtype)
            raise Unsupported(f"the generated reference gives output {name} as {got}, expected {expected}")
    specs = [*definition.inputs.values(), *definition.outputs.values()]
    moved = sum(math.prod(definition.shape_of(s, axes)) * s.dtype.itemsize_bits // 8 for s in specs if s.shape is not None)
    return moved, float(counter.get_total_flops())


def _shrunk(file_axes: dict[str, int], shift: int, floor: int) -> dict[str, int]:
    return {a: max(min(v, floor), v >> shift) for a, v in file_axes.items()}


def _fits(cost: tuple[int, float], budget: Budget) -> bool:
    return cost[0] <= budget.bytes_moved and cost[1] <= budget.flops


_Candidate = tuple[dict[str, int], tuple[int, float], str]  # (axes, cost, how it was shrunk)


def _candidates(definition: Definition, file_workload: Workload) -> list[_Candidate]:
    """Sizes that run, largest first: every var axis shrunk by the same power of two (not
    below MIN_SIZE, then not below 1); when none of those fits SMOKE_BUDGET, one axis
    halved at a time from the smallest, the cheapest halving that still runs first (an
    axis the problem ties to a fixed one, out_channels of a depthwise convolution, stays)."""
    file_axes = dict(file_workload.axes)

    def cost_of(axes: dict[str, int]) -> tuple[int, float] | None:
        try:
            return meta_cost(definition, file_workload.model_copy(update={"axes": axes}))
        except Unsupported:
            return None

    found: list[_Candidate] = []
    seen: set[tuple] = set()
    for floor in (MIN_SIZE, 1):
        for shift in range(_MAX_SHIFT):
            axes = _shrunk(file_axes, shift, floor)
            key = tuple(sorted(axes.items()))
            if key in seen:
                if shift and axes == _shrunk(file_axes, shift - 1, floor):
                    break
                continue
            seen.add(key)
            cost = cost_of(axes)
            if cost is not None:
                found.append((axes, cost, f"file / {2**shift}" if shift else ""))
    if not file_axes or any(_fits(c[1], SMOKE_BUDGET) for c in found):
        return found
    axes, cost, _ = min(found, key=lambda c: c[1])
    deadline = time.monotonic() + SHRINK_BUDGET_S
    for _ in range(_MAX_SHIFT):  # each round halves every axis that still runs and gets cheaper
        progressed = False
        for a in axes:
            if axes[a] <= 1 or time.monotonic() > deadline:
                continue
            halved = {**axes, a: axes[a] // 2}
            step_cost = cost_of(halved)
            if step_cost is not None and step_cost < cost:
                axes, cost, progressed = halved, step_cost, True
                found.append((axes, cost, "shrunk axis by axis"))
                if _fits(cost, SMOKE_BUDGET):
                    return found
        if not progressed:
            break
    return found


def derive_workloads(definition: Definition, file_workload: Workload) -> tuple[list[Workload], list[str]]:
    """The file's workload, then the derived search and smoke workloads (module
    docstring), and notes for the report. The file's workload must already have passed
    `meta_cost`."""
    file_axes = dict(file_workload.axes)
    found = _candidates(definition, file_workload)

    def pick(budget: Budget) -> _Candidate:
        fitting = [c for c in found if _fits(c[1], budget)]
        return fitting[0] if fitting else min(found, key=lambda c: c[1])

    notes = []
    search_axes, search_cost, search_how = pick(SEARCH_BUDGET)
    smoke_axes, smoke_cost, smoke_how = pick(SMOKE_BUDGET)
    held_out = search_axes != file_axes
    workloads = [_with(definition, file_workload, file_axes, "file", _label("file", file_axes, ""), held_out=held_out)]
    if held_out:
        workloads.append(_with(definition, file_workload, search_axes, "search", _label("search", search_axes, search_how)))
    why = "no var axis" if not file_axes else "the var axes are at their smallest"
    if not _fits(search_cost, SEARCH_BUDGET):
        notes.append(f"the search workload moves {search_cost[0] / 2**20:.1f} MiB and counts "
                     f"{search_cost[1] / 1e9:.2f} GFLOP: {why}")
    if _fits(smoke_cost, SMOKE_BUDGET) or smoke_axes != file_axes:
        workloads.append(_with(definition, file_workload, smoke_axes, "smoke", _label("smoke", smoke_axes, smoke_how),
                               smoke=True))
    else:
        notes.append(f"no smoke workload: the smallest size that runs moves {smoke_cost[0] / 2**20:.1f} MiB ({why})")
    return workloads, notes


def _label(kind: str, axes: dict[str, int], how: str) -> str:
    """`smoke: batch_size=16, dim=512 (file / 32)`: the set, the var axes, the shrink."""
    sizes = ", ".join(f"{a}={v}" for a, v in axes.items())
    return f"{kind}: {sizes}".rstrip(": ") + (f" ({how})" if how else "")


def _with(definition: Definition, base: Workload, axes: dict[str, int], suffix: str, label: str,
          held_out: bool = False, smoke: bool = False) -> Workload:
    """`base` at `axes`. A stored buffer whose shape differs there (BatchNorm's running
    statistics at fewer channels) is drawn by the inputs generator instead: a fresh
    Model's buffers at those sizes, initialized as the file's were."""
    inputs = dict(base.inputs)
    at_file, here = definition.resolve_axes(base.axes), definition.resolve_axes(axes)
    for name, spec in base.inputs.items():
        shape = definition.inputs[name]
        if isinstance(spec, SafetensorsInput) and definition.shape_of(shape, here) != definition.shape_of(shape, at_file):
            inputs[name] = RandomInput()
    uuid = base.uuid.removesuffix("-file") + f"-{suffix}"
    return Workload(uuid=uuid, axes=dict(axes), inputs=inputs,
                    solforge=WorkloadExtension(label=label, held_out=held_out, smoke=smoke))


def draw_outputs(definition: Definition, workload: Workload, buffers: dict[str, Any], seed: int) -> list[Any]:
    """The reference's outputs on the CPU, on inputs from the definition's inputs generator
    seeded with `seed` (scalars from the workload, stored buffers from `buffers`).
    Raises Unsupported when the generator or the reference raises."""
    import torch

    namespace = exec_reference(definition)
    axes = definition.resolve_axes(workload.axes)
    scalars = {n: s.value for n, s in workload.inputs.items() if isinstance(s, ScalarInput)}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            values = namespace[INPUTS_FUNCTION]({**axes, **scalars}, torch.device("cpu"))
        values.update(scalars)
        values.update({n: buffers[n] for n, s in workload.inputs.items() if isinstance(s, SafetensorsInput)})
        with torch.no_grad():
            return _outputs(namespace["run"](**{n: values[n] for n in definition.inputs}))
    except Exception as exc:
        raise Unsupported(f"on the CPU at {workload.label}, the reference on get_inputs() values raised "
                          f"{one_line(exc)}") from None


def check_draws(definition: Definition, workload: Workload, buffers: dict[str, Any]) -> list[str]:
    """Run the reference twice on the CPU on two draws of the file's own inputs (module
    docstring); returns notes. Raises Unsupported for a data-dependent output shape or a
    reference that raises."""
    import torch

    axes = definition.resolve_axes(workload.axes)
    declared = [definition.shape_of(s, axes) for s in definition.outputs.values()]
    draws = [draw_outputs(definition, workload, buffers, seed) for seed in (1, 2)]
    shapes = [[tuple(v.shape) for v in outs] for outs in draws]
    for i, name in enumerate(definition.outputs):
        got = {s[i] for s in shapes}
        if len(got) > 1 or declared[i] not in got:
            seen = " and ".join(str(s) for s in sorted(got | {declared[i]}))
            raise Unsupported(
                f"output '{name}' has a data-dependent shape ({seen} with different draws of get_inputs()); "
                "solforge needs output shapes that the axes fix"
            )
    notes = []
    if any(v.is_floating_point() and not torch.isfinite(v).all() for outs in draws for v in outs):
        notes.append(f"the reference's output holds NaN or inf on the file's own get_inputs() values ({workload.label})")
    return notes


__all__ = ["MIN_SIZE", "SEARCH_BUDGET", "SMOKE_BUDGET", "Budget", "check_draws", "derive_workloads", "meta_cost"]
