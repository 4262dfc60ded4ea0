"""The launch counter at the edges the first tests left open: the time spent in the
solution's own launches, ownership by source file, a closed counter's extension
functions, a library's kernel that is not the solution's, which languages' hooks are
installed, and what a decoy finding shows of the profiler's kernels.

Written against the mutants of `benchmarks/mutation.py` that the first tests let through;
each test states a rule of the counter's contract, not a line of its code.
"""

from __future__ import annotations

import _bisect
import importlib.util
import math
import os
import shutil
import sys
import textwrap
import types

import pytest
import torch
from exploits import entry, import_solution, make_inputs, reference, solution

from solforge.bench import languages
from solforge.bench.guards import decoy_findings, launch_counter
from solforge.bench.guards.launches import LaunchCounter
from solforge.bench.languages import LanguagePlugin
from solforge.spec import Language, Solution

# A numba kernel small enough to compile in well under a second (no parallel=True).
OWN_NUMBA = '''
import numba
import numpy as np
import torch


@numba.njit(cache=False)
def _scale_rows(x, weight, out):
    rows, hidden = x.shape
    for r in range(rows):
        acc = 0.0
        for j in range(hidden):
            acc += x[r, j] * x[r, j]
        scale = 1.0 / np.sqrt(acc / hidden + 1e-6)
        for j in range(hidden):
            out[r, j] = x[r, j] * scale * weight[j]


def run(x, weight):
    out = torch.empty_like(x)
    _scale_rows(x.numpy(), weight.numpy(), out.numpy())
    return out
'''


def numba_solution(name: str, code: str) -> Solution:
    return Solution.model_validate({"name": name, "definition": "d", "spec": {
        "language": "numba", "entry_point": "main.py::run", "destination_passing_style": False},
        "sources": [{"path": "main.py", "content": code}]})


def counted(sol: Solution, directory, calls: int = 2) -> LaunchCounter:
    namespaces = import_solution(sol, directory)
    counter = launch_counter(namespaces, sol, "cpu")
    fn = entry(namespaces, sol)
    for seed in range(calls):
        fn(**make_inputs(seed))
    counter.close()
    return counter


def test_time_is_measured_inside_the_solutions_own_launches_only(tmp_path):
    honest = counted(numba_solution("own", textwrap.dedent(OWN_NUMBA)), tmp_path / "honest")
    assert honest.count == 2 and honest.own_ns > 0
    decoy = counted(solution("decoy_numba", "numba"), tmp_path / "decoy")
    assert decoy.count == 0 and decoy.own_ns == 0


def test_a_kernel_compiled_from_a_solution_file_is_owned_whatever_its_module(tmp_path):
    mine, theirs = tmp_path / "main.py", tmp_path / "elsewhere.py"
    counter = LaunchCounter(device="cpu", language=Language("numba"), modules=frozenset({"solution_main"}),
                            files=frozenset({os.path.realpath(mine)}))
    namespace: dict = {"__name__": "not_the_solution"}
    exec(compile("def kernel(x):\n    return x\n", str(mine), "exec"), namespace)
    exec(compile("def other(x):\n    return x\n", str(theirs), "exec"), namespace)
    assert counter.owns(namespace["kernel"])
    assert not counter.owns(namespace["other"])
    assert not counter.owns(len)  # a builtin has no code, and no module of the solution's


def test_an_extensions_functions_are_counted_until_the_counter_closes():
    namespace = dict(vars(_bisect))  # stands in for a load_inline extension's namespace
    namespace["BLOCK_SIZE"] = 256  # a module constant (pybind11's m.attr): data, not a kernel
    sol = Solution.model_validate({"name": "cu", "definition": "d", "spec": {
        "language": "cuda", "entry_point": "kernel.cu::run", "destination_passing_style": False},
        "sources": [{"path": "kernel.cu", "content": "__global__ void k(float* y) {}\n"}]})
    counter = launch_counter([namespace], sol, "cpu")
    assert namespace["BLOCK_SIZE"] == 256 and "BLOCK_SIZE" not in counter.kernels
    assert namespace["bisect_left"]([1, 2, 3], 2) == 1
    assert counter.count == 1 and counter.own_ns > 0
    counter.close()
    elapsed = counter.own_ns
    assert namespace["bisect_left"]([1, 2, 3], 3) == 2  # still works, no longer counted
    assert (counter.count, counter.own_ns) == (1, elapsed)


