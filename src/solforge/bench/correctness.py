"""Correctness: is a solution's output the definition's output? Runs inside the worker.

The protocol, per workload (`run_trials`):

- `trials` trials, each of two calls; call k gets fresh inputs from its own seed, with
  the value distribution `DISTRIBUTIONS[k % 4]` (normal, large, tiny, mixed), so a
  kernel is checked beyond the standard normal.
- Before each solution call the reference runs on that call's inputs, in higher
  precision where the dtype allows (float inputs upcast to float64 on the CPU; on a
  GPU to float32, or float64 for float32 inputs), falling back to the native dtypes if
  the reference rejects them. Its outputs, rounded to the output dtypes, are what the
  solution is compared with.
- Every input, reference output and solution output of the workload stays alive until
  the last call: a buffer the reference freed cannot be handed back to the solution by
  the caching allocator, no two calls see inputs at the same address, and the guard's
  alias check is not fooled by a reused address. Since each call runs right after a
  reference call on other inputs, a solution that returns a stale buffer fails. The
  price is memory: 2 * trials + 1 sets of inputs and outputs are alive at the end.
- A last call reuses the first call's input buffers with new values copied in (the
  situation of CUDA-graph timing); a result cached by address fails there. A trace's
  `correctness_trials` counts the calls checked: 2 * trials + 1.
- Destination-passing outputs are poisoned before the call (NaN; integers the dtype's
  minimum), so unwritten elements fail. Inputs are compared bit for bit with a clone
  taken before the call: a solution that writes its inputs fails with
  INCORRECT_NUMERICAL naming the input (an in-place update is the usual honest bug;
  the exploits that carry state in their inputs are caught by the cache guard).
- Tolerance per output dtype, `Definition.tolerance_for`: an element matches when
  |out - ref| <= atol + rtol * |ref|; at least `required_matched_ratio` must match. A
  NaN or Inf where the reference is finite fails whatever the ratio; where the
  reference is NaN or Inf the output must be the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from solforge.bench.inputs import DISTRIBUTIONS, cast_clamped, is_packed, make_inputs
from solforge.spec import Definition, EvaluationStatus, GuardFinding, SpecError, Workload

if TYPE_CHECKING:
    import torch


@dataclass
class Verdict(Exception):
    """Ends the evaluation of a workload with a failed status."""

    status: EvaluationStatus
    message: str
    findings: list[GuardFinding] = field(default_factory=list)
    max_absolute_error: float = 0.0
    max_relative_error: float = 0.0

    def __str__(self) -> str:
        return f"{self.status.value}: {self.message}"


@dataclass
class CheckResult:
    """The comparison of one call's outputs with the reference's."""

    passed: bool
    message: str
    max_absolute_error: float = 0.0
    max_relative_error: float = 0.0  # over elements whose reference is nonzero


@dataclass
class WorkloadContext:
    """What correctness and timing need to know about the workload being evaluated."""

    definition: Definition
    workload: Workload
    axes: dict[str, int]
    device: str
    seed: int
    dataset_root: Path | None
    dps: bool
    reference: Callable[..., Any]
    reference_precision: str | None = None  # decided by the first reference call

    def call_seed(self, tag: str) -> int:
        """A seed of its own for each call (and each workload), stable across runs."""
        key = f"{self.seed}:{self.workload.uuid}:{tag}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:7], "little")

    def make(self, tag: str, distribution: str) -> dict[str, Any]:
        return make_inputs(
            self.definition, self.workload, self.axes, self.call_seed(tag), distribution, self.device, self.dataset_root
        )


@dataclass
class TrialsReport:
    calls: int
    max_absolute_error: float
    max_relative_error: float
    reference_precision: str


# -- the reference ------------------------------------------------------------------------


def _upcast_dtype(inputs: dict[str, Any], device: str) -> torch.dtype | None:
    import torch

    floats = [v for v in inputs.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not floats:
        return None
    if device == "cpu" or any(v.dtype in (torch.float32, torch.float64) for v in floats):
        return torch.float64
    return torch.float32


def reference_expected(ctx: WorkloadContext, inputs: dict[str, Any]) -> list[torch.Tensor]:
    """The reference's outputs on `inputs`, rounded to the output dtypes, in the order of
    `definition.outputs`. Sets `ctx.reference_precision` on the first call ('float64',
    'float32' or 'native'). Raises Verdict(RUNTIME_ERROR) when the reference raises in
    every precision (it runs in the solution's worker, so the solution may be the cause),
    and SpecError when it returns outputs of the wrong number or shape (a defect of the
    definition)."""
    import torch

    name = ctx.definition.name
    if ctx.reference_precision is not None:
        tried = [ctx.reference_precision]
    else:
        up = _upcast_dtype(inputs, ctx.device)
        tried = ([str(up).removeprefix("torch.")] if up is not None else []) + ["native"]
    error: Exception | None = None
    for precision in tried:
        # Copies either way: a reference that writes its inputs must not change the solution's.
        target = None if precision == "native" else getattr(torch, precision)
        args = {
            k: (v.to(target) if target is not None and v.is_floating_point() else v.clone())
            if isinstance(v, torch.Tensor) else v
            for k, v in inputs.items()
        }
        try:
            with torch.no_grad():
                ret = ctx.reference(**args)
        except Exception as exc:  # a reference that rejects upcast inputs falls back to native
            error = exc
            continue
        ctx.reference_precision = precision
        break
    else:
        raise Verdict(
            EvaluationStatus.RUNTIME_ERROR,
            f"the reference of {name} raised {type(error).__name__}: {error} (a defect of the definition or the "
            "workload, or of state the solution left behind)",
        )
    outs = list(ret) if isinstance(ret, (tuple, list)) else [ret]
    if len(outs) != len(ctx.definition.outputs):
        raise SpecError(
            f"definition {name}: reference: returned {len(outs)} outputs, expected {len(ctx.definition.outputs)}"
        )
    expected = []
    for (oname, spec), out in zip(ctx.definition.outputs.items(), outs):
        out = torch.as_tensor(out, device=ctx.device)
        shape = ctx.definition.shape_of(spec, ctx.axes)
        if tuple(out.shape) != shape:
            raise SpecError(
                f"definition {name}: reference: output '{oname}' has shape {tuple(out.shape)}, expected {shape}"
            )
        expected.append(_round_to(out, spec.dtype.to_torch()))
    return expected


def _round_to(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The reference output as the output dtype: IEEE rounding (overflow to infinity),
    except for e4m3fn, which has no infinity and whose kernels saturate."""
    import torch

    if dtype == torch.float8_e4m3fn and out.is_floating_point():
        return cast_clamped(out, dtype)
    return out.to(dtype)


# -- outputs ------------------------------------------------------------------------------


def allocate_outputs(ctx: WorkloadContext) -> dict[str, torch.Tensor]:
    """Destination buffers, poisoned: NaN for floats, the dtype's minimum for integers
    (bools cannot be poisoned: both values are valid)."""
    import torch

    out = {}
    for name, spec in ctx.definition.outputs.items():
        dtype = spec.dtype.to_torch()
        buf = torch.empty(ctx.definition.shape_of(spec, ctx.axes), dtype=dtype, device=ctx.device)
        if dtype.is_floating_point and dtype.itemsize > 1:
            buf.fill_(float("nan"))
        elif dtype.is_floating_point:  # fp8: fill through the bytes (e4m3fn NaN is 0x7F)
            buf.view(torch.uint8).fill_(0x7F)
        elif dtype != torch.bool and dtype.itemsize <= 8 and not is_packed(dtype):
            buf.fill_(torch.iinfo(dtype).min)
        out[name] = buf
    return out


def outputs_of(ret: Any, ctx: WorkloadContext) -> list[torch.Tensor]:
    """A non-DPS call's return value as a list in the order of `definition.outputs`.
    Raises Verdict(INCORRECT_SHAPE) for a wrong count or a non-tensor."""
    import torch

    n = len(ctx.definition.outputs)
    outs = list(ret) if isinstance(ret, (tuple, list)) else [ret]
    if len(outs) != n:
        raise Verdict(EvaluationStatus.INCORRECT_SHAPE, f"returned {len(outs)} value(s), expected {n} output(s)")
    for name, out in zip(ctx.definition.outputs, outs):
        if not isinstance(out, torch.Tensor):
            raise Verdict(EvaluationStatus.INCORRECT_SHAPE, f"output '{name}' is a {type(out).__name__}, not a tensor")
    return outs


def check_structure(outputs: list[torch.Tensor], ctx: WorkloadContext) -> None:
    """Raises Verdict for an output of the wrong shape, dtype or device."""
    import torch

    for (name, spec), out in zip(ctx.definition.outputs.items(), outputs):
        shape = ctx.definition.shape_of(spec, ctx.axes)
        if tuple(out.shape) != shape:
            raise Verdict(EvaluationStatus.INCORRECT_SHAPE,
                          f"output '{name}' has shape {tuple(out.shape)}, expected {shape}")
        if out.dtype != spec.dtype.to_torch():
            raise Verdict(EvaluationStatus.INCORRECT_DTYPE,
                          f"output '{name}' is {out.dtype}, expected {spec.dtype.to_torch()}")
        if out.device != torch.device(ctx.device):
            raise Verdict(EvaluationStatus.RUNTIME_ERROR, f"output '{name}' is on {out.device}, expected {ctx.device}")


def compare_outputs(
    outputs: list[torch.Tensor], expected: list[torch.Tensor], ctx: WorkloadContext
) -> CheckResult:
    """Compare outputs (already of the right shape and dtype) with the reference's,
    element by element in float64, under `definition.tolerance_for(dtype)`.
    Errors are absolute (output units) and relative (|out - ref| / |ref|, over elements
    whose reference is nonzero), the maxima over all outputs."""
    import torch

    max_abs = max_rel = 0.0
    for (name, spec), out, ref in zip(ctx.definition.outputs.items(), outputs, expected):
        if out.numel() == 0:
            continue
        tol = ctx.definition.tolerance_for(spec.dtype)
        if is_packed(out.dtype) or not out.dtype.is_floating_point:
            o, r = (out.view(torch.uint8), ref.view(torch.uint8)) if is_packed(out.dtype) else (out, ref)
            mismatched = int((o != r).sum())
            if mismatched:
                return CheckResult(False, f"output '{name}': {mismatched} of {o.numel()} elements differ (exact match "
                                   "required)", max_abs, max_rel)
            continue
        o, r = out.detach().to(torch.float64), ref.to(torch.float64)
        ref_finite, out_finite = torch.isfinite(r), torch.isfinite(o)
        bad = ref_finite & ~out_finite
        if bool(bad.any()):
            nans = int((bad & torch.isnan(o)).sum())
            unwritten = " (left unwritten: the poison is NaN)" if ctx.dps and nans else ""
            return CheckResult(False, f"output '{name}': {int(bad.sum())} elements are NaN or Inf where the reference "
                               f"is finite{unwritten}", float("inf"), float("inf"))
        both = ref_finite & out_finite
        abs_err = torch.where(both, (o - r).abs(), torch.zeros_like(o))
        nonzero = both & (r != 0)
        rel_err = torch.where(nonzero, abs_err / r.abs().where(nonzero, torch.ones_like(r)), torch.zeros_like(o))
        same_non_finite = (o == r) | (torch.isnan(o) & torch.isnan(r))
        matched = torch.where(both, abs_err <= tol.atol + tol.rtol * r.abs(), same_non_finite)
        max_abs, max_rel = max(max_abs, float(abs_err.max())), max(max_rel, float(rel_err.max()))
        ratio = float(matched.double().mean())
        if ratio < tol.required_matched_ratio:
            worst = int(abs_err.argmax())
            got, want = o.reshape(-1)[worst].item(), r.reshape(-1)[worst].item()
            return CheckResult(
                False,
                f"output '{name}': {ratio:.4%} of elements within atol={tol.atol:g}, rtol={tol.rtol:g} (needs "
                f"{tol.required_matched_ratio:.4%}); worst at flat index {worst}: {got:.6g} vs reference {want:.6g}",
                max_abs,
                max_rel,
            )
    return CheckResult(True, "", max_abs, max_rel)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return a.numel() == 0 or torch.equal(
        a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)
    )


