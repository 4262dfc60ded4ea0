"""Cross-compiling a Triton solution for a GPU target on a machine without one.

How a kernel is specialized exactly as the launcher would: the solution's own `run` is
called on the workload's inputs as meta tensors (shapes, dtypes and strides, no data),
with two of Triton's own extension points in place for the call:

- the active driver is a stand-in that reports the target (`GPUTarget("cuda", 90, 32)`)
  and a device of its own, so `JITFunction.run` binds and specializes the arguments
  with the target's backend: pointer dtypes, integer widths, divisibility by 16, the
  `== 1` specialization, constexprs, and the launch options (num_warps, num_stages, ...);
- `knobs.runtime.jit_cache_hook`, which Triton calls with that specialization just
  before it would compile, records it and returns True: Triton then neither compiles
  nor launches, and `run` goes on (an autotuner's configs each pass through the hook).

Each distinct specialization is then compiled with `triton.compile(ASTSource(fn,
signature, constexprs, attrs), target=GPUTarget(...), options=...)` (what `JITFunction`
itself does), ptxas' verbose log is read (Triton's `dump_ptxas_log` knob, compile cache
bypassed so that ptxas runs; else ptxas -v is re-run on the PTX), and limits are
checked. A `run` that cannot work on meta tensors (it reads values, e.g. `.item()`) is
retried on real CPU inputs when they are small enough.

Grids do not matter to a compile and are not evaluated. Triton's device query
(`driver.active.utils.get_device_properties`) answers with the target's figures; code
that asks torch.cuda instead sees a CPU tensor and takes its own CPU default.

This executes the solution's Python; `cross_compile(isolate=True)` (the default) runs it
in a child process. Written against Triton 3.9 and the APIs it shares with 3.6
(`knobs`, `jit_cache_hook`, `driver.set_active`, `ASTSource`); not run on a GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import threading
import traceback
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from solforge.bench.crosscompile.occupancy import max_threads_per_block, theoretical_occupancy
from solforge.bench.crosscompile.ptxas import KernelUsage, parse_ptxas_log, ptxas_errors
from solforge.bench.crosscompile.report import CrossCompileError
from solforge.hardware.targets import CompileTarget
from solforge.spec import Definition, Solution, Workload
from solforge.spec.trace import CompileReport

# Real CPU inputs are made only below this size, when a run cannot work on meta tensors.
CPU_INPUTS_LIMIT_BYTES = 1 << 30

_LOCK = threading.Lock()  # the driver and the knobs are process-wide
_COMPILED: dict[str, _Compiled] = {}  # (source hash, specialization, target) -> result, for this process


@dataclass
class Launch:
    """One kernel launch as Triton specialized it, before compilation."""

    fn: object  # the JITFunction
    name: str
    signature: dict  # argument name -> Triton type ("*bf16", "i32", "constexpr", ...)
    constants: dict  # argument path -> constexpr value
    attrs: dict  # argument path -> [["tt.divisibility", 16]], ...
    options: dict  # the backend options (num_warps, num_stages, ...)
    key: str  # identifies the compile: source hash + specialization + target
    workloads: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The specialization in a line: argument types (/16: divisible by 16) and constexprs."""
        names = list(self.signature)
        parts = []
        for i, (name, ty) in enumerate(self.signature.items()):
            if ty == "constexpr":
                parts.append(f"{name}={self.constants.get((i,), '?')}")
            else:
                div = any(a and a[0] == "tt.divisibility" for a in self.attrs.get((i,), []))
                parts.append(f"{name}:{ty}{'/16' if div else ''}")
        assert len(parts) == len(names)
        return ", ".join(parts)


@dataclass
class _Compiled:
    usage: KernelUsage
    shared: int  # metadata.shared: the dynamic shared memory Triton launches with
    num_warps: int
    num_stages: int


class _TargetDriver:
    """Stands in for Triton's active driver: reports the target and launches nothing.

    `utils.get_device_properties(i)` answers with the target's figures, under the keys of
    Triton's CUDA driver, for code that sizes its launch the Triton way
    (`triton.runtime.driver.active.utils.get_device_properties`); clock rates and memory
    bus width are not known for a target and are absent.
    """

    def __init__(self, target: CompileTarget):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", target.capability, target.warp_size)
        self.device = f"solforge-crosscompile-{target.name}"  # its own key in JITFunction.device_caches
        properties = {
            "max_shared_mem": target.max_shared_memory_per_block_bytes,  # the opt-in maximum, as Triton reads it
            "max_num_regs": target.max_registers_per_block,
            "multiprocessor_count": target.sm_count,
            "warpSize": target.warp_size,
        }
        self.utils = types.SimpleNamespace(get_device_properties=lambda device=None: dict(properties))

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        import torch

        return torch.device("meta")

    def get_benchmarker(self):
        def bench(fn, quantiles=None, **_):  # an autotuner's timing: one call, so each config is captured
            fn()
            return [0.0] * len(quantiles) if quantiles else 0.0

        return bench


