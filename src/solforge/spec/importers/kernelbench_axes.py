"""Naming a KernelBench problem's dims: each size global perturbed on its own, on meta.

A KernelBench file sets its sizes as module globals (`batch_size = 16`, `in_features =
4096`, `input_shape = (4096,)`). Two globals often hold the same value, so a dim's value
alone cannot say which global it comes from. Here every positive int global (and every
element of an int-tuple global, `name_i`) is doubled *on its own* and the whole file run
again on the meta device: `get_init_inputs()`, `Model(*init)`, `get_inputs()`, the
forward. A dim that doubles with exactly one global is that global's axis, so an
`nn.Linear` weight reads `[out_features, in_features]` even when both are 4096, and a
matmul's N never merges into M.

A global becomes a **var axis** (sized per workload) when the file still runs as the
generated reference runs it at other sizes (`probe_model`: the global changed while the
model is built and `get_inputs()` draws, the forward with the file's globals), the
numbers from `get_inputs()` stay as they were, a dim of some input carries its size,
and every dim and every int it passes to `Model(...)` that it moves can be written as an
axis expression (`kernelbench_fit`): `g` itself, `(g * p + c) // q` fitted to runs at 1,
2 and 3 times the value and 1 to 3 above it (a convolution's or a pooling's output
size), or a product of var globals (`dim1 * dim2`, a flatten). So both the data's sizes
and the model's (`in_features`, `channels`) shrink for the derived workloads; anything
else stays const. Globals whose doubling fails alone but succeeds together with the
other globals of the same value (HingeLoss needs `batch_size == input_shape_0`) form one
var axis named after the first, the tie kept as a constraint. A const dim is named after
the global whose doubling doubles it, else after a global of its value that could not be
probed (the k-th dim of one tensor with a value takes the k-th such global), else
`d<size>`. A global that moves no shape and leaves the model as it was, but equals
exactly one var global (`num_classes` beside `input_shape = (num_classes,)`, the range
of get_inputs()'s targets) is set with it; when several var globals have its value, the
one whose assignment in the file reads it.

Without probes (the file ran only on the CPU) every dim is named by value, all const.
"""

from __future__ import annotations

import re
import time
import types
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from solforge.spec.importers.kernelbench_code import literal
from solforge.spec.importers.kernelbench_fit import floor_affine, init_source, product, render_affine
from solforge.spec.importers.kernelbench_run import DeviceScope, check_inputs, forward_outputs, one_line

PROBE_BUDGET_S = 60.0  # per file; a level-3 LSTM's meta run takes tens of seconds


@dataclass(frozen=True)
class SizeGlobal:
    """A size the file sets: the int global `name`, or element `index` of a tuple global."""

    key: str  # the axis name it gives: `name`, or `name_<index>`
    name: str
    index: int | None
    value: int


def size_globals(module: types.ModuleType) -> list[SizeGlobal]:
    """The positive int globals and int-tuple elements of `module`, in assignment order."""
    out = []
    for name, value in vars(module).items():
        if name.startswith("__") or isinstance(value, bool):
            continue
        if isinstance(value, int) and value > 0:
            out.append(SizeGlobal(name, name, None, value))
        elif isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            out.extend(SizeGlobal(f"{name}_{i}", name, i, v) for i, v in enumerate(value) if v > 0)
    return out


def set_sizes(module: types.ModuleType, sizes: dict[SizeGlobal, int]) -> dict[str, Any]:
    """Set the globals of `sizes` to their new values; returns the old values to restore."""
    saved: dict[str, Any] = {}
    for g, v in sizes.items():
        saved.setdefault(g.name, module.__dict__[g.name])
        if g.index is None:
            module.__dict__[g.name] = v
        else:
            items = list(module.__dict__[g.name])
            items[g.index] = v
            module.__dict__[g.name] = tuple(items)
    return saved


@dataclass
class Shapes:
    """What one run of a file gave: shapes of the forward's arguments (None for a number),
    the numbers themselves, the state (tied entries once), the outputs, and the init."""

    inputs: list[tuple[int, ...] | None]
    numbers: list[Any]
    state: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    init: list[Any]

    def tensors(self) -> list[tuple[int, ...]]:
        """Every tensor shape, in the order dims are named: arguments, state, outputs."""
        return [s for s in self.inputs if s is not None] + self.state + self.outputs

    def comparable(self, other: Shapes) -> bool:
        """Same tensors of the same ranks."""
        mine, theirs = self.tensors(), other.tensors()
        return ([s is None for s in self.inputs] == [s is None for s in other.inputs]
                and len(self.state) == len(other.state) and len(self.outputs) == len(other.outputs)
                and [len(s) for s in mine] == [len(s) for s in theirs])


