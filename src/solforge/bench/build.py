"""Building a solution into a callable, per language. Runs inside the worker process.

- `pytorch` / `python`, `triton`, `numba`, and `cuda` with a `.py` entry point: the
  sources are written to the solution's working directory and the entry file is
  imported from there (so files of one solution import each other by name). Triton
  runs under its interpreter when the worker's device is the CPU (the worker sets
  TRITON_INTERPRET=1 before triton is imported).
- `cuda` with a `file.cu::fn` entry point: the signature of the host function `fn` is
  parsed from the source, a C++ declaration is generated from it, and the `.cu` sources
  are built and bound with `torch.utils.cpp_extension.load_inline`. The call maps the
  keyword arguments onto the signature's parameter order. On a CPU device the sources
  are only compile-checked with `nvcc -c` (a CPU-only torch cannot run them).

Also here: the reference (`Definition.reference`) as a callable, the baselines as
Solutions, and `solution_from_py` for a single `.py` file with a `run` function.
"""

from __future__ import annotations

import hashlib
import importlib.util
import linecache
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from solforge.spec import BuildSpec, Definition, Language, Solution, SourceFile, SpecError, check_solution


class BuildError(Exception):
    """The solution does not build; the message is the build log."""


@dataclass
class Built:
    """A built solution, ready to call with keyword arguments."""

    fn: Callable[..., object] | None  # None when it built but cannot run on this device
    namespaces: list[dict] = field(default_factory=list)  # module dicts, for the launch counter
    modules: list[str] = field(default_factory=list)  # sys.modules keys to drop on unload
    path_entry: str | None = None  # the sys.path entry added for the solution's directory
    log: str = ""


def write_sources(solution: Solution, workdir: Path) -> None:
    """Write every source file under `workdir`. Raises BuildError for a path that would
    land outside it (absolute, or with '..')."""
    for src in solution.sources:
        rel = PurePosixPath(src.path)
        if rel.is_absolute() or ".." in rel.parts:
            raise BuildError(f"sources: path '{src.path}' must be relative and stay inside the solution")
        target = workdir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(src.content)


def _import_entry(solution: Solution, workdir: Path) -> Built:
    """Import the `.py` entry file from `workdir`; the solution's own modules are recorded
    so that `unload` drops them (the next solution may have a file of the same name)."""
    spec_ = solution.spec
    entry_path = workdir / spec_.entry_file
    stem = PurePosixPath(spec_.entry_file).with_suffix("").as_posix().replace("/", ".")
    # A stem that names an already imported module (say `math.py`) must not reuse it.
    module_name = stem if stem not in sys.modules else f"_solforge_solution_{stem.replace('.', '_')}"
    before = set(sys.modules)
    path_entry = str(workdir)
    sys.path.insert(0, path_entry)
    importlib.invalidate_caches()
    built = Built(fn=None, path_entry=path_entry)
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, entry_path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except BaseException:
        built.modules = _own_modules(before, workdir, module_name)
        unload(built)
        raise
    built.modules = _own_modules(before, workdir, module_name)
    built.namespaces = [vars(sys.modules[m]) for m in built.modules]
    fn = getattr(module, spec_.entry_function, None)
    if not callable(fn):
        unload(built)
        raise BuildError(f"spec.entry_point: {spec_.entry_file} defines no function '{spec_.entry_function}'")
    built.fn = _ModuleAttr(module, spec_.entry_function)
    return built


def _own_modules(before: set[str], workdir: Path, entry: str) -> list[str]:
    """Modules imported since `before` from the solution's own files. Libraries it imported
    first (triton, numba) stay loaded: a second import of them would break the objects and
    the launch counter's hooks that already refer to the first."""
    root = workdir.resolve()
    own = []
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None)
        if name == entry or (file and Path(file).resolve().is_relative_to(root)):
            own.append(name)
    return sorted(own)


class _ModuleAttr:
    """Calls `module.<name>` looked up at call time, so that a wrapper the launch counter
    installs in the module's namespace after import is the one called."""

    def __init__(self, module: types.ModuleType, name: str):
        self.module, self.name = module, name

    def __call__(self, **kwargs):
        return getattr(self.module, self.name)(**kwargs)


def unload(built: Built) -> None:
    """Forget a solution's modules and its sys.path entry."""
    for name in built.modules:
        sys.modules.pop(name, None)
    if built.path_entry in sys.path:
        sys.path.remove(built.path_entry)
    importlib.invalidate_caches()


