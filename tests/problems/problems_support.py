"""Helpers shared by the built-in suite's tests (test_problems_builtin.py, _suite_a.py, _suite_b.py):
loading a definition's workloads, the harness's CPU inputs, running a reference (on smoke
workloads, or on meta tensors at real sizes with a peak-memory estimate), SOL counts, the
tolerance rule, and float64 / flash-style attention to compare references against.

Named `problems_support` rather than `support`: under pytest's default "prepend" import mode
every test folder without an `__init__.py` shares one module namespace, so a `support.py` in
two folders would be one module to whichever test imports it second.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from solforge.problems import builtin_root, load_builtin, select_workloads
from solforge.spec import Definition, Tolerance, Workload

# -- workloads --------------------------------------------------------------------------------


def workload(name: str, uuid: str) -> tuple[Definition, Workload]:
    """A built-in definition and its workload `uuid` (StopIteration when it has none)."""
    defn, workloads = load_builtin(name)
    return defn, next(w for w in workloads if w.uuid == uuid)


def smoke(name: str) -> tuple[Definition, list[Workload]]:
    """A built-in definition and its smoke workloads."""
    defn, workloads = load_builtin(name)
    return defn, select_workloads(workloads, "smoke")


def smoke_cases(names: Iterable[str]) -> list[tuple[str, str]]:
    """(definition, workload uuid) of every smoke workload of `names`, for parametrize."""
    return [(n, w.uuid) for n in names for w in select_workloads(load_builtin(n)[1], "smoke")]


def real_cases(names: Iterable[str]) -> list[tuple[str, str]]:
    """(definition, workload uuid) of every real (non-smoke) workload of `names`, held-out ones included."""
    return [(n, w.uuid) for n in names for w in select_workloads(load_builtin(n)[1], "all")]


# -- inputs and references --------------------------------------------------------------------


def reference(defn: Definition, **overrides):
    """The reference's `run`, from a fresh module namespace (module constants overridable)."""
    namespace: dict = {"__name__": f"reference_{defn.name}"}
    exec(compile(defn.reference, f"<reference of {defn.name}>", "exec"), namespace)
    namespace.update(overrides)
    return namespace["run"]


def to_float64(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float tensors as float64, others as they are: the harness's inputs for a precise reference."""
    return {n: t.double() if t.is_floating_point() else t for n, t in inputs.items()}


def make_inputs(defn: Definition, wl: Workload, seed: int = 0, upcast: bool = False,
                distribution: str = "normal") -> dict[str, torch.Tensor]:
    """The harness's inputs (solforge.bench.inputs.make_inputs) on the CPU. With `upcast`,
    float tensors become float64, as the harness does for a precise reference."""
    from solforge.bench.inputs import make_inputs as harness_inputs

    inputs = harness_inputs(defn, wl, defn.resolve_axes(wl.axes), seed, distribution, "cpu", builtin_root())
    return to_float64(inputs) if upcast else inputs


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def meta_inputs(defn: Definition, wl: Workload, float_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Meta tensors of the workload's input shapes: the declared dtypes, floats as `float_dtype` when given."""
    axes = defn.resolve_axes(wl.axes)
    return {n: torch.empty(defn.shape_of(s, axes), device="meta",
                           dtype=float_dtype if float_dtype is not None and s.dtype.is_floating else s.dtype.to_torch())
            for n, s in defn.inputs.items()}  # fmt: skip


def resolve_torch_name(dotted: str) -> object:
    """The object a dotted `torch.` name stands for; AttributeError when it names nothing."""
    obj = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def count(name: str, uuid: str):
    """`solforge.roofline.count_work` of one built-in workload."""
    from solforge.roofline import count_work

    return count_work(*workload(name, uuid))


# -- peak memory ------------------------------------------------------------------------------


class PeakBytes(TorchDispatchMode):
    """Peak bytes of the tensors ops create and keep alive (views and in-place ops add none);
    with `meta_only`, of meta tensors only (a reference that reads some inputs on the host)."""

    def __init__(self, meta_only: bool = False) -> None:
        super().__init__()
        self.meta_only = meta_only
        self.live = self.peak = 0

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and not func._schema.is_mutable:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and (not self.meta_only or t.device.type == "meta"):
                    n = t.numel() * t.element_size()
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._free, n)
        return out


def run_with_peak(defn: Definition, kwargs: dict[str, torch.Tensor], meta_only: bool = False,
                  **overrides) -> tuple[tuple, float]:
    """The reference's outputs on `kwargs`, and the bytes of `kwargs` plus the run's peak, in GiB."""
    inputs = sum(t.numel() * t.element_size() for t in kwargs.values())
    mode = PeakBytes(meta_only)
    with mode:
        outs = as_tuple(reference(defn, **overrides)(**kwargs))
    return outs, (inputs + mode.peak) / 2**30


def peak_gib(defn: Definition, wl: Workload, **overrides) -> float:
    """float64 inputs (the harness's precise reference) plus the reference's peak, in GiB."""
    return run_with_peak(defn, meta_inputs(defn, wl, torch.float64), **overrides)[1]


# -- tolerances and attention -----------------------------------------------------------------


def passes(out: torch.Tensor, ref: torch.Tensor, tol: Tolerance) -> bool:
    """|out - ref| <= atol + rtol * |ref| on at least required_matched_ratio of the elements."""
    out, ref = out.double(), ref.double()
    ok = (out - ref).abs() <= tol.atol + tol.rtol * ref.abs()
    return ok.double().mean().item() >= tol.required_matched_ratio


def naive_attention(q, k, v, causal: bool, scale: float | None = None) -> torch.Tensor:
    """float64 attention with the KV heads repeated and the full score matrix: (B, Sq, Hq, Dv).
    `scale` defaults to 1/sqrt(head_dim)."""
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        scores = scores.masked_fill(torch.ones(q.shape[1], k.shape[1], dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores, dim=-1), v)


def flash_attention(q, k, v, causal: bool, scale: float | None = None) -> torch.Tensor:
    """What a FlashAttention kernel computes: float32 scores, P rounded to bfloat16 for the
    PV matmul, float32 row sums and accumulation, bfloat16 output."""
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2).float(), v.repeat_interleave(group, dim=2).float()
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k) * scale
    if causal:
        scores = scores.masked_fill(torch.ones(q.shape[1], k.shape[1], dtype=torch.bool).triu(1), float("-inf"))
    p = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    o = torch.einsum("bhqk,bkhd->bqhd", p.bfloat16().float(), v) / p.sum(dim=-1).transpose(1, 2)[..., None]
    return o.bfloat16()


def attention_case(name: str, wl: Workload, distribution: str) -> tuple[dict, torch.Tensor, Tolerance]:
    """The workload's bfloat16 inputs (seed 1), the float64 answer rounded to bfloat16, and the
    tolerance of the output `o`."""
    defn, _ = load_builtin(name)
    inputs = make_inputs(defn, wl, seed=1, distribution=distribution)
    exact = reference(defn)(**to_float64(inputs)).bfloat16()
    return inputs, exact, defn.tolerance_for(defn.outputs["o"].dtype)
