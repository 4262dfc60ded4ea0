"""torch.profiler over warm forward calls, each op's self time attributed to the module that ran it.

Every module call is wrapped, through global forward hooks, in a `record_function` range
named `solforge.module::<id>`; after the run each ATen op event walks up its parents to
the innermost such range. So `aten::mm` under `aten::linear` under
`model.layers.0.mlp.gate_proj` counts for that Linear, as the root op `aten::linear`, with
the root op's input shapes.

Times: self time on the device that does the work: the CPU's self time on the CPU, the
events' self device time (the kernels each op launched) on CUDA, in microseconds as the
profiler reports them, divided by the number of profiled calls. The total is the wall
time of the root module's range (CPU) or the sum of device self times (CUDA), so the
shares of all records add up to at most 1; the remainder is framework and Python time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCOPE = "solforge.module::"


@dataclass
class ModuleInfo:
    """A module seen during the run: its qualified name (or class name for an unnamed one) and class."""

    name: str
    cls: str
    layer_name: str | None  # the `kernels` layer name of its class (e.g. "RMSNorm"), where it has one
    module: Any  # the torch.nn.Module itself
    parent: str | None  # the qualified name of the enclosing named module


@dataclass
class OpRecord:
    """One ATen op call (the root op of a nest) inside one module call."""

    module: str  # ModuleInfo.name of the innermost module
    op: str  # root op name, e.g. "aten::linear"
    input_shapes: list[list[int]]
    input_dtypes: list[str]
    self_us: float  # self time of the op and every op nested in it, microseconds, summed over calls
    start_us: float  # start of the first call, for ordering inside a module


@dataclass
class ProfileRun:
    """What one profiling run saw."""

    records: list[OpRecord]
    modules: dict[str, ModuleInfo]
    total_us: float  # per call, see the module docstring
    iterations: int
    device: str
    wall_ms: float  # median wall time of one call outside the profiler, milliseconds
    op_totals_us: dict[str, float] = field(default_factory=dict)  # per leaf op name, per call


def run_profile(model, call: Callable[[], Any], *, device: str = "cpu", warmup: int = 2,
                iterations: int = 5) -> ProfileRun:
    """Profile `iterations` calls of `call` after `warmup` unprofiled ones; see the module docstring."""
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    names = {id(m): n or type(m).__name__ for n, m in model.named_modules()}
    parents: dict[str, str | None] = {}
    for n, m in model.named_modules():
        for child_name, child in m.named_children():
            parents[names[id(child)]] = names[id(m)]
    infos: dict[str, ModuleInfo] = {}
    stack: list = []

    def pre(module, args):
        key = names.get(id(module))
        if key is None:  # a module outside the model's tree (e.g. a function turned into a layer)
            key = f"{type(module).__name__}@{id(module):x}"
        if key not in infos:
            infos[key] = ModuleInfo(key, type(module).__name__, getattr(type(module), "kernel_layer_name", None),
                                    module, parents.get(key) or (stack[-1][0] if stack else None))
        rf = record_function(f"{SCOPE}{key}")
        rf.__enter__()
        stack.append((key, rf))

    def post(module, args, output):
        if stack:
            _, rf = stack.pop()
            rf.__exit__(None, None, None)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    handles = [torch.nn.modules.module.register_module_forward_pre_hook(pre),
               torch.nn.modules.module.register_module_forward_hook(post)]
    try:
        with torch.no_grad():
            walls = []
            for _ in range(warmup):
                call()
            sync()
            for _ in range(max(3, iterations)):
                t0 = time.perf_counter()
                call()
                sync()
                walls.append((time.perf_counter() - t0) * 1e3)
            activities = [ProfilerActivity.CPU]
            if device.startswith("cuda"):
                activities.append(ProfilerActivity.CUDA)
            with profile(activities=activities, record_shapes=True) as prof:
                for _ in range(iterations):
                    call()
                sync()
    finally:
        for h in handles:
            h.remove()
        for _, rf in reversed(stack):
            rf.__exit__(None, None, None)
    events = prof.events()
    records, root_us, leaf = _attribute(events, device)
    walls.sort()
    use_device = device.startswith("cuda")
    total = sum(r.self_us for r in records) if use_device else root_us
    return ProfileRun(
        records=[_per_call(r, iterations) for r in records], modules=infos, total_us=total / iterations,
        iterations=iterations, device=device, wall_ms=walls[len(walls) // 2],
        op_totals_us={k: v / iterations for k, v in leaf.items()},
    )


def _self_time(event, device: str) -> float:
    if device.startswith("cuda"):
        return float(getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0))
    return float(event.self_cpu_time_total)


def _attribute(events, device: str) -> tuple[list[OpRecord], float, dict[str, float]]:
    """Merge op events into records keyed by (module, root op, shapes); returns them, the root
    scopes' total wall time, and self time per leaf op name."""
    merged: dict[tuple, OpRecord] = {}
    root_us = 0.0
    leaf: dict[str, float] = {}
    for ev in events:
        if ev.name.startswith(SCOPE):
            parent = ev.cpu_parent
            while parent is not None and not parent.name.startswith(SCOPE):
                parent = parent.cpu_parent
            if parent is None:
                root_us += float(ev.cpu_time_total)
            continue
        if not ev.name.startswith("aten::"):
            continue
        t = _self_time(ev, device)
        leaf[ev.name] = leaf.get(ev.name, 0.0) + t
        root, scope = ev, None
        node = ev.cpu_parent
        while node is not None:
            if node.name.startswith(SCOPE):
                scope = node.name[len(SCOPE):]
                break
            if node.name.startswith("aten::"):
                root = node
            node = node.cpu_parent
        if scope is None:
            continue
        shapes = [list(s) for s in (root.input_shapes or []) if isinstance(s, (list, tuple))]
        dtypes = [str(d) for d in (getattr(root, "input_type", None) or [])] if hasattr(root, "input_type") else []
        if not dtypes:
            dtypes = [str(d) for d in (getattr(root, "input_dtypes", None) or [])]
        key = (scope, root.name, tuple(tuple(s) for s in shapes), _root_index(root))
        rec = merged.get(key)
        start = float(root.time_range.start)
        if rec is None:
            merged[key] = OpRecord(scope, root.name, shapes, dtypes, t, start)
        else:
            rec.self_us += t
            rec.start_us = min(rec.start_us, start)
    return list(merged.values()), root_us, leaf


def _root_index(root) -> int:
    """Position of a root op among its scope's children (the same op twice in one module,
    e.g. the two residual adds of a decoder layer, stays two records)."""
    parent = root.cpu_parent
    if parent is None:
        return 0
    same = [c for c in parent.cpu_children if c.name == root.name]
    for i, c in enumerate(same):
        if c is root:
            return i
    return 0


def _per_call(r: OpRecord, iterations: int) -> OpRecord:
    return OpRecord(r.module, r.op, r.input_shapes, r.input_dtypes, r.self_us / iterations, r.start_us)