def shapes_of(inputs: Sequence[Any], model: Any, outputs: Sequence[Any], init: Sequence[Any]) -> Shapes:
    """The Shapes of one observed run."""
    import torch

    seen: set[int] = set()
    state = []
    for t in model.state_dict(keep_vars=True).values():
        if id(t) not in seen:
            seen.add(id(t))
            state.append(tuple(t.shape))
    return Shapes(
        inputs=[tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in inputs],
        numbers=[None if isinstance(v, torch.Tensor) else v for v in inputs],
        state=state,
        outputs=[tuple(v.shape) for v in outputs],
        init=list(init),
    )


def probe(module: types.ModuleType, sizes: dict[SizeGlobal, int]) -> Shapes | str:
    """Run the whole file on meta with the globals of `sizes` changed (restored after):
    its Shapes, or why it failed, in one line."""
    import torch

    saved = set_sizes(module, sizes)
    try:
        with DeviceScope("meta"), torch.no_grad():
            init = module.get_init_inputs() if callable(getattr(module, "get_init_inputs", None)) else []
            model = module.Model(*init)
            inputs = check_inputs(module.get_inputs())
            outputs = forward_outputs(model(*inputs))
        return shapes_of(inputs, model, outputs, init)
    except Exception as exc:  # Unsupported too: a failed probe only means the global stays const
        return one_line(exc)
    finally:
        module.__dict__.update(saved)


def probe_model(module: types.ModuleType, base: Shapes, sizes: dict[SizeGlobal, int]) -> Shapes | None:
    """Run the file as the generated reference and inputs generator do at other sizes:
    the globals of `sizes` changed while `get_init_inputs()`, `Model(*init)` and
    `get_inputs()` run, the forward with the file's globals back. Its Shapes on meta when
    it ran and gave the same tensors and numbers as `base`, else None."""
    import torch

    saved = set_sizes(module, sizes)
    try:
        with DeviceScope("meta"), torch.no_grad():
            init = module.get_init_inputs() if callable(getattr(module, "get_init_inputs", None)) else []
            model = module.Model(*init)
            inputs = check_inputs(module.get_inputs())
    except Exception:
        return None
    finally:
        module.__dict__.update(saved)
    try:
        with DeviceScope("meta"), torch.no_grad():
            outputs = forward_outputs(model(*inputs))
    except Exception:
        return None
    run = shapes_of(inputs, model, outputs, init)
    return run if run.comparable(base) and run.numbers == base.numbers else None


@dataclass
class Unit:
    """Globals doubled together: one, or a tie of equal globals. `var` once it is a var axis."""

    members: list[SizeGlobal]
    shapes: Shapes | str | None  # the whole file doubled; a str says why it failed; None: not probed
    data: Shapes | None = None  # doubled as the reference runs other sizes (probe_model), when it ran
    # such runs at other values (3x, and 1, 2, 3 above), for fitting expressions: (value, Shapes)
    extra: list[tuple[int, Shapes]] = field(default_factory=list)
    var: bool = False
    riders: list[SizeGlobal] = field(default_factory=list)  # shape-neutral globals set with it

    @property
    def axis(self) -> str:
        return self.members[0].key

    @property
    def value(self) -> int:
        return self.members[0].value

    @property
    def ran(self) -> bool:
        return isinstance(self.shapes, Shapes)