# -- CUDA C++ ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CudaSignature:
    """A host function's signature as written in the source."""

    return_type: str
    params: list[tuple[str, str]]  # (type, name) in declaration order

    def declaration(self, name: str) -> str:
        return f"{self.return_type} {name}({', '.join(f'{t} {n}' for t, n in self.params)});"


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_QUALIFIERS = {"static", "inline", "__host__", "__forceinline__", "extern", '"C"'}


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside <>, () and []."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_cuda_signature(source: str, fn: str, file: str = "<source>") -> CudaSignature:
    """The signature of the top-level host function `fn` defined in CUDA C++ `source`.

    Comments are ignored; calls, declarations and definitions inside a namespace or
    class are skipped; `static`, `inline` and `__host__` are dropped from the return
    type; default arguments are dropped. Raises BuildError when there is no such
    definition, when `fn` is a `__global__` or `__device__` function or a template, or
    when a parameter has no name.
    """
    text = _COMMENTS.sub(" ", source)
    for match in re.finditer(rf"\b{re.escape(fn)}\s*\(", text):
        start, depth, i = match.end(), 1, match.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        after = text[i:].lstrip().removeprefix("noexcept").lstrip()
        if not after.startswith("{") or text[: match.start()].count("{") != text[: match.start()].count("}"):
            continue  # a call, a declaration, or a definition inside a namespace or class
        head = text[: match.start()]
        cut = max(head.rfind(";"), head.rfind("}"), head.rfind("{"), head.rfind("#"))
        if cut >= 0 and head[cut] == "#":
            cut = head.find("\n", cut)
        ret_words = head[cut + 1:].split()
        if any(w.startswith("template") for w in ret_words):
            raise BuildError(f"{file}: {fn} is a template; the entry point must be a plain host function")
        if "__global__" in ret_words or "__device__" in ret_words:
            raise BuildError(
                f"{file}: {fn} is a CUDA kernel; the entry point must be a host function taking torch::Tensor "
                "arguments that launches it"
            )
        return_type = " ".join(w for w in ret_words if w not in _QUALIFIERS)
        if not return_type:
            raise BuildError(f"{file}: cannot read the return type of {fn}")
        params: list[tuple[str, str]] = []
        raw = text[start: i - 1].strip()
        for p in [] if raw in ("", "void") else _split_top_level(raw):
            p = p.split("=")[0].strip()
            m = re.match(r"^(.*?[\s*&])([A-Za-z_]\w*)$", p)
            if not m or not m.group(1).strip():
                raise BuildError(f"{file}: parameter '{p}' of {fn} needs a type and a name")
            params.append((m.group(1).strip(), m.group(2)))
        return CudaSignature(return_type, params)
    raise BuildError(f"{file}: no top-level definition of host function '{fn}'")


def cxx_standard() -> str:
    """The C++ standard torch's headers need: C++20 from torch 2.12 on (torch's ATen
    headers refuse older standards there; pytorch/pytorch#176659), else C++17."""
    import torch

    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    return "c++20" if (major, minor) >= (2, 12) else "c++17"


