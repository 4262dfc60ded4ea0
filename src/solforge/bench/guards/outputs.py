"""The guard on what a call returns: lazy or wrapped outputs. (Results cached across calls
are the judge's to see: `judge.WorkloadRun._cache_findings`.)"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from solforge.bench.guards.findings import Guard, finding
from solforge.spec import GuardFinding

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
