"""Counting launches of a solution's own kernels, for the decoy guard.

A solution declared `triton`, `cuda` or `numba` must launch kernels of its own; one that
defines a `@triton.jit` kernel and computes with torch is a decoy. What counts as a
launch, per language:

- Triton: a call of `JITFunction.run` (GPU) or `InterpretedFunction.run`
  (TRITON_INTERPRET=1) with `warmup=False`, for a kernel whose Python function was
  defined in one of the solution's modules. Every `kernel[grid](...)` goes through
  `run`, directly or via `Autotuner`/`Heuristics`, in triton 3.0 through 3.9; the class
  method is wrapped once per process, so kernels built inside functions count too.
  Triton's `knobs.runtime.launch_enter_hook` was not used: the interpreter never calls it
  and its type changed between 3.x releases.
- numba: a Python-level call of a dispatcher (`@njit`, `@jit`, `parallel=True`), of a
  numba ufunc (`@vectorize`: `DUFunc.__call__`; `@guvectorize`: `GUFunc.__call__`, both
  the Python classes numba returns in 0.5x through 0.6x) or a CUDA launch
  (`CUDADispatcher.call`) of a function defined in the solution's modules. Calls
  between jitted functions are compiled in and do not count: the outer call did.
  A ufunc's `.reduce`/`.accumulate`, or its raw NumPy `.ufunc` called directly, are not
  counted (a false reject, not a hole).
- CUDA C++ (`file.cu::fn`, built with load_inline): a call of a function of the built
  extension, wrapped in the namespaces handed over. On a CUDA device `LaunchCounter.profile()`
  also records, with torch.profiler, the kernels that ran during one call, and the
  decoy guard then requires one named as a `__global__` function (or Triton kernel) of
  the solution. Trade-off: the profiler costs milliseconds and perturbs timing, so it
  runs around one correctness call only; a host function that launches its kernel and
  then computes the result with torch still passes (correctness does not catch that,
  and neither does this guard).

A kernel's Python function is the solution's own when it was defined in one of the
solution's modules, in a `.py` file the solution's own code wrote in this process, or
in source the solution's own code compiled from a string and ran (code generation: a
kernel specialized per shape, written to a temporary directory and imported, or
`exec`'d). `record_generated_sources()`, installed by the numba and Triton plugins
before the solution is imported, notes every `.py` file opened for writing, and every
module-level code object run by `exec` that was compiled from a string (file name
`<...>`), with the file of the first frame outside the standard library (and outside
code generated from strings) that did it; such code counts when that file is the
solution's own (transitively: generated code may generate more). An existing code
object (a library kernel's) is never adopted: only a module compiled from a string is,
with the functions defined in it.

Not covered: a solution that launches its own kernel once for show and computes with
torch (the count is not zero); kernels whose Python function lives outside the
solution's modules (a library's kernel is not the solution's own, however and whenever
the solution imports it: first importing a library from the solution's code does not
make it the solution's); a library's source the solution copies into a file it writes
(it then launches that copy: the work still runs in a kernel of the declared language).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import importlib
import importlib.machinery
import os
import re
import sys
import time
import types
import weakref
from collections.abc import Iterator

from solforge.bench.guards import audit_events
from solforge.bench.guards.findings import Guard, finding
from solforge.spec import GuardFinding, Language, Solution

_COUNTERS: weakref.WeakSet[LaunchCounter] = weakref.WeakSet()
# Marks our wrappers on the launch paths. A mark, not a module-level flag: a library that
# is dropped from sys.modules and imported again has fresh classes to wrap.
_MARK = "_solforge_counts_launches"
_CUDA_SUFFIXES = (".cu", ".cuh")
_GLOBAL_FN = re.compile(r"__global__\b[^;{]*?\b(\w+)\s*(?:<[^;{()]*>)?\s*\(")


@dataclasses.dataclass(eq=False)
class LaunchCounter:
    """Launches of one solution's own kernels since `launch_counter` installed it."""

    device: str
    language: Language
    modules: frozenset[str]
    files: frozenset[str]
    kernels: list[str] = dataclasses.field(default_factory=list)
    own_kernel_names: frozenset[str] = frozenset()
    count: int = 0
    own_ns: int = 0  # wall time inside the launches counted (host side: on a GPU, the launch, not the kernel)
    by_kernel: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    profiled_kernel_names: list[str] | None = None  # device kernels seen by profile(); None: not profiled
    closed: bool = False

    def owns(self, fn: object) -> bool:
        """Whether a kernel's Python function was defined in the solution's modules, or in
        a `.py` file the solution's code wrote (see the module docstring)."""
        if getattr(fn, "__module__", None) in self.modules:
            return True
        code = getattr(fn, "__code__", None)
        if code is None:
            return False
        executed = _EXECUTED.get(id(code))
        path = executed[1] if executed is not None and executed[0] is code else os.path.realpath(code.co_filename)
        for _ in range(8):  # a generated file's writer may itself be generated
            if path in self.files:
                return True
            path = _WRITTEN.get(path)
            if path is None:
                return False
        return False

    def record(self, name: str) -> None:
        if not self.closed:
            self.count += 1
            self.by_kernel[name] += 1

    @property
    def own_kernels_profiled(self) -> bool | None:
        """Whether profile() saw a kernel named after one of the solution's; None if not profiled."""
        if self.profiled_kernel_names is None:
            return None
        return any(own in seen for own in self.own_kernel_names for seen in self.profiled_kernel_names)

    @contextlib.contextmanager
    def profile(self) -> Iterator[None]:
        """Around ONE call, outside any timed region: on CUDA, record the names of the
        device kernels that ran (torch.profiler, CPU+CUDA activities) into
        `profiled_kernel_names`. A no-op on other devices."""
        if not self.device.startswith("cuda"):
            yield
            return
        import torch
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            yield
            torch.cuda.synchronize()
        names: set[str] = set()
        for event in prof.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                names.add(event.name)
            names.update(k.name for k in getattr(event, "kernels", ()))
        self.profiled_kernel_names = sorted(names)

    def close(self) -> None:
        """Stop counting (the class-level wrappers stay, inert for this counter)."""
        self.closed = True
        _COUNTERS.discard(self)


