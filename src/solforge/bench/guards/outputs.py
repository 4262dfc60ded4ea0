"""Guards on what a call returns: lazy or wrapped outputs, and results cached across calls."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from solforge.bench.guards.findings import Guard, finding
from solforge.spec import DEFAULT_TOLERANCES, Definition, DType, GuardFinding, Tolerance

if TYPE_CHECKING:
    import torch


def output_findings(outputs: object, expected_device: str) -> list[GuardFinding]:
    """Every output must be exactly a `torch.Tensor` holding data on `expected_device`.

    `outputs` is what the entry point returned: a tensor, or a tuple or list of them
    (exactly `tuple`/`list`: a container subclass can compute its items on access).
    Refused, as "lazy-output": tensor subclasses (FakeTensor, `__torch_function__` and
    `__torch_dispatch__` wrappers, Parameter), functorch-wrapped tensors, meta tensors,
    non-strided layouts, and anything not a tensor (generators, coroutines, futures,
    callables, numpy arrays, None). A device differs when its type differs, or its index
    differs and `expected_device` names one ("cuda:1"). Raises nothing.
    """
    import torch

    if type(outputs) in (tuple, list):
        items = list(outputs)  # type: ignore[call-overload]
    elif isinstance(outputs, (tuple, list)):
        return [finding(Guard.LAZY_OUTPUT, f"lazy or wrapped output: the outputs come in a "
                                           f"{type(outputs).__qualname__}, not a tuple or list")]
    else:
        items = [outputs]
    expected = torch.device(expected_device)
    out = []
    for i, x in enumerate(items):
        problem = _problem(x, expected)
        if problem:
            out.append(finding(Guard.LAZY_OUTPUT, f"lazy or wrapped output: output {i} {problem}"))
    return out


def _problem(x: object, expected: torch.device) -> str | None:
    import torch

    if type(x) is not torch.Tensor:
        name = f"{type(x).__module__}.{type(x).__qualname__}"
        if isinstance(x, torch.Tensor):
            return f"is a {name} (a torch.Tensor subclass), not a torch.Tensor"
        kind = ("a generator" if inspect.isgenerator(x) else "a coroutine" if inspect.isawaitable(x)
                else "a future" if hasattr(x, "result") and hasattr(x, "done") else "a callable" if callable(x)
                else "a numpy array" if type(x).__module__ == "numpy" else "not a tensor")
        return f"is {kind} ({name}), not a torch.Tensor"
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and functorch.is_functorch_wrapped_tensor(x):
        return "is a functorch-wrapped tensor, not a plain torch.Tensor"
    if x.is_meta:
        return "is a meta tensor (it holds no data)"
    if x.layout is not torch.strided:
        return f"has layout {x.layout}, not torch.strided"
    if x.device.type != expected.type or (expected.index is not None and x.device.index != expected.index):
        return f"is on {x.device}, expected {expected}"
    return None


@dataclasses.dataclass
class _Trial:
    trial: int
    outputs: list  # the returned objects, kept alive so the allocator cannot hand their addresses out again
    values: list  # their values at return: a later trial may overwrite an output that aliases an input
    reference: list
    correct: list[bool]
    storages: set[int]  # storage data_ptrs of the outputs


class CacheDetector:
    """Sees each correctness trial of one solution on one workload and flags results
    carried over from an earlier call.

    Keeps every observed output (and a copy of its values) and reference alive for its
    lifetime, a few trials of workload-sized tensors: make one per (solution, workload)
    and drop it after.
    """

    def __init__(self, definition: Definition | None = None):
        """`definition` gives the per-dtype tolerances for "matches"; the defaults otherwise."""
        self._definition = definition
        self._trials: list[_Trial] = []

    def observe(
        self,
        trial: int,
        outputs: list[torch.Tensor],
        reference: list[torch.Tensor],
        same_buffers_as: int | None = None,
        inputs: Iterable[object] = (),
    ) -> list[GuardFinding]:
        """Judge trial `trial`: its outputs and the reference outputs, in the order of the
        definition's outputs. `same_buffers_as=k`: this trial's inputs are trial k's
        buffers with new values written in place. `inputs`: every tensor handed to the call
        (inputs, and outputs in destination-passing style), so that an output aliasing an
        input is not mistaken for one aliasing an earlier result.

        "caching" findings:
        - by address: an output misses this trial's reference but matches trial k's
          result, where k is `same_buffers_as` (a cache keyed by data_ptr);
        - by call count: the same, for any other earlier trial (a result kept regardless
          of the inputs);
        - by content: an output shares storage with an output of an earlier trial that is
          still alive here (a cache keyed by input values, returning the same tensor).
        "Matches" uses the definition's tolerance for the dtype; an earlier result counts
        only if it matched its own reference and is not all zeros within tolerance, so a
        kernel that is merely wrong the same way twice is INCORRECT, not a cache.
        Non-tensor outputs are skipped (see `output_findings`). Raises nothing.
        """
        import torch

        outs = [o for o in outputs]
        refs = [r for r in reference]
        correct = [self._close(o, r) for o, r in zip(outs, refs)]
        input_storages = {_storage(t) for t in inputs if type(t) is torch.Tensor} - {None}
        found: list[GuardFinding] = []
        for i, o in enumerate(outs):
            if type(o) is not torch.Tensor:
                continue
            hit = None if (i < len(correct) and correct[i]) else self._earlier_match(i, o)
            if hit is not None:
                how = "address" if same_buffers_as == hit else "call count"
                found.append(finding(Guard.CACHING, f"caching results across calls (by {how}): output {i} of "
                                                    f"trial {trial} misses its reference but matches trial {hit}'s"))
                continue
            ptr = _storage(o)
            for prev in self._trials:
                if ptr is not None and ptr not in input_storages and ptr in prev.storages:
                    found.append(finding(Guard.CACHING, f"caching results across calls (by content): output {i} of "
                                                        f"trial {trial} is storage returned by trial {prev.trial}"))
                    break
        values = [o.detach().clone() if type(o) is torch.Tensor else None for o in outs]
        storages = {p for o in outs if type(o) is torch.Tensor and (p := _storage(o)) is not None}
        self._trials.append(_Trial(trial, outs, values, refs, correct, storages))
        return found

    def _earlier_match(self, i: int, out: torch.Tensor) -> int | None:
        for prev in reversed(self._trials):
            if i >= len(prev.reference):
                continue
            prev_out, prev_ref = prev.values[i] if i < len(prev.values) else None, prev.reference[i]
            if prev.correct[i] and self._informative(prev_out) and self._close(out, prev_out):
                return prev.trial
            if self._informative(prev_ref) and self._close(out, prev_ref):
                return prev.trial
        return None

    def _tolerance(self, t: torch.Tensor) -> Tolerance:
        name = str(t.dtype).removeprefix("torch.")
        dtype = DType.__members__.get(name)
        if dtype is None:
            return Tolerance(atol=0.0, rtol=0.0)
        return self._definition.tolerance_for(dtype) if self._definition else DEFAULT_TOLERANCES[dtype.canonical]

    def _close(self, a: object, b: object) -> bool:
        import torch

        if type(a) is not torch.Tensor or not isinstance(b, torch.Tensor) or a.shape != b.shape:
            return False
        if a.numel() == 0:
            return True
        tol = self._tolerance(b)
        x, y = a.detach().to(torch.float64), b.detach().to(device=a.device, dtype=torch.float64)
        ok = ((x - y).abs() <= tol.atol + tol.rtol * y.abs()) | (x == y) | (x.isnan() & y.isnan())
        return bool(ok.to(torch.float64).mean() >= tol.required_matched_ratio)

    def _informative(self, t: object) -> bool:
        import torch

        return type(t) is torch.Tensor and t.numel() > 0 and not self._close(t, torch.zeros_like(t))


def _storage(t: torch.Tensor) -> int | None:
    if t.numel() == 0 or t.is_meta:
        return None
    ptr = t.untyped_storage().data_ptr()
    return ptr or None