def clone_tensors(inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    import torch

    return {k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}


def check_inputs_unchanged(before: dict[str, torch.Tensor], inputs: dict[str, Any]) -> None:
    """Raises Verdict(INCORRECT_NUMERICAL) naming the first input whose bits changed."""
    for name, old in before.items():
        if not _same_bits(old, inputs[name]):
            raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL, f"input '{name}' was modified by the call (a solution "
                          "must not write its inputs)")


# -- the trials -----------------------------------------------------------------------------


# The worker's guarded call: invoke(kwargs, dps_outputs, timer=None, around=None) -> outputs.
Invoke = Callable[..., "list[torch.Tensor]"]


def check_call(
    ctx: WorkloadContext,
    invoke: Invoke,
    inputs: dict[str, Any],
    expected: list[torch.Tensor],
    observe: Callable[[list[torch.Tensor], list[torch.Tensor], list[Any]], list[GuardFinding]] | None = None,
) -> tuple[list[torch.Tensor], CheckResult]:
    """Call the solution once on `inputs` and check it against `expected`. `invoke` is the
    worker's guarded call (raises Verdict for an exception or a guard finding);
    `observe(outputs, expected, handed)` is the cache guard, `handed` every tensor given
    to the call. Returns the outputs (to keep alive) and the comparison.
    Raises Verdict for any failure."""
    before = clone_tensors(inputs)
    dps_outputs = allocate_outputs(ctx) if ctx.dps else None
    outputs = invoke(dict(inputs), dps_outputs)
    check_inputs_unchanged(before, inputs)
    check_structure(outputs, ctx)
    if observe is not None:
        findings = observe(outputs, expected, [*inputs.values(), *(dps_outputs or {}).values()])
        if findings:
            raise Verdict(EvaluationStatus.REWARD_HACK, "; ".join(f.message for f in findings), findings)
    result = compare_outputs(outputs, expected, ctx)
    if not result.passed:
        raise Verdict(EvaluationStatus.INCORRECT_NUMERICAL, result.message, [], result.max_absolute_error,
                      result.max_relative_error)
    return outputs, result