def nvcc_compile_check(paths: list[Path], workdir: Path, timeout_s: float) -> str:
    """Compile each `.cu` file with `nvcc -c` against torch's and Python's headers, for a
    machine without a CUDA-enabled torch. Returns the log; a missing nvcc is a log line,
    not an error. Raises BuildError with nvcc's output when a file does not compile."""
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "nvcc not found on PATH: the CUDA C++ sources were not compile-checked"
    includes = [f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"], str(workdir)]]
    for path in paths:
        cmd = [nvcc, "-c", "-x", "cu", f"-std={cxx_standard()}", *includes, str(path),
               "-o", str(path.with_suffix(".o"))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=workdir)
        except subprocess.TimeoutExpired:
            raise BuildError(f"nvcc: {path.name} did not compile within {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error" in line]
            raise BuildError(f"nvcc: {path.name} does not compile:\n" + "\n".join(errors[:40] or [proc.stderr[-4000:]]))
    return f"nvcc: compile-checked {', '.join(p.name for p in paths)}"


class _CudaEntry:
    """Calls the bound host function with the keyword arguments in its parameter order."""

    def __init__(self, module: types.ModuleType, name: str, params: list[str]):
        self.module, self.name, self.params = module, name, params

    def __call__(self, **kwargs):
        out = getattr(self.module, self.name)(*[kwargs[p] for p in self.params])
        return tuple(out) if isinstance(out, list) else out


def _build_cuda(solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
    entry = solution.entry_source
    fn = solution.spec.entry_function
    assert entry is not None
    sig = parse_cuda_signature(entry.content, fn, entry.path)
    expected = list(definition.inputs) + (list(definition.outputs) if solution.spec.destination_passing_style else [])
    names = [n for _, n in sig.params]
    if sorted(names) != sorted(expected):
        raise BuildError(
            f"spec.entry_point: {fn}({', '.join(names)}) in {entry.path} does not match the definition's "
            f"arguments ({', '.join(expected)})"
        )
    cu = [s for s in solution.sources if s.path.endswith(".cu")]
    cu.sort(key=lambda s: s.path != entry.path)
    if device == "cpu":
        log = nvcc_compile_check([workdir / s.path for s in cu], workdir, timeout_s)
        return Built(fn=None, log=f"{log}\nbuilt; CUDA C++ cannot run on device cpu")
    import torch
    from torch.utils.cpp_extension import load_inline

    cpp = ["#include <torch/extension.h>\n" + sig.declaration(fn)]
    cpp += [s.content for s in solution.sources if s.path.endswith(".cpp")]
    cuda_flags = ["-O3"]
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if major >= 9 and "TORCH_CUDA_ARCH_LIST" not in os.environ:
        # The arch-specific target (sm_90a, sm_100a) enables wgmma / tcgen05; torch's
        # default target (sm_90) would reject those instructions.
        cuda_flags.append(f"-gencode=arch=compute_{major}{minor}a,code=sm_{major}{minor}a")
    digest = hashlib.sha256()
    for part in [*cpp, *(s.content for s in cu), fn, *cuda_flags, torch.__version__]:
        digest.update(part.encode())
    try:
        module = load_inline(
            name=f"solforge_{digest.hexdigest()[:16]}",
            cpp_sources=cpp,
            cuda_sources=[s.content for s in cu],
            functions=[fn],
            extra_cuda_cflags=cuda_flags,
            extra_include_paths=[str(workdir)],
            verbose=False,
        )
    except Exception as exc:  # load_inline raises RuntimeError / OSError with the compiler output
        raise BuildError(f"load_inline: {exc}") from None
    return Built(fn=_CudaEntry(module, fn, names), namespaces=[vars(module)], log="built with load_inline")


def build_solution(solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
    """Build `solution` in `workdir` for `device` (see the module docstring).

    Raises BuildError with a log for anything that does not build: a bad source path,
    an entry point that does not match the definition, a Python file that fails to
    import (any exception at import time counts as a build failure), an nvcc or
    load_inline error.
    """
    problems = check_solution(definition, solution)
    if problems:
        raise BuildError(problems[0])
    write_sources(solution, workdir)
    if solution.spec.language is Language.cuda and not solution.spec.entry_file.endswith(".py"):
        return _build_cuda(solution, definition, workdir, device, timeout_s)
    try:
        return _import_entry(solution, workdir)
    except BuildError:
        raise
    except Exception as exc:
        import traceback

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
        raise BuildError(f"importing {solution.spec.entry_file} raised {type(exc).__name__}: {exc}\n{tb}") from None


def build_reference(definition: Definition) -> Callable[..., object]:
    """The definition's reference `run`, executed from its source. Raises SpecError when
    the source does not run or defines no `run`."""
    filename = f"<reference {definition.name}>"
    linecache.cache[filename] = (len(definition.reference), None, definition.reference.splitlines(True), filename)
    module = types.ModuleType(f"solforge_reference_{definition.name}")
    module.__file__ = filename
    try:
        exec(compile(definition.reference, filename, "exec"), module.__dict__)
    except Exception as exc:
        raise SpecError(f"definition {definition.name}: reference: raised {type(exc).__name__}: {exc}") from None
    run = module.__dict__.get("run")
    if not callable(run):
        raise SpecError(f"definition {definition.name}: reference: no top-level function 'run'")
    return run


# -- solutions made by the harness -----------------------------------------------------------


def eager_solution(definition: Definition) -> Solution:
    """The reference itself as a pytorch Solution: the 'eager' baseline."""
    return Solution(
        name="eager",
        definition=definition.name,
        author="solforge",
        description="The definition's reference, run eagerly.",
        spec=BuildSpec(language=Language.pytorch, entry_point="reference.py::run", destination_passing_style=False),
        sources=[SourceFile(path="reference.py", content=definition.reference)],
    )


_COMPILED = """import torch

from reference import run as _reference_run

run = torch.compile(_reference_run)
"""


def compile_solution(definition: Definition) -> Solution:
    """torch.compile of the reference (default mode): the 'compile' baseline."""
    return Solution(
        name="compile",
        definition=definition.name,
        author="solforge",
        description="torch.compile of the definition's reference.",
        spec=BuildSpec(language=Language.pytorch, entry_point="compiled.py::run", destination_passing_style=False),
        sources=[
            SourceFile(path="reference.py", content=definition.reference),
            SourceFile(path="compiled.py", content=_COMPILED),
        ],
    )


def solution_from_py(path: str | Path, definition: Definition, language: str = "pytorch") -> Solution:
    """A single `.py` file whose top-level `run` takes the definition's inputs as keyword
    arguments and returns its outputs (not destination-passing), as a Solution named
    after the file. Raises SpecError when the file is missing or not Python, `run` is
    absent, or its signature does not match the definition's inputs.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    if path.suffix != ".py":
        raise SpecError(f"{path}: expected a .py file with a `run` function")
    try:
        lang = Language(language)
    except ValueError:
        raise SpecError(f"{path}: language: expected one of {[l.value for l in Language]}, got '{language}'") from None
    solution = Solution(
        name=path.stem,
        definition=definition.name,
        spec=BuildSpec(language=lang, entry_point=f"{path.name}::run", destination_passing_style=False),
        sources=[SourceFile(path=path.name, content=path.read_text())],
    )
    problems = check_solution(definition, solution)
    if problems:
        raise SpecError(f"{path}: {problems[0]}")
    return solution