@dataclass
class AxisPlan:
    """Axis names of every tensor, the axes as JSON in declaration order, and what the
    inputs generator sets per var axis."""

    axes: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: list[list[str] | None] = field(default_factory=list)  # per forward argument
    state: list[list[str]] = field(default_factory=list)
    outputs: list[list[str]] = field(default_factory=list)
    var_globals: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)  # axis -> (global, index)
    constraints: list[str] = field(default_factory=list)
    file_axes: dict[str, int] = field(default_factory=dict)  # var axis -> the file's value
    # var axis -> (group 'inputs' or 'state', index in it, dim) of an input that carries its size
    sources: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    init_source: str | None = None  # get_init_inputs() over sizes['<axis>'], when a var axis moves it

    def rename(self, old: str, new: str) -> None:
        """Rename axis `old` everywhere it appears."""
        self.axes = {new if a == old else a: spec for a, spec in self.axes.items()}
        for spec in self.axes.values():
            if spec["type"] == "expr":
                spec["expression"] = re.sub(rf"\b{re.escape(old)}\b", new, spec["expression"])
        for group in (self.inputs, self.state, self.outputs):
            for i, names in enumerate(group):
                if names is not None:
                    group[i] = [new if a == old else a for a in names]
        for mapping in (self.var_globals, self.file_axes):
            if old in mapping:
                mapping[new] = mapping.pop(old)
        self.constraints = [re.sub(rf"\b{re.escape(old)}\b", new, c) for c in self.constraints]
        if old in self.sources:
            self.sources[new] = self.sources.pop(old)
        if self.init_source is not None:
            self.init_source = self.init_source.replace(f"sizes[{old!r}]", f"sizes[{new!r}]")


def probe_units(module: types.ModuleType, sizes: list[SizeGlobal], base: Shapes, budget_s: float) -> list[Unit]:
    """Each size global doubled alone; then each group of equal globals whose lone
    doubling failed, doubled together. Each unit that ran is also run as the reference
    runs other sizes (`probe_model`, at 2x and the fitting values). A file whose meta runs
    are slow (an LSTM steps through its sequence on meta too) stops probing after
    `budget_s` seconds: what was not probed is named by value and stays const."""
    deadline = time.monotonic() + budget_s

    def in_time() -> bool:
        return time.monotonic() < deadline

    units = [Unit([g], probe(module, {g: 2 * g.value}) if in_time() else None) for g in sizes]
    failed: dict[int, list[Unit]] = {}
    for u in units:
        if not u.ran:
            failed.setdefault(u.value, []).append(u)
    for value, group in failed.items():
        if len(group) < 2 or not in_time():
            continue
        members = [u.members[0] for u in group]
        joint = probe(module, {g: 2 * value for g in members})
        if isinstance(joint, Shapes) and joint.comparable(base) and joint.numbers == base.numbers:
            for u in group:
                units.remove(u)
            units.append(Unit(members, joint))
    for u in units:
        if u.ran and in_time():
            u.data = probe_model(module, base, {g: 2 * u.value for g in u.members})
    for u in units:
        # Off-multiple values pin down the constant of a floor division (a stride of 3 with
        # only multiples of 3 probed cannot tell (L - 6) // 3 from (L - 4) // 3).
        for value in (3 * u.value, u.value + 1, u.value + 2, u.value + 3) if u.data is not None else ():
            run = probe_model(module, base, {g: value for g in u.members}) if in_time() else None
            if run is not None:
                u.extra.append((value, run))
    order = {g.key: i for i, g in enumerate(sizes)}
    return sorted(units, key=lambda u: order[u.axis])


def _unchanged_setup(base: Shapes, run: Shapes) -> bool:
    """Doubling left the init, the numbers from get_inputs() and the state as they were."""
    return run.comparable(base) and run.init == base.init and run.numbers == base.numbers and run.state == base.state


@dataclass
class _Dim:
    tensor: int  # index into Shapes.tensors()
    pos: int
    size: int


def _changes(unit: Unit, base: Shapes, dim: _Dim, data: bool = False) -> int | None:
    """The dim's size in `unit`'s doubled run (its data-only run with `data`), when that
    run is comparable, else None."""
    run = unit.data if data else unit.shapes
    if not isinstance(run, Shapes) or not run.comparable(base):
        return None
    return run.tensors()[dim.tensor][dim.pos]


def _expression(units: list[Unit], base: Shapes, dim: _Dim) -> tuple[str, str] | None:
    """(axis name, expression) of a dim that var `units` change, or None when no axis
    expression explains the change (module docstring)."""
    if len(units) == 1:
        u = units[0]
        points = [(u.value, dim.size), (2 * u.value, _changes(u, base, dim, data=True))]
        points += [(value, run.tensors()[dim.tensor][dim.pos]) for value, run in u.extra]
        form = floor_affine(points)
        return None if form is None else render_affine(u.axis, form)
    if any(_changes(u, base, dim, data=True) != 2 * dim.size for u in units):
        return None
    return product([u.axis for u in units], [u.value for u in units], dim.size)


