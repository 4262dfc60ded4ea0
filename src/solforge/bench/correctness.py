"""Correctness: is a solution's output the definition's output?

The protocol (run by the judge, see `judge`): per workload, `2 * trials + 1` calls, each
on fresh inputs drawn from a secret seed (`os.urandom`, never derived from the dataset,
the workload or solforge's code) with the value distribution `DISTRIBUTIONS[k % 4]`
(normal, large, tiny, mixed) or the definition's own generator; consecutive calls use
different buffers of a ring, so call k+3 sees call k's addresses with new values; the
last call repeats the values of call 1 at another address. Before each call the
reference process computes the expected outputs on the same values, in higher
precision where the dtype allows (`reference_expected`). Destination buffers are
poisoned before each call (`poison_`), so unwritten elements fail; inputs are compared
bit for bit after the call. The judge compares with `compare_outputs`.

Tolerance per output dtype, `Definition.tolerance_for`: an element matches when
|out - ref| <= atol + rtol * |ref|; at least `required_matched_ratio` must match. A
NaN or Inf where the reference is finite fails whatever the ratio; where the
reference is NaN or Inf the output must be the same. Integer, bool and packed outputs
must match exactly. A failure names the worst *failing* element (the largest excess
over its allowance) and how many elements failed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from solforge.bench.inputs import DISTRIBUTIONS, cast_clamped, is_packed
from solforge.spec import Definition, SpecError

if TYPE_CHECKING:
    import torch

__all__ = ["DISTRIBUTIONS", "CheckResult", "ReferenceFailed", "compare_outputs", "poison_", "reference_expected"]


@dataclass
class CheckResult:
    """The comparison of one call's outputs with the reference's."""

    passed: bool
    message: str
    max_absolute_error: float = 0.0
    max_relative_error: float = 0.0  # over elements whose reference is nonzero
    failed_elements: int = 0


class ReferenceFailed(Exception):
    """The reference raised on these inputs in every precision it was tried in."""


# -- destination buffers ------------------------------------------------------------------


def poison_(buf: torch.Tensor) -> torch.Tensor:
    """Fill `buf` with a value no honest kernel writes by chance: NaN for floats (fp8
    through its bytes: 0x7F is e4m3fn's NaN), the dtype's minimum for integers. Bools
    cannot be poisoned (both values are valid). Returns `buf`."""
    import torch

    dtype = buf.dtype
    if buf.numel() == 0:
        return buf
    if dtype.is_floating_point and dtype.itemsize > 1:
        buf.fill_(float("nan"))
    elif dtype.is_floating_point or is_packed(dtype):
        buf.view(torch.uint8).fill_(0x7F)
    elif dtype != torch.bool and dtype.itemsize <= 8:
        buf.fill_(torch.iinfo(dtype).min)
    return buf


# -- the reference (run by the reference process) -------------------------------------------


def upcast_dtype(inputs: dict[str, Any], device: str) -> torch.dtype | None:
    """The precision the reference runs in: float64 on the CPU (and for float32 or
    float64 inputs anywhere), float32 for narrower floats on a GPU; None without float
    inputs."""
    import torch

    floats = [v for v in inputs.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not floats:
        return None
    if device == "cpu" or any(v.dtype in (torch.float32, torch.float64) for v in floats):
        return torch.float64
    return torch.float32


def reference_expected(
    definition: Definition, axes: dict[str, int], reference: Callable[..., Any], inputs: dict[str, Any],
    device: str, precision: str | None,
) -> tuple[list[torch.Tensor], str]:
    """The reference's outputs on `inputs`, rounded to the output dtypes, in the order of
    `definition.outputs`, and the precision used ('float64', 'float32' or 'native').
    `precision` (from an earlier call) fixes it; None tries the upcast first and falls
    back to the native dtypes when the reference rejects it. Raises ReferenceFailed when
    the reference raises in every precision tried, SpecError when it returns outputs of
    the wrong number or shape (a defect of the definition)."""
    import torch

    if precision is not None:
        tried = [precision]
    else:
        up = upcast_dtype(inputs, device)
        tried = ([str(up).removeprefix("torch.")] if up is not None else []) + ["native"]
    error: Exception | None = None
    ret: Any = None
    for attempt in tried:
        target = None if attempt == "native" else getattr(torch, attempt)
        # Copies either way: a reference that writes its inputs must not change the judge's.
        args = {
            k: (v.to(target) if target is not None and v.is_floating_point() else v.clone())
            if isinstance(v, torch.Tensor) else v
            for k, v in inputs.items()
        }
        try:
            with torch.no_grad():
                ret = reference(**args)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # a reference that rejects upcast inputs falls back to native
            error = exc
            continue
        precision = attempt
        break
    else:
        raise ReferenceFailed(f"the reference of {definition.name} raised {type(error).__name__}: {error}")
    outs = list(ret) if isinstance(ret, (tuple, list)) else [ret]
    if len(outs) != len(definition.outputs):
        raise SpecError(f"definition {definition.name}: reference: returned {len(outs)} outputs, expected "
                        f"{len(definition.outputs)}")
    expected = []
    for (name, spec), out in zip(definition.outputs.items(), outs):
        out = torch.as_tensor(out, device=device)
        shape = definition.shape_of(spec, axes)
        if tuple(out.shape) != tuple(shape):
            raise SpecError(f"definition {definition.name}: reference: output '{name}' has shape {tuple(out.shape)}, "
                            f"expected {tuple(shape)}")
        expected.append(_round_to(out, spec.dtype.to_torch()))
    assert precision is not None
    return expected, precision


def _round_to(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The reference output as the output dtype: IEEE rounding (overflow to infinity),
    except for e4m3fn, which has no infinity and whose kernels saturate."""
    import torch

    if dtype == torch.float8_e4m3fn and out.is_floating_point():
        return cast_clamped(out, dtype)
    return out.to(dtype)


# -- the comparison (run by the judge) --------------------------------------------------------


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold the same bytes (shape and dtype included)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return a.numel() == 0 or torch.equal(a.contiguous().view(-1).view(torch.uint8),
                                         b.contiguous().view(-1).view(torch.uint8))


@functools.cache
def _within_kernel() -> Any:
    """`within(o, r, atol, rtol) -> (all within, max |o - r|, max |o - r| / |r| over r != 0)`,
    a numba loop over two flat float arrays, in float64 arithmetic; it stops at the first
    element outside (or NaN), with (False, 0, 0). None without numba."""
    try:
        import numpy as np
        from numba import njit
    except ImportError:
        return None

    @njit(cache=True, nogil=True)
    def within(o, r, atol, rtol):  # pragma: no cover - compiled
        max_abs = 0.0
        max_rel = 0.0
        for i in range(o.size):
            a = np.float64(o[i])
            b = np.float64(r[i])
            err = abs(a - b)
            scale = abs(b)
            if not err <= atol + rtol * scale:
                return False, 0.0, 0.0
            if err > max_abs:
                max_abs = err
            if b != 0.0 and err / scale > max_rel:
                max_rel = err / scale
        return True, max_abs, max_rel

    return within


FAST_CHECK_MIN_ELEMENTS = 1 << 16  # below this, torch's few passes cost less than the call into numba


def _all_within_on_host(out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> tuple[float, float] | None:
    """(max absolute error, max relative error) when every element of `out` is within
    atol + rtol * |ref| of `ref` (host tensors of a float dtype, same shape), in one
    pass (`_within_kernel`); None when one is not (or NaN), or where the fast path does
    not apply (a GPU tensor, a small one, no numba): the caller then takes the full path.
    Floats of 32 bits or fewer widen to float32 exactly; the arithmetic is float64, as
    the full path's."""
    import torch

    if out.device.type != "cpu" or ref.device.type != "cpu" or out.numel() < FAST_CHECK_MIN_ELEMENTS:
        return None
    within = _within_kernel()
    if within is None:
        return None

    def flat(t: torch.Tensor) -> Any:
        t = t.detach()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float32)
        return t.contiguous().reshape(-1).numpy()

    ok, max_abs, max_rel = within(flat(out), flat(ref), float(atol), float(rtol))
    return (max_abs, max_rel) if ok else None


def compare_outputs(
    outputs: list[torch.Tensor], expected: list[torch.Tensor], definition: Definition, dps: bool = False,
) -> CheckResult:
    """Compare outputs with the reference's, element by element in float64, under
    `definition.tolerance_for(dtype)` (see the module docstring). Both lists are in the
    order of `definition.outputs`, of the right shapes and dtypes (the judge reads them
    from its own buffers). Errors are absolute (output units) and relative
    (|out - ref| / |ref|, over elements whose reference is nonzero), maxima over all
    outputs."""
    import torch

    max_abs = max_rel = 0.0
    for (name, spec), out, ref in zip(definition.outputs.items(), outputs, expected):
        if out.numel() == 0:
            continue
        tol = definition.tolerance_for(spec.dtype)
        if is_packed(out.dtype) or not out.dtype.is_floating_point:
            o, r = (out.view(torch.uint8), ref.view(torch.uint8)) if is_packed(out.dtype) else (out, ref)
            differ = (o != r).reshape(-1)
            mismatched = int(differ.sum())
            if mismatched:
                first = int(differ.nonzero()[0])
                return CheckResult(False, f"output '{name}': {mismatched} of {o.numel()} elements differ (exact match "
                                   f"required); first at flat index {first}: {o.reshape(-1)[first].item()} vs reference "
                                   f"{r.reshape(-1)[first].item()}", max_abs, max_rel, mismatched)
            continue
        fast = _all_within_on_host(out, ref, tol.atol, tol.rtol)
        if fast is not None:  # every element within (no NaN): the maxima, in one pass
            max_abs, max_rel = max(max_abs, fast[0]), max(max_rel, fast[1])
            continue
        o, r = out.detach().to(torch.float64).reshape(-1), ref.to(torch.float64).reshape(-1)
        abs_err = (o - r).abs()
        r_abs = r.abs()
        if bool((abs_err <= tol.atol + tol.rtol * r_abs).all()):  # the common case: every element within (no NaN)
            nonzero = r != 0
            max_abs = max(max_abs, float(abs_err.max()))
            if bool(nonzero.any()):
                max_rel = max(max_rel, float((abs_err[nonzero] / r_abs[nonzero]).max()))
            continue
        ref_finite, out_finite = torch.isfinite(r), torch.isfinite(o)
        bad = ref_finite & ~out_finite
        if bool(bad.any()):
            nans = int((bad & torch.isnan(o)).sum())
            unwritten = " (left unwritten: the poison is NaN)" if dps and nans else ""
            first = int(bad.nonzero()[0])
            return CheckResult(False, f"output '{name}': {int(bad.sum())} of {o.numel()} elements are NaN or Inf where "
                               f"the reference is finite{unwritten}; first at flat index {first}: "
                               f"{o[first].item():.6g} vs reference {r[first].item():.6g}",
                               float("inf"), float("inf"), int(bad.sum()))
        both = ref_finite & out_finite
        abs_err = torch.where(both, (o - r).abs(), torch.zeros_like(o))
        nonzero = both & (r != 0)
        rel_err = torch.where(nonzero, abs_err / r.abs().where(nonzero, torch.ones_like(r)), torch.zeros_like(o))
        allowed = tol.atol + tol.rtol * r.abs()
        same_non_finite = (o == r) | (torch.isnan(o) & torch.isnan(r))
        matched = torch.where(both, abs_err <= allowed, same_non_finite)
        max_abs, max_rel = max(max_abs, float(abs_err.max())), max(max_rel, float(rel_err.max()))
        failed = int((~matched).sum())
        ratio = 1.0 - failed / o.numel()
        if ratio < tol.required_matched_ratio:
            excess = torch.where(both, abs_err - allowed, torch.full_like(o, float("inf")))
            excess = torch.where(matched, torch.full_like(o, float("-inf")), excess)
            worst = int(excess.argmax())
            return CheckResult(
                False,
                f"output '{name}': {failed} of {o.numel()} elements outside atol={tol.atol:g}, rtol={tol.rtol:g} "
                f"({ratio:.4%} matched, needs {tol.required_matched_ratio:.4%}); worst failing at flat index "
                f"{worst}: {o[worst].item():.6g} vs reference {r[worst].item():.6g} (|error| "
                f"{abs_err[worst].item():.3g}, allowed {allowed[worst].item():.3g})",
                max_abs, max_rel, failed,
            )
    return CheckResult(True, "", max_abs, max_rel)