LIBRARY = '''
import numba


@numba.njit(cache=False)
def library_kernel(x):
    return x.copy()
'''


def test_a_library_kernel_imported_by_the_solution_is_not_named_as_its_own(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "launch_test_numba_library.py").write_text(textwrap.dedent(LIBRARY))
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    code = textwrap.dedent('''
        import torch
        from launch_test_numba_library import library_kernel


        def run(x, weight):
            y = torch.from_numpy(library_kernel(x.numpy()))  # someone else's kernel: it must still work
            return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
    ''')
    sol = numba_solution("borrowed", code)
    namespaces = import_solution(sol, tmp_path / "sol")
    counter = launch_counter(namespaces, sol, "cpu")
    inputs = make_inputs(0)
    out = entry(namespaces, sol)(**inputs)
    counter.close()
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.kernels == [] and counter.count == 0
    assert [f.message for f in decoy_findings(counter, sol, calls=2)] == [
        "decoy: declared numba but launched none of its own kernels in 2 calls "
        "(no kernel of its own was found in its modules)"]


def test_a_decoy_finding_shows_at_most_five_of_the_profilers_kernels():
    sol = Solution.model_validate({"name": "cu", "definition": "d", "spec": {
        "language": "cuda", "entry_point": "kernel.cu::run", "destination_passing_style": False},
        "sources": [{"path": "kernel.cu", "content": "__global__ void own_kernel(float* y) {}\n"}]})
    counter = launch_counter([], sol, "cpu")
    counter.record("run")
    counter.profiled_kernel_names = [f"torch_kernel_{i}" for i in range(7)]
    got = decoy_findings(counter, sol, calls=1)
    counter.close()
    assert [f.message for f in got] == [
        "decoy: declared cuda but none of its own kernels (own_kernel) ran on the device (the profiler saw "
        "torch_kernel_0, torch_kernel_1, torch_kernel_2, torch_kernel_3, torch_kernel_4)"]


