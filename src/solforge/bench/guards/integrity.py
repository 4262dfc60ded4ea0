"""Integrity of the timers and the harness: identities taken before user code is imported,
compared after it ran.

A snapshot records the process-wide hooks (tracer, profiler, signal handlers and
interval timers, the depth of torch's function and dispatch mode stacks) and, for each
protected dotted name, the module object it lives in, the object it names, and for a
Python function also its `__code__`, `__defaults__`, `__kwdefaults__`, the contents of
its closure cells and the callables and modules its code reaches through globals. `verify()` looks every name up again through
`sys.modules` (never importing), so rebinding (`time.perf_counter = f`), in-place swaps
(`fn.__code__ = g.__code__`), `sys.modules` surgery, globals rewiring
(`fn.__globals__["torch"] = fake`), a `sys.settrace` and a TorchDispatchMode left
entered all show.

Not covered: changes made and undone between two verify() calls, C-level patches
(ctypes writes into a builtin's memory), kernels registered for existing torch ops
(`torch.library.Library("aten", "IMPL")`; the static guard flags those), and state the
protected code reads from plain data globals (flags and counters are deliberately not
compared: the harness changes them).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import signal
import sys
import types
from collections.abc import Iterable, Mapping

from solforge.bench.guards.findings import Guard, finding
from solforge.spec import GuardFinding

# What every snapshot protects. Sources: the time module and torch.cuda are what timing
# code calls (Python docs, "time"; torch docs, "CUDA semantics: asynchronous execution");
# the comparison functions are the ones a harness checks outputs with.
DEFAULT_PROTECTED: tuple[str, ...] = (
    "time.perf_counter", "time.perf_counter_ns", "time.time", "time.time_ns", "time.monotonic",
    "time.monotonic_ns", "time.process_time",
    "torch.cuda.synchronize", "torch.cuda.Event", "torch.cuda.Event.record", "torch.cuda.Event.elapsed_time",
    "torch.cuda.Event.synchronize", "torch.cuda.Event.query", "torch.cuda.Event.wait",
    "torch.cuda.Stream.synchronize", "torch.cuda.current_stream",
    "torch.allclose", "torch.testing.assert_close", "torch.equal", "torch.isclose",
    # The guards themselves: a solution that disarms one is tampering with the harness.
    "solforge.bench.guards.output_findings", "solforge.bench.guards.decoy_findings",
    "solforge.bench.guards.watch_call",
    "solforge.bench.guards.IntegritySnapshot.verify",
)
_TIMER_ROOTS = ("time.", "torch.cuda.")


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One protected name and what it was bound to at take() time."""

    name: str
    module: str | None  # None: the object has no name to look up again; only its insides are checked
    attrs: tuple[str, ...]
    module_obj: object
    obj: object
    code: object
    defaults: object
    kwdefaults: object
    cells: tuple[object, ...]
    global_refs: tuple[tuple[str, object], ...]

    @property
    def guard(self) -> Guard:
        return Guard.TIMER_PATCH if self.name.startswith(_TIMER_ROOTS) else Guard.HARNESS_TAMPER


_MISSING = object()


@dataclasses.dataclass
class IntegritySnapshot:
    """Identities of the timers, torch's comparison functions and the harness's own
    functions, taken in the worker before user code is imported."""

    entries: list[_Entry]
    modules_dict: dict
    interpreter: dict[str, object]  # tracer, profiler, torch mode stack depths: see _interpreter_state

    @classmethod
    def take(cls, protected: Mapping[str, object | None] | Iterable[str] = ()) -> IntegritySnapshot:
        """Record `DEFAULT_PROTECTED` plus `protected`.

        `protected` maps a dotted name (e.g. "solforge.bench.correctness.compare_outputs")
        to the object it names, or to None to have it resolved here by import; an iterable
        of dotted names means the same as mapping each to None. A name that cannot be
        looked up through a module (a local function) still has its code, defaults,
        closure and globals checked. A default name missing from this torch build (no
        `torch.cuda.Event.wait`) is skipped. Raises ImportError for a name in `protected`
        given without an object that does not resolve.
        """
        items: dict[str, object | None] = {name: None for name in DEFAULT_PROTECTED}
        given = dict(protected) if isinstance(protected, Mapping) else {name: None for name in protected}
        items.update(given)
        entries = []
        for name, obj in items.items():
            module, attrs = _split(name)
            found = _resolve(module, attrs) if module else _MISSING
            if obj is None:
                if found is _MISSING:
                    if name in given:
                        raise ImportError(f"protected name '{name}' does not resolve to an object")
                    continue
                obj = found
            if found is not obj:  # e.g. a local function passed under a descriptive label
                module, attrs = None, ()
            entries.append(_record(name, module, attrs, obj))
        return cls(entries=entries, modules_dict=sys.modules, interpreter=_interpreter_state())

    def verify(self) -> list[GuardFinding]:
        """What changed since take(): one finding per rebound name or swapped insides,
        guard "timer-patch" for names under `time.` and `torch.cuda.`, else
        "harness-tamper". Never imports; never raises on a missing name (that is a finding)."""
        out: list[GuardFinding] = []
        if sys.modules is not self.modules_dict:
            out.append(finding(Guard.HARNESS_TAMPER, "harness tamper: sys.modules was replaced"))
        now = _interpreter_state()
        for key, before in self.interpreter.items():
            if now[key] is not before and now[key] != before:
                out.append(finding(Guard.HARNESS_TAMPER, f"harness tamper: {key} changed ({_describe(before)} -> "
                                                         f"{_describe(now[key])})"))
        for e in self.entries:
            what = "timer patch" if e.guard is Guard.TIMER_PATCH else "harness tamper"
            if e.module is not None:
                if self.modules_dict.get(e.module, _MISSING) is not e.module_obj:
                    out.append(finding(e.guard, f"{what}: sys.modules['{e.module}'] was replaced (seen via {e.name})"))
                    continue
                now = _resolve(e.module, e.attrs)
                if now is not e.obj:
                    out.append(finding(e.guard, f"{what}: {e.name} was replaced (now {_describe(now)})"))
                    continue
            current = _record(e.name, e.module, e.attrs, e.obj)
            for part in ("code", "defaults", "kwdefaults", "cells"):
                if not _same(getattr(current, part), getattr(e, part)):
                    label = {"code": "__code__", "defaults": "__defaults__", "kwdefaults": "__kwdefaults__",
                             "cells": "closure"}[part]
                    out.append(finding(e.guard, f"{what}: the {label} of {e.name} was swapped"))
            before = dict(e.global_refs)
            for gname, value in current.global_refs:
                if gname in before and before[gname] is not value:
                    out.append(finding(e.guard, f"{what}: global '{gname}' used by {e.name} was rebound"))
        return out


