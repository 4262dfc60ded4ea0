"""Fitting axis expressions to probe runs of a KernelBench file.

A var global `g` probed at several values `x` gives, for a dim (or an int the file passes
to `Model(...)`), the sizes `d(x)`. `floor_affine` finds `d = (p * g + c) // q`, the form
of every convolution's and pooling's output size; `product` the form of a flatten
(`c * g1 * g2`, doubling with each); `init_source` writes `get_init_inputs()` at the
workload's sizes as a Python expression over `sizes['<axis>']`, so that the generated
reference and a ModelNew entry point build the model at the sizes their inputs have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

MAX_TERM = 64  # largest numerator and denominator of an inferred factor


def floor_affine(points: Sequence[tuple[int, int]]) -> tuple[int, int, int] | None:
    """The (p, c, q) with the smallest q <= 64, then the smallest |c|, such that
    d == (p * x + c) // q at every (x, d) of `points` (the first two at distinct x):
    (H + 2 * pad - dilation * (k - 1) - 1 + stride) // stride is one. None when none fits."""
    (x1, d1), (x2, d2) = points[0], points[1]
    for q in range(1, MAX_TERM + 1):
        slope = Fraction((d2 - d1) * q, x2 - x1)
        for p in sorted({math.floor(slope), math.ceil(slope)}):
            if not 1 <= p <= MAX_TERM:
                continue
            # d == (p*x + c) // q  <=>  q*d - p*x <= c <= q*d + q - 1 - p*x
            low = max(q * d - p * x for x, d in points)
            high = min(q * d + q - 1 - p * x for x, d in points)
            if low <= high:
                return p, min(range(low, high + 1), key=abs), q
    return None


def render_affine(axis: str, form: tuple[int, int, int], ref: Callable[[str], str] = str) -> tuple[str, str]:
    """(axis name, expression) of (p * axis + c) // q; `ref` writes the axis in the expression."""
    p, c, q = form
    name = axis + (f"_x{p}" if p != 1 else "") + (f"_{'plus' if c > 0 else 'minus'}{abs(c)}" if c else "")
    inner = ref(axis) + (f" * {p}" if p != 1 else "") + (f" {'+' if c > 0 else '-'} {abs(c)}" if c else "")
    if q == 1:
        return name, inner
    return f"{name}_div{q}", (f"{inner} // {q}" if inner == ref(axis) else f"({inner}) // {q}")


def product(axes: Sequence[str], values: Sequence[int], size: int, ref: Callable[[str], str] = str) -> tuple[str, str] | None:
    """(axis name, expression) of size = c * product of `axes` (whose file values are
    `values`), or None when c is no small fraction."""
    c = Fraction(size, math.prod(values))
    if c.numerator > MAX_TERM or c.denominator > MAX_TERM:
        return None
    name, expr = "_x_".join(axes), " * ".join(ref(a) for a in axes)
    if c.numerator != 1:
        name, expr = f"{name}_x{c.numerator}", f"{expr} * {c.numerator}"
    if c.denominator != 1:
        name, expr = f"{name}_div{c.denominator}", f"{expr} // {c.denominator}"
    return name, expr


def leaves(value: Any, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Any]]:
    """(path, value) of every non-list, non-tuple value nested in `value`."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    else:
        yield path, value


def size_ref(axis: str) -> str:
    """How `_init_inputs` reads a var axis's size."""
    return f"sizes[{axis!r}]"


def init_source(
    base: Sequence[Any],
    runs: dict[str, list[tuple[int, int, Sequence[Any]]]],
    literal: Callable[[Any], str],
) -> str | None:
    """Python source of `get_init_inputs()` as a function of `sizes`, or None when it
    cannot be written. `runs` maps each var axis to its probes: (file value, probed
    value, the init inputs that probe gave). An int that changes with one axis is fitted
    by `floor_affine`; one that doubles with several is a `product`; anything else that
    changes (a float, a string, a structure) cannot be written."""
    base_leaves = dict(leaves(list(base)))
    moving: dict[tuple[int, ...], list[str]] = {}
    for axis, probes in runs.items():
        for _, _, init in probes:
            got = dict(leaves(list(init)))
            if got.keys() != base_leaves.keys():
                return None
            for path, value in got.items():
                if value != base_leaves[path] and axis not in moving.setdefault(path, []):
                    moving[path].append(axis)
    exprs: dict[tuple[int, ...], str] = {}
    for path, axes in moving.items():
        value = base_leaves[path]
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        if len(axes) == 1:
            (axis,) = axes
            file_value = runs[axis][0][0]
            points = [(file_value, value)] + [(x, dict(leaves(list(init)))[path]) for _, x, init in runs[axis]]
            form = floor_affine(points)
            if form is None:
                return None
            exprs[path] = render_affine(axis, form, size_ref)[1]
        else:
            if any(dict(leaves(list(runs[a][0][2])))[path] != 2 * value for a in axes):
                return None
            found = product(axes, [runs[a][0][0] for a in axes], value, size_ref)
            if found is None:
                return None
            exprs[path] = found[1]
    return _render(list(base), (), exprs, literal)


def _render(value: Any, path: tuple[int, ...], exprs: dict[tuple[int, ...], str], literal: Callable[[Any], str]) -> str:
    if path in exprs:
        return exprs[path]
    if isinstance(value, (list, tuple)):
        items = [_render(v, (*path, i), exprs, literal) for i, v in enumerate(value)]
        if isinstance(value, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return literal(value)


__all__ = ["MAX_TERM", "floor_affine", "init_source", "leaves", "product", "render_affine", "size_ref"]