def _extension_copy(directory) -> types.ModuleType:
    """A compiled extension module loaded from `directory`, as load_inline's output is
    (outside the interpreter's prefix and site-packages): a copy of `_bisect`."""
    path = shutil.copy(_bisect.__file__, directory)
    spec = importlib.util.spec_from_file_location("_bisect", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_an_extension_built_for_the_solution_has_its_functions_counted(tmp_path):
    import numpy._core._multiarray_umath as numpy_extension  # an installed extension, in site-packages

    (tmp_path / "helper.py").write_text("from math import sqrt\n")
    helper_spec = importlib.util.spec_from_file_location("launch_test_helper", tmp_path / "helper.py")
    helper = importlib.util.module_from_spec(helper_spec)
    helper_spec.loader.exec_module(helper)
    built = _extension_copy(tmp_path)
    namespace = {"__name__": "launch_test_main", "__file__": str(tmp_path / "main.py"), "built": built,
                 "numpy_extension": numpy_extension, "math": math, "sys": sys, "helper": helper}
    sol = Solution.model_validate({"name": "cu", "definition": "d", "spec": {
        "language": "cuda", "entry_point": "kernel.cu::run", "destination_passing_style": False},
        "sources": [{"path": "kernel.cu", "content": "__global__ void k(float* y) {}\n"}]})
    sqrt, multiarray_functions = helper.sqrt, dict(vars(numpy_extension))
    counter = launch_counter([namespace], sol, "cpu")
    assert counter.kernels == ["bisect_left", "bisect_right", "insort_left", "insort_right", "k"]
    assert built.bisect_left([1, 2, 3], 2) == 1
    assert counter.count == 1
    assert helper.sqrt is sqrt and math.sqrt is sqrt  # the interpreter's extension is not the solution's
    assert dict(vars(numpy_extension)) == multiarray_functions  # nor is an installed one
    counter.close()


class _Probe(LanguagePlugin):
    """A plugin that only records whether its launch hooks were installed."""

    def __init__(self, name: str, toolchain: tuple[str, ...]):
        self.probe_name, self.probe_toolchain, self.installed = name, toolchain, []

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.probe_name

    @property
    def toolchain_modules(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.probe_toolchain

    def install_launch_hooks(self, device: str) -> None:
        self.installed.append(device)


def test_hooks_are_installed_for_the_declared_language_and_for_kernel_libraries_loaded(monkeypatch):
    # The declared language's hooks go in even before its library is imported (a kernel
    # built at call time must count); another language's only once its library is loaded.
    declared = _Probe("pytorch", ("launch_test_toolchain_not_imported",))
    loaded = _Probe("probe-loaded", ("json",))
    absent = _Probe("probe-absent", ("launch_test_toolchain_not_imported",))
    languages.plugins()  # the built-ins first, so that the probes replace and join them
    for probe in (declared, loaded, absent):
        monkeypatch.setitem(languages._PLUGINS, probe.probe_name, probe)
    counter = launch_counter([], solution("honest_torch", "pytorch"), "cpu")
    counter.close()
    assert (declared.installed, loaded.installed, absent.installed) == (["cpu"], ["cpu"], [])


@pytest.mark.cuda
def test_on_the_device_profile_records_the_kernels_that_ran():
    # Device kernels only, not the CPU-side aten ops that launched them. (Not run on the
    # CPU box this was written on: unverified until a GPU run.)
    import torch

    sol = solution("honest_torch", "pytorch")
    counter = launch_counter([], sol, "cuda")
    x = torch.ones(1024, device="cuda")
    with counter.profile():
        (x * 2).sum()
    counter.close()
    names = counter.profiled_kernel_names
    assert names and not [n for n in names if n.startswith("aten::")], names


def test_a_py_file_the_solution_writes_through_os_open_is_its_own(tmp_path):
    # os.open raises the `open` audit event with no mode string: the flags alone say it
    # writes. A file someone else wrote stays someone else's.
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()
    main = tmp_path / "main.py"
    main.write_text(textwrap.dedent("""
        import importlib.util
        import os

        def generate(path, name):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, b"def kernel(x):\\n    return x\\n")
            os.close(fd)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.kernel
    """))
    spec = importlib.util.spec_from_file_location("launches_test_os_open_main", main)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.generate(str(tmp_path / "generated_kernel.py"), "launches_test_os_open_generated")
    other_file = tmp_path / "other_kernel.py"
    other_file.write_text("def kernel(x):\n    return x\n")  # written by this test, not by the solution
    other_spec = importlib.util.spec_from_file_location("launches_test_os_open_other", other_file)
    other = importlib.util.module_from_spec(other_spec)
    other_spec.loader.exec_module(other)

    counter = LaunchCounter(device="cpu", language=Language("numba"), modules=frozenset({"solution_main"}),
                            files=frozenset({os.path.realpath(main)}))
    assert counter.owns(generated)
    assert not counter.owns(other.kernel)


def test_files_that_wrote_each_other_are_not_the_solutions_without_a_solution_file_in_the_chain(tmp_path):
    # Ownership follows the chain of writers (a generated file's writer may itself be
    # generated); a cycle that never reaches the solution's files is not its own.
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()
    writer = ("import importlib.util\n\ndef kernel(x):\n    return x\n\n"
              "def write(path, text):\n    with open(path, 'w') as f:\n        f.write(text)\n")

    def load(path, name):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    a_path, b_path = tmp_path / "cycle_a.py", tmp_path / "cycle_b.py"
    a_path.write_text(writer)
    a = load(a_path, "launches_test_cycle_a")
    a.write(str(b_path), writer)  # b written by a
    b = load(b_path, "launches_test_cycle_b")
    b.write(str(a_path), writer)  # a written (again) by b: a cycle
    counter = LaunchCounter(device="cpu", language=Language("numba"), modules=frozenset({"solution_main"}),
                            files=frozenset({os.path.realpath(tmp_path / "main.py")}))
    assert not counter.owns(a.kernel) and not counter.owns(b.kernel)
