"""The op recorder: every torch op a solution's call reaches, however it was reached.

In the solution's process, around each correctness call (never a timed one), three
observers record what the call did, below any name the solution could hide behind:

- a `TorchFunctionMode`: every torch function, Tensor method and `torch.ops` overload
  called, by canonical name (`canonical_name`), so `F.rms_norm` reached through an
  `nn.Module`, a `vars(module)[computed]` lookup or a module written to disk and
  imported is still `torch.nn.functional.rms_norm`;
- a `TorchDispatchMode`: every aten op that reaches the dispatcher's Python layer, with
  the time spent in it (`aten::_softmax`, `aten::mm`, ...);
- a global `nn.Module` forward pre-hook: the class of every module whose forward ran;
- torch's profiler (RecordFunction, in C++): every op the dispatcher ran, nested ones
  included. It is the second witness: Python modes are popped while an op's own kernel
  runs, so ops inside a custom op's Python kernel reach only the profiler.

The record (`messages.OpRecord`) goes to the judge, which alone decides from it
(`forbidden_findings`, `torch_share`): the solution's process never learns which calls
are forbidden. A recorder removed during the call is itself reported (`intact=False`).

Not covered: code that runs no torch op (numba, Triton, a C extension's own kernels
are the point of a solution and are invisible here by design); a solution that
behaves differently when it detects it is observed (the static guard flags reading
torch's mode stacks; torch's profiler state reads the same in every call,
`guards.observation`; the timed calls are checked by outputs and a profiled sample).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from solforge.bench.guards.findings import Guard, finding
from solforge.bench.messages import OpRecord
from solforge.spec import GuardFinding

if TYPE_CHECKING:
    from solforge.spec import Definition

# aten ops that allocate, view, copy or convert: not the math of an op. Everything
# else a solution runs in torch counts as torch compute for the decoy guard.
NON_COMPUTE_ATEN = frozenset({
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "ones",
    "ones_like", "full", "full_like", "new_zeros", "new_ones", "new_full", "fill_", "zero_", "scalar_tensor",
    "view", "_unsafe_view", "reshape", "_reshape_alias", "as_strided", "expand", "permute", "transpose", "t",
    "unsqueeze", "squeeze", "slice", "select", "detach", "alias", "lift_fresh", "lift_fresh_copy", "split",
    "split_with_sizes", "unbind", "chunk", "narrow", "diagonal", "view_as_real", "view_as_complex", "unfold",
    "_to_copy", "copy_", "clone", "contiguous", "_copy_from", "_copy_from_and_resize", "to", "resize_",
    "set_", "_local_scalar_dense", "item", "is_nonzero", "_has_compatible_shallow_copy_type",
})


# The recorder's own mark: a `record_function` it runs once every witness is on, so a
# record it made shows it in each witness (the modes see its enter op, the profiler its
# name). A record without it was not made by the recorder: emptied or rewritten on its
# way out (`record_findings`).
MARK = "solforge::recorded"
MARK_OP = "profiler::_record_function_enter_new"
TIMED_MARK = "solforge::timed"  # the same, around each profiled timed call (`solution_process.Session.hot`)


def is_compute(op: str) -> bool:
    """Whether an op name the dispatch mode saw is math (`aten::mul.Tensor`), not an
    allocation, view, copy (`NON_COMPUTE_ATEN`) or the profiler's own marks (`profiler::`)."""
    return not op.startswith("profiler::") and op.removeprefix("aten::").split(".")[0] not in NON_COMPUTE_ATEN