def _interpreter_state() -> dict[str, object]:
    """Process-wide hooks through which user code sees or rewrites every later call: a
    tracer or profiler (the harness's frames and locals), and a torch function or
    dispatch mode left active (every op of the reference passes through it)."""
    state: dict[str, object] = {"sys.gettrace()": sys.gettrace(), "sys.getprofile()": sys.getprofile()}
    # Signal handlers and interval timers run the solution's code at any moment, the
    # harness's own waits included (work done while the judge publishes a call's inputs).
    for sig in sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}):
        try:
            state[f"the handler of {signal.Signals(sig).name}"] = signal.getsignal(sig)
        except (ValueError, OSError):  # a real-time signal without a name, or one Python cannot query
            continue
    for which in ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"):
        if hasattr(signal, which):
            state[f"the interval timer {which} is armed"] = signal.getitimer(getattr(signal, which)) != (0.0, 0.0)
    torch = sys.modules.get("torch")
    if torch is not None:
        state["the torch function mode stack"] = torch._C._len_torch_function_stack()
        state["the torch dispatch mode stack"] = torch._C._len_torch_dispatch_stack()
    return state


def _split(name: str) -> tuple[str | None, tuple[str, ...]]:
    """The longest importable module prefix of a dotted name, and the attribute path after it."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        if module in sys.modules:
            return module, tuple(parts[i:])
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        except Exception:  # noqa: BLE001 — a module that fails to import is not a prefix we can use
            continue
        return module, tuple(parts[i:])
    return None, ()


def _resolve(module: str, attrs: tuple[str, ...]) -> object:
    """Look a name up through sys.modules; class attributes statically, so that a bound
    method (a new object per access) compares by the function it wraps."""
    obj = sys.modules.get(module, _MISSING)
    for a in attrs:
        if obj is _MISSING:
            return _MISSING
        try:
            obj = inspect.getattr_static(obj, a) if isinstance(obj, type) else getattr(obj, a)
        except AttributeError:
            return _MISSING
    return obj


def _record(name: str, module: str | None, attrs: tuple[str, ...], obj: object) -> _Entry:
    fn = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    code = getattr(fn, "__code__", None) if isinstance(fn, types.FunctionType) else None
    cells: tuple[object, ...] = ()
    global_refs: tuple[tuple[str, object], ...] = ()
    if isinstance(fn, types.FunctionType):
        cells = tuple(_cell_value(c) for c in fn.__closure__ or ())
        # Only callables and modules: data globals (flags, counters) change honestly.
        g = fn.__globals__
        global_refs = tuple(
            (n, g[n]) for n in fn.__code__.co_names
            if n in g and (callable(g[n]) or isinstance(g[n], types.ModuleType))
        )
    return _Entry(
        name=name, module=module, attrs=attrs,
        module_obj=sys.modules.get(module, _MISSING) if module else _MISSING,
        obj=obj, code=code,
        defaults=getattr(fn, "__defaults__", None) if code is not None else None,
        kwdefaults=getattr(fn, "__kwdefaults__", None) if code is not None else None,
        cells=cells, global_refs=global_refs,
    )


def _cell_value(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _MISSING


def _same(a: object, b: object) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    return a is b


def _describe(obj: object) -> str:
    if obj is _MISSING:
        return "missing"
    if obj is None or isinstance(obj, int):
        return str(obj)
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module else str(name)