def run_trials(ctx: WorkloadContext, invoke: Invoke, trials: int, cache_detector: Any | None = None) -> TrialsReport:
    """The correctness protocol of the module docstring: 2 * trials calls on fresh inputs,
    then one on the first call's buffers refilled. Raises Verdict at the first failure
    (with the errors measured so far) and SpecError for a defective reference."""
    import torch

    kept: list[tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor]]] = []
    max_abs = max_rel = 0.0

    def one(k: int, inputs: dict[str, Any], same_buffers_as: int | None) -> None:
        nonlocal max_abs, max_rel
        expected = reference_expected(ctx, inputs)
        observe = None
        if cache_detector is not None:
            def observe(outs, ref, handed):
                return cache_detector.observe(k, outs, ref, same_buffers_as, inputs=handed)
        try:
            outputs, result = check_call(ctx, invoke, inputs, expected, observe)
        except Verdict as v:
            v.max_absolute_error = max(v.max_absolute_error, max_abs)
            v.max_relative_error = max(v.max_relative_error, max_rel)
            v.message = f"call {k} ({DISTRIBUTIONS[k % len(DISTRIBUTIONS)]} inputs): {v.message}"
            raise
        max_abs, max_rel = max(max_abs, result.max_absolute_error), max(max_rel, result.max_relative_error)
        kept.append((inputs, expected, outputs))

    calls = 2 * trials
    for k in range(calls):
        one(k, ctx.make(f"check{k}", DISTRIBUTIONS[k % len(DISTRIBUTIONS)]), None)
    first = kept[0][0]
    fresh = ctx.make(f"check{calls}", DISTRIBUTIONS[calls % len(DISTRIBUTIONS)])
    for name, value in first.items():
        if isinstance(value, torch.Tensor):
            value.copy_(fresh[name])
    one(calls, first, 0)
    assert ctx.reference_precision is not None
    return TrialsReport(calls + 1, max_abs, max_rel, ctx.reference_precision)
