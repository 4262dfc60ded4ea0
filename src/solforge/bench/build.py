"""Building a solution into a callable, in the solution's process.

`build_solution` writes the sources into the solution's working directory and hands
them to the language's plugin (`bench.languages`): most import the `.py` entry file
from there (`import_entry`: files of one solution import each other by name; Triton runs
under its interpreter when the device kind says so), CUDA C++ builds `.cu` sources with
load_inline (`languages.cuda`).

Also here: the reference (`Definition.reference`) as a callable, the baselines as
Solutions, and `solution_from_py` for a single `.py` file with a `run` function.
"""

from __future__ import annotations

import importlib.util
import linecache
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


def import_entry(solution: Solution, workdir: Path) -> Built:
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


def build_solution(solution: Solution, definition: Definition, workdir: Path, device: str, timeout_s: float) -> Built:
    """Build `solution` in `workdir` for `device` (see the module docstring).

    Raises BuildError with a log for anything that does not build: a bad source path,
    an entry point that does not match the definition, a Python file that fails to
    import (any exception at import time counts as a build failure), an nvcc or
    load_inline error.
    """
    from solforge.bench.languages import plugin_for

    problems = check_solution(definition, solution)
    if problems:
        raise BuildError(problems[0])
    write_sources(solution, workdir)
    try:
        return plugin_for(solution.spec.language).build(solution, definition, workdir, device, timeout_s)
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
