"""Naming a KernelBench problem's dims: each size global perturbed on its own, on meta.

A KernelBench file sets its sizes as module globals (`batch_size = 16`, `in_features =
4096`, `input_shape = (4096,)`). Two globals often hold the same value, so a dim's value
alone cannot say which global it comes from. Here every positive int global (and every
element of an int-tuple global, `name_i`) is doubled *on its own* and the whole file run
again on the meta device: `get_init_inputs()`, `Model(*init)`, `get_inputs()`, the
forward. A dim that doubles with exactly one global is that global's axis, so an
`nn.Linear` weight reads `[out_features, in_features]` even when both are 4096, and a
matmul's N never merges into M.

A global becomes a **var axis** (sized per workload) when doubling it runs, leaves the
init inputs, the numbers from `get_inputs()` and every parameter and buffer unchanged,
still runs when only `get_inputs()` sees it doubled and the file's own model (built and
run with the file's globals, as the generated reference is) takes those inputs, and
changes every dim it touches in a way an axis expression can say: `g` itself,
`(g * p + c) // q` fitted to runs at 1, 2 and 3 times the value and 1 to 3 above it (a
convolution's or a pooling's output size), or a product of var globals (`dim1 * dim2`, a flatten). Anything else leaves it const. Globals whose doubling fails
alone but succeeds together with the other globals of the same value (HingeLoss needs
`batch_size == input_shape_0`) form one var axis named after the first, the tie kept as
a constraint. A const dim is named after the global whose doubling doubles it, else
after a global of its value that could not be probed (the k-th dim of one tensor with a
value takes the k-th such global), else `d<size>`. A global that moves no shape but
equals exactly one var global (`num_classes` beside `input_shape = (num_classes,)`, the
range of get_inputs()'s targets) is set with it by the inputs generator; when several
var globals have its value, the one whose assignment in the file reads it.

Without probes (the file ran only on the CPU) every dim is named by value, all const.
"""

from __future__ import annotations

import math
import types
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from solforge.spec.importers.kernelbench_run import DeviceScope, check_inputs, forward_outputs, one_line

_MAX_TERM = 64  # largest numerator and denominator of an inferred axis expression's factor


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


def probe_data(module: types.ModuleType, model: Any, base: Shapes, sizes: dict[SizeGlobal, int]) -> Shapes | None:
    """Run the file as the generated reference and inputs generator do with other sizes:
    get_inputs() with the globals of `sizes` changed, the forward of the file's own
    `model` with the file's globals. Its Shapes on meta, or None when it failed."""
    import torch

    saved = set_sizes(module, sizes)
    try:
        with DeviceScope("meta"), torch.no_grad():
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
    run = shapes_of(inputs, model, outputs, base.init)
    return run if run.comparable(base) and run.numbers == base.numbers else None


@dataclass
class Unit:
    """Globals doubled together: one, or a tie of equal globals. `var` once it is a var axis."""

    members: list[SizeGlobal]
    shapes: Shapes | str | None  # the whole file doubled; a str says why it failed; None: not probed
    data: Shapes | None = None  # only get_inputs() doubled (probe_data), when it ran
    # data runs at other values (3x, and 1, 2, 3 above), for fitting expressions: (value, Shapes)
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

    def rename(self, old: str, new: str) -> None:
        """Rename axis `old` everywhere it appears."""
        import re

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


def probe_units(module: types.ModuleType, model: Any, sizes: list[SizeGlobal], base: Shapes) -> list[Unit]:
    """Each size global doubled alone; then each group of equal globals whose lone
    doubling failed, doubled together. A unit whose doubling leaves the model as it was is
    also run as data only (`probe_data`, at 2x and the fitting values) with `model`."""
    units = [Unit([g], probe(module, {g: 2 * g.value})) for g in sizes]
    failed: dict[int, list[Unit]] = {}
    for u in units:
        if not u.ran:
            failed.setdefault(u.value, []).append(u)
    for value, group in failed.items():
        if len(group) < 2:
            continue
        members = [u.members[0] for u in group]
        joint = probe(module, {g: 2 * value for g in members})
        if isinstance(joint, Shapes) and _unchanged_setup(base, joint):
            for u in group:
                units.remove(u)
            units.append(Unit(members, joint))
    for u in units:
        if not (u.ran and _unchanged_setup(base, u.shapes)):
            continue
        u.data = probe_data(module, model, base, {g: 2 * u.value for g in u.members})
        if u.data is None:
            continue
        # Off-multiple values pin down the constant of a floor division (a stride of 3 with
        # only multiples of 3 probed cannot tell (L - 6) // 3 from (L - 4) // 3).
        for value in (3 * u.value, u.value + 1, u.value + 2, u.value + 3):
            run = probe_data(module, model, base, {g: value for g in u.members})
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