def canonical_name(obj: Any) -> str:
    """One name per torch callable, the same in every process: `torch.Tensor.softmax`
    for a Tensor method, `torch.rms_norm` for a function of torch's C module,
    `aten::_softmax` for an op overload or packet, `module.qualname` otherwise (classes
    included: `torch.nn.modules.normalization.RMSNorm`)."""
    import torch

    if isinstance(obj, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        name = getattr(obj, "_qualified_op_name", None) or obj.name()
        return name
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    owner, _, attr = qual.rpartition(".")
    if owner in ("TensorBase", "Tensor", "_TensorBase"):
        return f"torch.Tensor.{attr}"
    if owner == "_VariableFunctionsClass":
        return f"torch.{attr}"
    return f"{module}.{qual}" if module else qual


def _aten_name(func: Any) -> str:
    return func.name() if hasattr(func, "name") else str(func)


class OpRecorder:
    """Record one call's torch ops (see the module docstring). Use as a context manager
    around the call; `record()` afterwards gives the OpRecord."""

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        functions: dict[str, None] = {}
        aten: dict[str, int] = {}
        self._functions, self._aten = functions, aten
        self._modules: dict[str, None] = {}
        self._compute_ns = 0
        self._nested_ns = 0  # time in torch functions called inside a launch of the solution's own kernels
        recorder = self

        class _Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                functions.setdefault(canonical_name(func))
                if not _inside_own_launch():
                    return func(*args, **(kwargs or {}))
                t0 = time.perf_counter_ns()  # torch inside the solution's own launch: not its kernel's time
                try:
                    return func(*args, **(kwargs or {}))
                finally:
                    recorder._nested_ns += time.perf_counter_ns() - t0

        class _Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = _aten_name(func)
                aten[name] = aten.get(name, 0) + 1
                t0 = time.perf_counter_ns()
                out = func(*args, **(kwargs or {}))
                if is_compute(name):
                    elapsed = time.perf_counter_ns() - t0
                    recorder._compute_ns += elapsed
                return out

        self._function_mode = _Functions()
        self._dispatch_mode = _Dispatch()
        self._hook = None
        self._profiler: Any = None
        self._profiled: list[str] = []
        self.intact = True

    def __enter__(self) -> OpRecorder:
        import torch

        def pre_hook(module, args):
            cls = type(module)
            self._modules.setdefault(f"{cls.__module__}.{cls.__qualname__}")

        from solforge.bench.guards.observation import conceal, profiler_running

        self._hook = torch.nn.modules.module.register_module_forward_pre_hook(pre_hook)
        if not profiler_running():  # one profiler at a time (the GPU decoy check's)
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CPU])
            self._profiler.__enter__()
        conceal()  # the call sees no profiler, as in every other call (guards.observation)
        self._function_mode.__enter__()
        self._dispatch_mode.__enter__()
        with torch.profiler.record_function(MARK):
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in (self._dispatch_mode, self._function_mode):
            try:
                mode.__exit__(None, None, None)
            except Exception:  # the mode was popped or replaced during the call
                self.intact = False
        if self._hook is not None:
            self._hook.remove()
        if self._profiler is not None:
            try:
                self._profiler.__exit__(None, None, None)
                self._profiled = sorted({e.name for e in self._profiler.events()})
            except Exception:  # stopped during the call by someone else
                self.intact = False

    def record(self) -> OpRecord:
        return OpRecord(functions=list(self._functions), modules=list(self._modules), aten=dict(self._aten),
                        compute_ms=self._compute_ns / 1e6, nested_ms=self._nested_ns / 1e6, profiled=self._profiled,
                        intact=self.intact)


def _inside_own_launch() -> bool:
    """Whether the current op runs inside a launch of the solution's own kernels (the
    launch counter's timing frame, with owners, is on the stack: torch called from a
    numba objmode block), so that its time is in the launch's own time too."""
    import sys

    from solforge.bench.guards import launches

    timed = launches._timed.__code__
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code is timed and frame.f_locals.get("owners"):
            return True
        frame = frame.f_back
    return False


# -- the judge's side -------------------------------------------------------------------------


def forbidden_names(definition: Definition) -> dict[str, str]:
    """Canonical names to look for in a record -> the forbidden name as the definition
    wrote it. `torch.ops.aten.X` becomes `aten::X`; any other name is resolved by
    import in this process (never in the solution's) and canonicalized, so an alias
    (`torch.nn.functional.gelu` is `torch._C._nn.gelu`) matches what the recorder saw.
    Names that do not resolve here (a library that is not installed) stay as written:
    the static guard covers them. A torch function is also forbidden by implementation:
    its aten op and the ops that op runs directly (`implementation_ops`:
    `torch.rms_norm` -> `aten::_fused_rms_norm`), so the same library code under a name
    the definition did not list is still the forbidden call."""
    import importlib

    out: dict[str, str] = {}
    for name in definition.solforge.forbidden_calls:
        out[name] = name
        if name.startswith("torch.ops."):
            parts = name.split(".")
            if len(parts) >= 4:
                out[f"{parts[2]}::{parts[3]}"] = name
            continue
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            out[canonical_name(obj)] = name
            break
        # The function's aten op, reached directly (torch.ops.aten.rms_norm) or seen by the
        # profiler under a custom op: aten::<last part> where torch has one.
        if name.startswith("torch.") and parts[-1].isidentifier() and not parts[-1].startswith("__"):
            import torch

            if hasattr(torch.ops.aten, parts[-1]):
                out.setdefault(f"aten::{parts[-1]}", name)
                for op in implementation_ops(parts[-1]):
                    out.setdefault(op, name)
    return out