def launch_counter(module_namespaces: list[dict], solution: Solution, device: str) -> LaunchCounter:
    """Install a counter of the solution's own kernel launches; call once, after the
    solution's modules are imported and before the first call.

    `module_namespaces`: the `__dict__` of every module imported from the solution's
    sources and, for CUDA C++, of the extension built from them (its functions are
    replaced in that namespace by counting wrappers: resolve the entry point from the
    namespace after this call). Ownership of a Triton or numba kernel is decided by its
    Python function's `__module__` (one of the namespaces' `__name__`) or source file
    (one of their `__file__`). For language triton or numba the library is imported
    here if the solution has not, so a kernel built at call time is still counted.
    Raises ImportError when the declared language's library is not installed.
    """
    language = solution.spec.language
    modules = frozenset(ns["__name__"] for ns in module_namespaces if isinstance(ns.get("__name__"), str))
    files = frozenset(os.path.realpath(ns["__file__"]) for ns in module_namespaces
                      if isinstance(ns.get("__file__"), str))
    counter = LaunchCounter(device=device, language=language, modules=modules, files=files)
    from solforge.bench.languages import plugins

    for plugin in plugins().values():  # the declared language's hooks, and those of any kernel library loaded
        if plugin.name == language.value or any(m in sys.modules for m in plugin.toolchain_modules):
            plugin.install_launch_hooks(device)
    kernels: dict[str, str] = {}  # kernel name -> how it is launched
    for ns in module_namespaces:
        for name, value in list(ns.items()):
            fn = _kernel_function(value)
            if fn is not None and counter.owns(fn):
                kernels[fn.__name__] = type(value).__name__
        if str(ns.get("__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            _wrap_extension_namespace(ns, counter, kernels)
        for value in list(ns.values()):
            if isinstance(value, types.ModuleType) and _is_built_extension(value):
                _wrap_extension_namespace(vars(value), counter, kernels)
    global_fns = {m.group(1) for s in solution.sources if s.path.endswith(_CUDA_SUFFIXES)
                  for m in _GLOBAL_FN.finditer(re.sub(r"__launch_bounds__\s*\([^)]*\)", "", s.content))}
    counter.kernels = sorted({*kernels, *global_fns})
    counter.own_kernel_names = frozenset(
        {n for n, how in kernels.items() if how != "extension"} | global_fns)
    _COUNTERS.add(counter)
    return counter


def decoy_findings(counter: LaunchCounter, solution: Solution, calls: int) -> list[GuardFinding]:
    """A "decoy" finding when a solution declared `triton`, `cuda` or `numba` launched
    none of its own kernels over `calls` calls of its entry point, or when profile() ran
    and saw none of its kernels on the device. Nothing for other languages or for
    `calls <= 0`. Raises nothing."""
    language = solution.spec.language
    if not language.launches_own_kernels or calls <= 0:
        return []
    if counter.count == 0:
        defined = (f"it defines {', '.join(counter.kernels)}" if counter.kernels
                   else "no kernel of its own was found in its modules")
        return [finding(Guard.DECOY, f"decoy: declared {language.value} but launched none of its own kernels "
                                     f"in {calls} calls ({defined})")]
    if counter.own_kernels_profiled is False and counter.own_kernel_names:
        seen = ", ".join(counter.profiled_kernel_names[:5]) if counter.profiled_kernel_names else "no kernel"
        return [finding(Guard.DECOY, f"decoy: declared {language.value} but none of its own kernels "
                                     f"({', '.join(sorted(counter.own_kernel_names))}) ran on the device "
                                     f"(the profiler saw {seen})")]
    return []


# -- sources the solution writes ------------------------------------------------------------

_WRITTEN: dict[str, str] = {}  # realpath of a .py file opened for writing -> realpath of the writer's file
# id of a code object compiled from a string and run by exec (and of those nested in it)
# -> (the code object, kept alive so that its id is not reused; realpath of the exec caller's file)
_EXECUTED: dict[int, tuple[object, str]] = {}
_RECORDING: list[bool] = []
_STDLIB = os.path.dirname(os.path.realpath(os.__file__)) + os.sep
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def record_generated_sources() -> None:
    """From now on, note every `.py` file this process opens for writing (`open`,
    `os.open`, `pathlib`, `tempfile` all raise the `open` audit event) and every module
    compiled from a string that `exec` runs, each with the file of the first frame
    outside the standard library that did it. Idempotent; a process-wide audit hook
    (PEP 578 hooks cannot be removed) that returns at once for other events."""
    if not _RECORDING:
        _RECORDING.append(True)
        audit_events.add(_note_generated, ("exec", "open"))


def _caller_file(frame: types.FrameType | None) -> str | None:
    """realpath of the first frame's file outside the standard library and outside code
    compiled from strings; None if there is none."""
    while frame is not None:
        raw = frame.f_code.co_filename
        if not raw.startswith("<"):
            real = os.path.realpath(raw)
            if not (real.startswith(_STDLIB) and "-packages" not in real):
                return real
        frame = frame.f_back
    return None


def _note_generated(event: str, args: tuple) -> None:
    if event == "exec":
        code = args[0] if args else None
        if isinstance(code, types.CodeType) and code.co_name == "<module>" and code.co_filename.startswith("<") \
                and not code.co_filename.startswith("<frozen"):
            caller = _caller_file(sys._getframe(audit_events.CALLER_DEPTH))
            if caller is not None:
                stack = [code]
                while stack:
                    c = stack.pop()
                    _EXECUTED[id(c)] = (c, caller)
                    stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        return
    if event != "open" or not args or not isinstance(args[0], (str, bytes)):
        return
    path = os.fsdecode(args[0])
    if not path.endswith(".py"):
        return
    mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    if not (set(mode) & set("wax+") or flags & _WRITE_FLAGS):
        return
    writer = _caller_file(sys._getframe(audit_events.CALLER_DEPTH))  # from the frame that opened it
    if writer is not None:
        _WRITTEN[os.path.realpath(path)] = writer


# -- the launch paths ----------------------------------------------------------------------


def _saw(fn: object) -> list[LaunchCounter]:
    """Record a launch of `fn` with every counter that owns it; those counters."""
    owners = [c for c in list(_COUNTERS) if c.owns(fn)]
    for counter in owners:
        counter.record(getattr(fn, "__name__", "?"))
    return owners


def _timed(owners: list[LaunchCounter], call, *args, **kwargs):
    """`call(*args, **kwargs)`, its wall time added to each owner's `own_ns`."""
    if not owners:
        return call(*args, **kwargs)
    t0 = time.perf_counter_ns()
    try:
        return call(*args, **kwargs)
    finally:
        elapsed = time.perf_counter_ns() - t0
        for counter in owners:
            if not counter.closed:
                counter.own_ns += elapsed


def patch_triton() -> None:
    from triton.runtime.jit import JITFunction

    classes: list[type] = [JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append(InterpretedFunction)
    except ImportError:
        pass
    for cls in classes:
        _wrap_method(cls, "run", lambda self, args, kwargs: None if kwargs.get("warmup", False) else self.fn)


def patch_numba(cuda: bool) -> None:
    from numba.core.dispatcher import Dispatcher

    # Wrapping the C base's __call__ slot on the Python class: calls between jitted
    # functions are compiled in and never reach it.
    _wrap_method(Dispatcher, "__call__", lambda self, args, kwargs: self.py_func)
    # @vectorize / @guvectorize kernels: numba ufuncs whose Python `__call__` hands over to
    # NumPy's ufunc machinery (a compiled loop), never to a Dispatcher's __call__.
    for module, name in (("numba.np.ufunc.dufunc", "DUFunc"), ("numba.np.ufunc.gufunc", "GUFunc")):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        _wrap_method(cls, "__call__", lambda self, args, kwargs: _ufunc_py_func(self))
    if cuda:
        try:
            from numba.cuda.dispatcher import CUDADispatcher
        except ImportError:
            return
        _wrap_method(CUDADispatcher, "call", lambda self, args, kwargs: self.py_func)


def _ufunc_py_func(ufunc: object) -> types.FunctionType | None:
    """The Python function a numba DUFunc/GUFunc was built from (kept by its dispatcher)."""
    fn = getattr(getattr(ufunc, "_dispatcher", None), "py_func", None)
    return fn if isinstance(fn, types.FunctionType) else None


def _wrap_method(cls: type, name: str, kernel_of) -> None:
    """Wrap `cls.name` once so that each call reports `kernel_of(self, args, kwargs)`
    (the kernel's Python function, or None for a call that launches nothing)."""
    original = getattr(cls, name)
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def counting(self, *args, **kwargs):
        fn = kernel_of(self, args, kwargs)
        owners = _saw(fn) if fn is not None else []
        return _timed(owners, original, self, *args, **kwargs)

    setattr(counting, _MARK, True)
    setattr(cls, name, counting)


def _kernel_function(value: object) -> types.FunctionType | None:
    """The Python function behind a Triton kernel (through Autotuner/Heuristics), a numba
    dispatcher or a numba ufunc; None for anything else. Recognized by class name: no import of either."""
    kind = type(value).__name__
    if kind in ("JITFunction", "InterpretedFunction", "Autotuner", "Heuristics"):
        fn = value
        for _ in range(8):
            fn = getattr(fn, "fn", None)
            if isinstance(fn, types.FunctionType):
                return fn
        return None
    if kind in ("CPUDispatcher", "Dispatcher", "CUDADispatcher"):
        fn = getattr(value, "py_func", None)
        return fn if isinstance(fn, types.FunctionType) else None
    if kind in ("DUFunc", "GUFunc"):
        return _ufunc_py_func(value)
    return None


def _is_built_extension(module: types.ModuleType) -> bool:
    """An extension module built for this solution (load_inline output), not an installed one."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        return False
    path = os.path.realpath(file)
    return "site-packages" not in path and "dist-packages" not in path and not path.startswith(sys.base_prefix)


def _wrap_extension_namespace(ns: dict, counter: LaunchCounter, kernels: dict[str, str]) -> None:
    for name, value in list(ns.items()):
        if isinstance(value, types.BuiltinFunctionType) and not name.startswith("_"):
            ns[name] = _counting_extension_function(value, counter, name)
            kernels[name] = "extension"


def _counting_extension_function(fn, counter: LaunchCounter, name: str):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        counter.record(name)
        return _timed([counter], fn, *args, **kwargs)

    return call