def _tuples(value):
    """JSON lists back to the tuples Triton's options hold (as `JITFunction.preload` does)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


@contextlib.contextmanager
def capturing(target: CompileTarget) -> Iterator[list[Launch]]:
    """Within the block, Triton launches are recorded (specialized for `target`) instead of
    compiled and launched. Yields the list they are appended to."""
    from triton import knobs
    from triton.runtime.driver import driver

    launches: list[Launch] = []

    def hook(**kw) -> bool:
        fn = kw["fn"].jit_function
        compile_ = kw["compile"]
        data = compile_["specialization_data"]
        options = {k: _tuples(v) for k, v in json.loads(data)["options"].items()}
        launches.append(Launch(fn=fn, name=fn.__name__, signature=dict(compile_["signature"]),
                               constants=dict(compile_["constants"]), attrs=dict(compile_["configs"][0]),
                               options=options, key=f"{fn.cache_key}:{data}"))  # fmt: skip
        return True  # Triton neither compiles nor launches

    with _LOCK:
        previous_driver, previous_hook = driver._active, knobs.runtime.jit_cache_hook
        driver.set_active(_TargetDriver(target))
        knobs.runtime.jit_cache_hook = hook
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Triton's deprecation notices are not the solution's
                yield launches
        finally:
            knobs.runtime.jit_cache_hook = previous_hook
            driver._active = previous_driver  # reset_active() would create a real driver, absent here


def compile_launch(launch: Launch, target: CompileTarget) -> _Compiled:
    """Compile one captured launch for `target` and read ptxas' log. Raises CrossCompileError
    (kind "compile") with Triton's or ptxas' message."""
    cached = _COMPILED.get(launch.key)
    if cached is not None:
        return cached
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(launch.fn, launch.signature, launch.constants, launch.attrs)
    out = io.StringIO()
    with _LOCK, knobs.nvidia.scope(), knobs.compilation.scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True  # a cache hit would skip ptxas, and its log
        try:
            with contextlib.redirect_stdout(out):
                kernel = triton.compile(src, target=GPUTarget("cuda", target.capability, target.warp_size),
                                        options=launch.options)  # fmt: skip
        except Exception as exc:  # Triton's front end, MLIR, LLVM or ptxas: the message is the verdict
            raise CrossCompileError("compile", _triton_message(exc), launch.name, target=target.name) from None
    meta = kernel.metadata
    usage = next((u for u in parse_ptxas_log(out.getvalue()) if u.name == meta.name), None)
    if usage is None:
        usage = _rerun_ptxas(kernel.asm["ptx"], meta.name, target, launch.options)
    result = _Compiled(usage, int(meta.shared), int(meta.num_warps), int(getattr(meta, "num_stages", 0)))
    _COMPILED[launch.key] = result
    return result


def _triton_message(exc: Exception) -> str:
    """The compiler's own message, its gist first: ptxas' error lines, or Triton's error."""
    name = type(exc).__name__
    if name == "PTXASError":
        log = str(getattr(exc, "error_message", "") or exc)
        errors = ptxas_errors(log)
        return "ptxas: " + "\n".join(errors) if errors else log
    if hasattr(exc, "error_message") and hasattr(exc, "node"):  # triton.compiler.errors.CompilationError
        where = f"at {exc.node.lineno}:{exc.node.col_offset}: " if hasattr(exc.node, "lineno") else ""
        return f"Triton {name}: {where}{exc.error_message or ''}\n{exc}"
    return f"{name}: {exc}"


def _rerun_ptxas(ptx: str, name: str, target: CompileTarget, options: dict) -> KernelUsage:
    """ptxas -v on Triton's PTX, for a Triton without the dump_ptxas_log knob. Same target
    and fmad setting as Triton's own call."""
    from triton import knobs

    tool = (knobs.nvidia.ptxas_blackwell if target.capability >= 90 else knobs.nvidia.ptxas).path
    with tempfile.TemporaryDirectory(prefix="solforge-ptxas-") as tmp:
        ptx_path = Path(tmp) / "kernel.ptx"
        ptx_path.write_text(ptx)
        fmad = [] if options.get("enable_fp_fusion", True) else ["--fmad=false"]
        cmd = [tool, "-v", *fmad, f"--gpu-name={target.sass}", str(ptx_path), "-o", str(ptx_path.with_suffix(".o"))]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    usage = next((u for u in parse_ptxas_log(log) if u.name == name), None)
    if proc.returncode != 0 or usage is None:
        raise CrossCompileError("compile", "ptxas: " + ("\n".join(ptxas_errors(log)) or log), name, target=target.name)
    return usage