def _floor_affine(points: list[tuple[int, int]]) -> tuple[int, int, int] | None:
    """The (p, c, q) with the smallest q <= 64, then the smallest |c|, such that
    d == (p * x + c) // q at every (x, d) of `points`: the form of a convolution's or a
    pooling's output size, (H + 2 * pad - dilation * (k - 1) - 1 + stride) // stride."""
    (x1, d1), (x2, d2) = points[0], points[1]
    for q in range(1, _MAX_TERM + 1):
        slope = Fraction((d2 - d1) * q, x2 - x1)
        for p in sorted({math.floor(slope), math.ceil(slope)}):
            if not 1 <= p <= _MAX_TERM:
                continue
            # d == (p*x + c) // q  <=>  q*d - p*x <= c <= q*d + q - 1 - p*x
            low = max(q * d - p * x for x, d in points)
            high = min(q * d + q - 1 - p * x for x, d in points)
            if low <= high:
                return p, min(range(low, high + 1), key=abs), q
    return None


def _expression(units: list[Unit], base: Shapes, dim: _Dim) -> tuple[str, str] | None:
    """(axis name, expression) of a dim that var `units` change, or None when no axis
    expression explains the change (module docstring)."""
    if len(units) == 1:
        u = units[0]
        points = [(u.value, dim.size), (2 * u.value, _changes(u, base, dim, data=True))]
        points += [(value, run.tensors()[dim.tensor][dim.pos]) for value, run in u.extra]
        form = _floor_affine(points)
        if form is None:
            return None
        p, c, q = form
        if (p, c, q) == (1, 0, 1):
            return u.axis, u.axis
        name = u.axis + (f"_x{p}" if p != 1 else "") + (f"_{'plus' if c > 0 else 'minus'}{abs(c)}" if c else "")
        inner = u.axis + (f" * {p}" if p != 1 else "") + (f" {'+' if c > 0 else '-'} {abs(c)}" if c else "")
        if q == 1:
            return name, inner
        return f"{name}_div{q}", (f"{inner} // {q}" if inner == u.axis else f"({inner}) // {q}")
    if any(_changes(u, base, dim, data=True) != 2 * dim.size for u in units):
        return None
    c = Fraction(dim.size, math.prod(u.value for u in units))
    if c.numerator > _MAX_TERM or c.denominator > _MAX_TERM:
        return None
    name, expr = "_x_".join(u.axis for u in units), " * ".join(u.axis for u in units)
    if c.numerator != 1:
        name, expr = f"{name}_x{c.numerator}", f"{expr} * {c.numerator}"
    if c.denominator != 1:
        name, expr = f"{name}_div{c.denominator}", f"{expr} // {c.denominator}"
    return name, expr


def plan_axes(
    base: Shapes, units: list[Unit], file_sizes: list[SizeGlobal], derived_from: dict[str, set[str]] | None = None
) -> AxisPlan:
    """Name every dim of `base` from the probes in `units` (module docstring). With no
    units (nothing probed), dims are named by value after `file_sizes`, all const.
    `derived_from` maps a global to the names its assignment in the file reads."""
    derived_from = derived_from or {}
    dims = [_Dim(t, p, d) for t, shape in enumerate(base.tensors()) for p, d in enumerate(shape)]
    for u in units:
        u.var = u.data is not None and any(_changes(u, base, d, data=True) != d.size for d in dims)
    while True:  # drop var units that some dim cannot express, until every dim can
        demoted = False
        for d in dims:
            moving = [u for u in units if u.var and _changes(u, base, d, data=True) != d.size]
            if moving and _expression(moving, base, d) is None:
                for u in moving:
                    u.var = False
                demoted = True
        if not demoted:
            break

    # A global that moves no dim when doubled but equals a var global (`num_classes`
    # beside `input_shape = (num_classes,)`) sizes values, e.g. get_inputs()'s randint
    # range: the inputs generator sets it with that var axis.
    neutral = [u for u in units if u.data is not None and all(_changes(u, base, d, data=True) == d.size for d in dims)]
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


def infer_axes(module: types.ModuleType, source: str, model: Any, base: Shapes, on_meta: bool) -> tuple[AxisPlan, list[str]]:
    """The AxisPlan of a file (its `source`) whose run of `model` gave `base`, and notes
    for the report. Probes on meta when the file ran there (`on_meta`); otherwise names
    by value, all const."""
    sizes = size_globals(module)
    units = probe_units(module, model, sizes, base) if on_meta else []
    plan = plan_axes(base, units, sizes, assigned_from(source))
    notes = []
    if not on_meta:
        notes.append("every axis is const: the file does not run on the meta device, so its globals were not probed")
    elif not plan.var_globals:
        notes.append("every axis is const: no module global can change alone without changing the model")
    for u in units:
        if len(u.members) > 1 and u.var:
            notes.append(f"`{'`, `'.join(g.key for g in u.members)}` must stay equal (they fail when doubled alone): "
                         f"one var axis `{u.axis}`")
        for g in u.riders if u.var else ():
            notes.append(f"`{g.key}` moves no shape but equals var axis `{u.axis}`: get_inputs() sees it set to that axis")
    return plan, notes


__all__ = ["AxisPlan", "Shapes", "SizeGlobal", "infer_axes", "probe", "set_sizes", "shapes_of", "size_globals"]