def _to_demote(moving: list[Unit], base: Shapes, dim: _Dim, dims: list[_Dim]) -> list[Unit]:
    """Which of `moving` to make const so that `dim` can be written: the fewest, taken in
    order (first those that change the model's arguments, a kernel size or a stride
    beside the height they shrink, then those that move fewer dims)."""
    def rank(u: Unit) -> tuple[bool, int]:
        return u.data.init == base.init, sum(_changes(u, base, d, data=True) != d.size for d in dims)

    demoted: list[Unit] = []
    for u in sorted(moving, key=rank):
        demoted.append(u)
        rest = [v for v in moving if v not in demoted]
        if not rest or _expression(rest, base, dim) is not None:
            break
    return demoted


def _init_runs(units: list[Unit]) -> dict[str, list[tuple[int, int, Sequence[Any]]]]:
    return {u.axis: [(u.value, 2 * u.value, u.data.init)] + [(u.value, v, run.init) for v, run in u.extra]
            for u in units if u.var}


def plan_axes(
    base: Shapes, units: list[Unit], file_sizes: list[SizeGlobal], derived_from: dict[str, set[str]] | None = None,
    excluded: frozenset[str] = frozenset(),
) -> AxisPlan:
    """Name every dim of `base` from the probes in `units` (module docstring). With no
    units (nothing probed), dims are named by value after `file_sizes`, all const.
    `derived_from` maps a global to the names its assignment in the file reads; the
    units of `excluded` axes stay const."""
    derived_from = derived_from or {}
    dims = [_Dim(t, p, d) for t, shape in enumerate(base.tensors()) for p, d in enumerate(shape)]
    for u in units:
        u.riders = []
        u.var = (u.data is not None and u.axis not in excluded
                 and any(_changes(u, base, d, data=True) != d.size for d in dims))
    while True:  # drop var units that some dim cannot express, until every dim can
        demoted = False
        for d in dims:
            moving = [u for u in units if u.var and _changes(u, base, d, data=True) != d.size]
            if moving and _expression(moving, base, d) is None:
                for u in _to_demote(moving, base, d, dims):
                    u.var = False
                demoted = True
        if not demoted and init_source(base.init, _init_runs(units), literal) is None:
            # some int of get_init_inputs() cannot be written: drop the units that move it
            moved = [u for u in units if u.var and u.data.init != base.init]
            for u in moved:
                u.var = False
            demoted = bool(moved)
        if not demoted:
            break

    # A global that moves no dim when doubled but equals a var global (`num_classes`
    # beside `input_shape = (num_classes,)`) sizes values, e.g. get_inputs()'s randint
    # range: the inputs generator sets it with that var axis.
    neutral = [u for u in units if u.data is not None and _unchanged_setup(base, u.data)
               and all(_changes(u, base, d, data=True) == d.size for d in dims)]
    for n in neutral:
        owners = [u for u in units if u.var and u.value == n.value]
        if len(owners) > 1:  # equal values: the var global the file wrote from it, if one
            owners = [u for u in owners if any(n.axis in derived_from.get(g.name, ()) for g in u.members)]
        if len(owners) == 1:
            owners[0].riders += n.members

    plan = AxisPlan()
    for u in units:
        if u.var:
            tie = f" (tied to {', '.join(f'`{g.key}`' for g in u.members[1:])}, equal in the file)" if len(u.members) > 1 else ""
            ride = f"; the inputs generator also sets {', '.join(f'`{g.key}`' for g in u.riders)} to it" if u.riders else ""
            plan.axes[u.axis] = {"type": "var",
                                 "description": f"Module global `{u.axis}`{tie} (the file's value: {u.value}){ride}."}
            plan.var_globals[u.axis] = [(g.name, g.index) for g in [*u.members, *u.riders]]
            plan.file_axes[u.axis] = u.value
            plan.constraints += [f"{g.key} == {u.axis}" for g in u.members[1:]]
    unprobed = [g for g in file_sizes if not any(g in u.members and u.ran for u in units)]
    taken = {g.key for g in file_sizes}
    names: list[list[str]] = []
    for t, shape in enumerate(base.tensors()):
        seen: Counter[int] = Counter()
        row = []
        for p, size in enumerate(shape):
            row.append(_dim_name(plan, units, base, _Dim(t, p, size), unprobed, taken, seen[size]))
            seen[size] += 1
        names.append(row)
    it = iter(names)
    plan.inputs = [None if s is None else next(it) for s in base.inputs]
    plan.state = [next(it) for _ in base.state]
    plan.outputs = [next(it) for _ in base.outputs]
    for group in ("inputs", "state"):
        for i, row in enumerate(getattr(plan, group)):
            for pos, name in enumerate(row or ()):
                if name in plan.var_globals:
                    plan.sources.setdefault(name, (group, i, pos))
    if any(u.var and u.data.init != base.init for u in units):
        plan.init_source = init_source(base.init, _init_runs(units), literal)
    return plan