# -- the solution's side ---------------------------------------------------------------------


@contextlib.contextmanager
def imported_entry(solution: Solution) -> Iterator[object]:
    """The solution's entry module, imported from a temporary directory with Triton's
    interpreter off; its modules and sys.path entry are removed afterwards."""
    from triton import knobs

    with tempfile.TemporaryDirectory(prefix="solforge-crosscompile-") as tmp:
        root = Path(tmp)
        for src in solution.sources:
            rel = PurePosixPath(src.path)
            if rel.is_absolute() or ".." in rel.parts:
                raise CrossCompileError("specialize", f"sources: path '{src.path}' must stay inside the solution")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(src.content)
        entry = PurePosixPath(solution.spec.entry_file)
        name = f"_solforge_crosscompile_{abs(hash((solution.name, tmp)))}_{entry.stem}"
        before = set(sys.modules)
        sys.path.insert(0, tmp)
        try:
            with knobs.runtime.scope():
                knobs.runtime.interpret = False  # @triton.jit must give a JITFunction here
                spec = importlib.util.spec_from_file_location(name, root / entry)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception as exc:
                    raise CrossCompileError("compile", f"importing {entry} raised {type(exc).__name__}: {exc}") from None
                yield module
        finally:
            sys.path.remove(tmp)
            for mod in set(sys.modules) - before:
                file = getattr(sys.modules[mod], "__file__", None) or ""
                if mod == name or file.startswith(tmp):
                    del sys.modules[mod]


def _arguments(definition: Definition, workload: Workload, solution: Solution, device: str,
               dataset_root: Path | None) -> dict:  # fmt: skip
    """The keyword arguments of the entry point for `workload`: meta tensors (no data), or
    real CPU tensors from the harness's input generators."""
    import torch

    from solforge.spec import ScalarInput

    axes = definition.resolve_axes(workload.axes)
    if device == "meta":
        kwargs = {}
        for name, spec in definition.inputs.items():
            if spec.shape is None:
                given = workload.inputs.get(name)
                if not isinstance(given, ScalarInput):
                    raise _NeedsValues(f"input '{name}' is a scalar drawn by a generator")
                kwargs[name] = given.value
            else:
                kwargs[name] = torch.empty(definition.shape_of(spec, axes), dtype=spec.dtype.to_torch(), device="meta")
    else:
        from solforge.bench.inputs import make_inputs

        kwargs = dict(make_inputs(definition, workload, axes, 0, "normal", "cpu", dataset_root))
    if solution.spec.destination_passing_style:
        for name, spec in definition.outputs.items():
            kwargs[name] = torch.empty(definition.shape_of(spec, axes), dtype=spec.dtype.to_torch(), device=device)
    return kwargs


class _NeedsValues(Exception):
    """The workload cannot be given as meta tensors."""


def _bytes_of(definition: Definition, workload: Workload) -> int:
    axes = definition.resolve_axes(workload.axes)
    total = 0
    for spec in (*definition.inputs.values(), *definition.outputs.values()):
        if spec.shape is not None:
            numel = 1
            for n in definition.shape_of(spec, axes):
                numel *= n
            total += numel * spec.dtype.to_torch().itemsize
    return total


def _failing_kernel(exc: BaseException) -> str:
    """The JITFunction whose launch raised, from the traceback's frames ('' if none)."""
    from triton.runtime.jit import JITFunction

    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, JITFunction):
            return owner.__name__
    return ""


def capture_workload(module, solution: Solution, definition: Definition, workload: Workload,
                     target: CompileTarget, dataset_root: Path | None) -> list[Launch]:  # fmt: skip
    """The launches `run` makes on `workload`, specialized for `target`. Raises
    CrossCompileError (kind "specialize") when `run` fails on meta and on CPU inputs."""
    run = getattr(module, solution.spec.entry_function, None)
    if not callable(run):
        raise CrossCompileError("specialize", f"{solution.spec.entry_file} defines no function "
                                f"'{solution.spec.entry_function}'", workload=workload.uuid)  # fmt: skip
    failure: BaseException | None = None
    for device in ("meta", "cpu"):
        if device == "cpu" and _bytes_of(definition, workload) > CPU_INPUTS_LIMIT_BYTES:
            break
        try:
            kwargs = _arguments(definition, workload, solution, device, dataset_root)
            with capturing(target) as launches:
                run(**kwargs)
            return launches
        except CrossCompileError:
            raise
        except _NeedsValues as exc:
            failure = exc
        except Exception as exc:  # the solution's own code: any error means it cannot be specialized
            failure = exc
            if device == "cpu" or _failing_kernel(exc):
                break  # a launch that Triton refused to bind fails on any inputs
    assert failure is not None
    raise CrossCompileError("specialize", f"cannot specialize the launch: {type(failure).__name__}: {failure}",
                            _failing_kernel(failure), workload.uuid, target.name)  # fmt: skip