# Argument shapes tried, in order, for a forbidden op's sample call (`implementation_ops`).
_SAMPLE_SHAPES = ((2, 4, 8, 8), (4, 8), (2, 4, 8))


# A sample call of an overload that crashes the process (native_batch_norm in eval mode
# without running statistics dereferences a null pointer) costs one child, not the judge;
# at most this many children are started for one name.
_SAMPLE_CHILDREN_MAX = 16
_SAMPLE_TIMEOUT_S = 120.0


@functools.lru_cache(maxsize=None)
def implementation_ops(aten_name: str) -> tuple[str, ...]:
    """The aten ops that carry out `aten::<aten_name>` here: each overload is called once
    on small float32 CPU samples made from its schema (tensors of one of
    `_SAMPLE_SHAPES`, the last dimension for a size list, -1 for an int, defaults for
    the rest) under torch's profiler, and the ops it calls directly are kept unless
    they are building blocks (tagged pointwise or reduction, allocations, views, copies:
    `is_compute`). So `rms_norm` gives `aten::_fused_rms_norm` where torch has it (and
    nothing where rms_norm is pow, mean, rsqrt and mul), `softmax` gives `aten::_softmax`,
    `scaled_dot_product_attention` its fused kernels. Overloads no sample fits give
    nothing (the names stay forbidden as written).

    The sample calls run in a child forked from the harness's template process
    (`processes`: torch and the profiler's imports are loaded there, no solution code
    ever runs there), never in the judge's: a made-up call of an arbitrary overload can
    crash its process (`aten::native_batch_norm` with no running statistics in eval mode
    segfaults, and `batch_norm` is forbidden by the norm definitions). An overload whose
    call kills the child is skipped, and a fresh child goes on after it. Cached per name
    for the judge's process. Raises nothing: a name whose every child fails gives ()."""
    from solforge.bench.processes import _context, harness_child

    ctx = _context()
    skip: list[str] = []
    found: dict[str, None] = {}
    for _ in range(_SAMPLE_CHILDREN_MAX):
        ours, theirs = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_sample_overloads, args=(aten_name, tuple(skip), theirs), daemon=True)
        with harness_child(child):  # not a stray to kill when another thread ends a solution
            theirs.close()
            deadline = time.monotonic() + _SAMPLE_TIMEOUT_S
            done, trying = _sample_loop(child, ours, deadline, found)
        if done or trying is None:
            break
        skip.append(trying)
    return tuple(found)


def _sample_loop(child: Any, ours: Any, deadline: float, found: dict[str, None]) -> tuple[bool, str | None]:
    """Read one sample child's reports into `found` until it is done, dies or `deadline`
    passes; end it. Returns (done, the overload it was trying when it stopped)."""
    trying, done = None, False
    try:
        while time.monotonic() < deadline and ours.poll(max(0.0, deadline - time.monotonic())):
            kind, value = ours.recv()
            if kind == "trying":
                trying = value
            elif kind == "found":
                found.update(dict.fromkeys(value))
                trying = None
            elif kind == "done":
                done = True
                break
    except (EOFError, OSError):  # the child died during an overload's sample call
        pass
    finally:
        ours.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    return done, trying