def _dim_name(
    plan: AxisPlan, units: list[Unit], base: Shapes, d: _Dim, unprobed: list[SizeGlobal], taken: set[str], k: int
) -> str:
    moving = [u for u in units if u.var and _changes(u, base, d, data=True) != d.size]
    if moving:
        name, expr = _expression(moving, base, d)
        if name != expr:
            plan.axes.setdefault(name, {"type": "expr", "expression": expr})
        return name
    doubling = [u for u in units if u.value == d.size and _changes(u, base, d) == 2 * d.size]
    if doubling:
        return _const(plan, doubling[0].axis, d.size, f"Module global `{doubling[0].axis}`.")
    if not any(_changes(u, base, d) not in (None, d.size) for u in units):
        by_value = [g for g in unprobed if g.value == d.size]
        if by_value:
            g = by_value[min(k, len(by_value) - 1)]
            return _const(plan, g.key, d.size, f"Module global `{g.key}`.")
    generated = f"d{d.size}"
    while generated in taken:
        generated += "_"
    return _const(plan, generated, d.size, f"A size of {d.size} that no module global names.")


def _const(plan: AxisPlan, name: str, value: int, description: str) -> str:
    spec = plan.axes.get(name)
    if spec is not None and (spec["type"] != "const" or spec["value"] != value):
        return _const(plan, f"{name}_{value}", value, description)
    plan.axes.setdefault(name, {"type": "const", "value": value, "description": description})
    return name


def assigned_from(source: str) -> dict[str, set[str]]:
    """Module global -> the names its top-level assignment reads (`input_shape =
    (num_classes,)` gives {'input_shape': {'num_classes'}})."""
    import ast

    out: dict[str, set[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            reads = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, set()).update(reads)
    return out


def infer_axes(module: types.ModuleType, source: str, base: Shapes, on_meta: bool) -> tuple[AxisPlan, list[str]]:
    """The AxisPlan of a file (its `source`) whose run gave `base`, and notes for the
    report. Probes on meta when the file ran there (`on_meta`); otherwise names by value,
    all const."""
    sizes = size_globals(module)
    units = probe_units(module, sizes, base, PROBE_BUDGET_S) if on_meta else []
    derived_from = assigned_from(source)
    excluded: frozenset[str] = frozenset()
    while True:  # a var axis no input carries cannot be read off the inputs: const
        plan = plan_axes(base, units, sizes, derived_from, excluded)
        sourceless = set(plan.var_globals) - set(plan.sources)
        if not sourceless:
            break
        excluded |= sourceless
    notes = []
    if not on_meta:
        notes.append("every axis is const: the file does not run on the meta device, so its globals were not probed")
    elif not plan.var_globals:
        notes.append("every axis is const: no module global can change alone and still run as the reference runs")
    if any(u.shapes is None for u in units):
        notes.append(f"probing stopped after {PROBE_BUDGET_S:.0f} s (slow meta runs): the globals not probed are const")
    for u in units:
        if len(u.members) > 1 and u.var:
            notes.append(f"`{'`, `'.join(g.key for g in u.members)}` must stay equal (they fail when doubled alone): "
                         f"one var axis `{u.axis}`")
        for g in u.riders if u.var else ():
            notes.append(f"`{g.key}` moves no shape but equals var axis `{u.axis}`: get_inputs() sees it set to that axis")
    return plan, notes


__all__ = ["AxisPlan", "Shapes", "SizeGlobal", "infer_axes", "probe", "probe_model", "set_sizes", "shapes_of",
           "size_globals"]