def check_launch(launch: Launch, target: CompileTarget, workload: str) -> None:
    """Raise CrossCompileError (kind "limit") when the launch asks for more threads per block
    than the target allows; checked before compiling."""
    threads = int(launch.options.get("num_warps", 4)) * target.warp_size
    if threads > target.max_threads_per_block:
        raise CrossCompileError(
            "limit", f"num_warps={launch.options.get('num_warps')} x {target.warp_size} = {threads} threads per "
            f"block exceeds the {target.max_threads_per_block} that {target.name} allows",
            launch.name, workload, target.name,
        )  # fmt: skip


def make_report(launch: Launch, compiled: _Compiled, target: CompileTarget) -> CompileReport:
    """The CompileReport of a compiled launch. Raises CrossCompileError (kind "limit") when
    its shared memory or registers do not fit one block on the target."""
    usage = compiled.usage
    threads = compiled.num_warps * target.warp_size
    shared = usage.static_shared_memory_bytes + compiled.shared
    where = (launch.name, launch.workloads[0] if launch.workloads else "", target.name)
    if shared > target.max_shared_memory_per_block_bytes:
        raise CrossCompileError("limit", f"out of resource: shared memory, Required: {shared}, Hardware limit: "
                                f"{target.max_shared_memory_per_block_bytes} (the opt-in maximum per block on "
                                f"{target.name}); fewer num_stages or smaller blocks may help", *where)  # fmt: skip
    occupancy = theoretical_occupancy(target, usage.registers, shared, threads, usage.barriers)
    if occupancy.blocks_per_sm == 0:
        raise CrossCompileError("limit", f"too many resources requested for launch: {usage.registers} registers x "
                                f"{threads} threads does not fit one block on {target.name} "
                                f"(limited by {', '.join(occupancy.limited_by)})", *where)  # fmt: skip
    return CompileReport(
        kernel=launch.name, target=target.name, language="triton", workloads=list(launch.workloads),
        specialization=launch.describe(), registers_per_thread=usage.registers,
        spill_store_bytes=usage.spill_store_bytes, spill_load_bytes=usage.spill_load_bytes,
        stack_frame_bytes=usage.stack_frame_bytes, static_shared_memory_bytes=usage.static_shared_memory_bytes,
        dynamic_shared_memory_bytes=compiled.shared, barriers=usage.barriers, num_warps=compiled.num_warps,
        num_stages=compiled.num_stages, threads_per_block=threads,
        max_threads_per_block=max_threads_per_block(target, usage.registers, launch_bound=threads),
        occupancy=occupancy, ptxas_warnings=list(usage.warnings),
    )


def compile_triton(solution: Solution, definition: Definition, workloads: list[Workload], target: CompileTarget,
                   dataset_root: Path | None = None) -> list[CompileReport]:  # fmt: skip
    """Every distinct kernel specialization the solution launches on `workloads`, compiled
    for `target`, in launch order; each report lists the workloads that launch it.

    Runs the solution's code in this process. Raises CrossCompileError naming the kernel,
    the workload and the compiler's message on the first failure; kind "no_kernel" when
    no workload launches a Triton kernel.
    """
    distinct: dict[str, Launch] = {}
    with imported_entry(solution) as module:
        for workload in workloads:
            for launch in capture_workload(module, solution, definition, workload, target, dataset_root):
                check_launch(launch, target, workload.uuid)
                seen = distinct.setdefault(launch.key, launch)
                if workload.uuid not in seen.workloads:
                    seen.workloads.append(workload.uuid)
        if not distinct:
            raise CrossCompileError("no_kernel", f"{solution.spec.entry_point} launched no Triton kernel on "
                                    f"{len(workloads)} workload(s): nothing to compile", target=target.name)  # fmt: skip
        reports = []
        for launch in distinct.values():
            try:
                compiled = compile_launch(launch, target)
            except CrossCompileError as exc:
                exc.workload = launch.workloads[0]
                raise CrossCompileError(exc.kind, exc.message, exc.kernel, exc.workload, exc.target) from None
            reports.append(make_report(launch, compiled, target))
    return reports