def _sample_overloads(aten_name: str, skip: tuple[str, ...], conn: Any) -> None:
    """In a child of the template: each overload of `aten::<aten_name>` but `skip`, called
    on samples under the profiler (`implementation_ops`); says ("trying", overload)
    before each call, ("found", [ops]) after it and ("done", None) at the end."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    packet = getattr(torch.ops.aten, aten_name, None)
    for overload in packet.overloads() if packet is not None else ():
        if overload in skip:
            continue
        op = getattr(packet, overload)
        conn.send(("trying", overload))
        found: list[str] = []
        for shape in _SAMPLE_SHAPES:
            args = _sample_args(op._schema, shape)
            if args is None:
                break
            try:
                with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
                    op(*args)
            except Exception:  # noqa: BLE001 — a sample that does not fit the op
                continue
            top = [e for e in prof.events() if e.cpu_parent is None and e.name == f"aten::{aten_name}"]
            found = [child.name for event in top for child in event.cpu_children if _implementation(child.name)]
            break
        conn.send(("found", found))
    conn.send(("done", None))
    conn.close()


def _implementation(op: str) -> bool:
    import torch

    if not op.startswith("aten::") or not is_compute(op):
        return False
    packet = getattr(torch.ops.aten, op.removeprefix("aten::"), None)
    if packet is None:
        return False
    tags = {tag for overload in packet.overloads() for tag in getattr(packet, overload).tags}
    return not tags & {torch.Tag.pointwise, torch.Tag.reduction}


def _sample_args(schema: Any, shape: tuple[int, ...]) -> list[Any] | None:
    """Positional arguments for `schema` up to its first defaulted one, or None when one
    is of a type no sample is made for."""
    import torch

    args: list[Any] = []
    for arg in schema.arguments:
        if arg.has_default_value() or arg.kwarg_only:
            break
        kind = str(arg.type)
        if kind == "Tensor":
            args.append(torch.randn(shape))
        elif kind.startswith("Optional["):
            args.append(None)
        elif kind in ("List[int]", "List[SymInt]"):
            args.append([shape[-1]])
        elif kind in ("int", "SymInt"):
            args.append(-1)
        elif kind == "float":
            args.append(1e-5)
        elif kind == "bool":
            args.append(False)
        elif kind == "List[Tensor]":
            args.append([torch.randn(shape), torch.randn(shape)])
        else:
            return None
    return args


def record_findings(record: OpRecord | None, wanted: dict[str, str]) -> list[GuardFinding]:
    """The judge's reading of a recorded call's record: a missing record, or one without
    the recorder's mark in each witness that ran (`MARK`), is a forged reply (the reply
    was rewritten in the solution's process), before the `forbidden_findings` of what
    the record still shows. A record
    whose profiler list is empty had no profiler of its own (another was running: the
    GPU's decoy check), so only the modes' marks are asked of it."""
    if record is None:
        return [finding(Guard.FORGED_REPLY, "forged reply: the reply to a recorded call came without its op record")]
    missing = [witness for witness, seen in (("the torch function mode", MARK_OP in record.functions),
                                             ("the dispatch mode", MARK_OP in record.aten),
                                             ("the profiler", not record.profiled or MARK in record.profiled))
               if not seen]
    found = forbidden_findings(record, wanted)  # what a witness left intact still shows
    if missing:
        found.insert(0, finding(Guard.FORGED_REPLY, f"forged reply: the op record of a recorded call lacks the "
                                                    f"recorder's own mark in {', '.join(missing)} (emptied or "
                                                    "rewritten on its way out)"))
    return found


def forbidden_findings(record: OpRecord, wanted: dict[str, str]) -> list[GuardFinding]:
    """Findings for every forbidden callable the record shows, by the name the
    definition forbids and the name the recorder saw."""
    seen = [*record.functions, *record.modules, *record.aten, *record.profiled]
    found = []
    for name in seen:
        base = name.split(".")[0] if name.startswith("aten::") else name
        hit = wanted.get(name) or wanted.get(base)
        if hit is not None:
            shown = f" (reached as {name})" if name != hit else ""
            found.append(finding(Guard.FORBIDDEN_CALL, f"forbidden call {hit}{shown}, seen at run time"))
    if not record.intact:
        found.append(finding(Guard.HARNESS_TAMPER, "harness tamper: the op recorder was removed during the call"))
    return found


def torch_compute_ops(record: OpRecord, limit: int = 4) -> str:
    """The most called compute aten ops of a record, for a finding's message."""
    ops = sorted(((n, c) for n, c in record.aten.items() if is_compute(n)), key=lambda item: -item[1])
    return ", ".join(n for n, _ in ops[:limit]) or "none"
