"""The launch counter sees a solution's own Triton and numba kernels (and its CUDA
extension's functions); a declared language with no launch of its own is a decoy."""

from __future__ import annotations

import _bisect
import textwrap

import pytest
import torch
from exploits import entry, import_solution, make_inputs, reference, solution

from solforge.bench.guards import decoy_findings, launch_counter
from solforge.spec import Solution


@pytest.fixture
def interpret(monkeypatch):
    """Triton's interpreter for the kernels decorated from here on, so they run on the CPU.
    triton.language is imported first, outside interpreter mode: its own @jit helpers
    (tl.sum, ...) must stay compilable for any GPU test later in this process."""
    import triton.language  # noqa: F401

    monkeypatch.setenv("TRITON_INTERPRET", "1")


def run_calls(sol: Solution, tmp_path, calls: int = 2, device: str = "cpu"):
    """Import, install the counter, call `calls` times; (counter, last output, last inputs)."""
    namespaces = import_solution(sol, tmp_path)
    counter = launch_counter(namespaces, sol, device)
    fn = entry(namespaces, sol)
    out = inputs = None
    for seed in range(calls):
        inputs = {k: v.to(device) for k, v in make_inputs(seed).items()}
        out = fn(**inputs)
    counter.close()
    return counter, out, inputs


def test_an_honest_triton_kernel_is_counted_under_the_interpreter(interpret, tmp_path):
    sol = solution("honest_triton", "triton")
    counter, out, inputs = run_calls(sol, tmp_path, calls=3)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.count == 3 and counter.by_kernel == {"_rmsnorm_kernel": 3}
    assert decoy_findings(counter, sol, calls=3) == []


def test_a_decoy_triton_solution_is_caught(interpret, tmp_path):
    sol = solution("decoy_triton", "triton")
    counter, out, inputs = run_calls(sol, tmp_path)
    torch.testing.assert_close(out, reference(**inputs))  # right answer, wrong route
    got = decoy_findings(counter, sol, calls=2)
    assert [(f.guard, f.message) for f in got] == [
        ("decoy", "decoy: declared triton but launched none of its own kernels in 2 calls "
                  "(it defines _rmsnorm_kernel)")]


def test_an_honest_numba_kernel_is_counted_once_per_outer_call(tmp_path):
    sol = solution("honest_numba_prange", "numba")
    counter, out, inputs = run_calls(sol, tmp_path, calls=2)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.count == 2 and decoy_findings(counter, sol, calls=2) == []


def test_a_decoy_numba_solution_is_caught(tmp_path):
    sol = solution("decoy_numba", "numba")
    counter, _, _ = run_calls(sol, tmp_path)
    got = decoy_findings(counter, sol, calls=2)
    assert [f.guard for f in got] == ["decoy"]
    assert got[0].message.startswith("decoy: declared numba but launched none of its own kernels")
    assert "_rmsnorm_rows" in got[0].message



NUMBA_UFUNCS = '''
import numba
import numpy as np
import torch


@numba.guvectorize(["void(float32[:], float32[:], float32[:])"], "(n),(n)->(n)", nopython=True)
def rows(x, weight, out):
    acc = 0.0
    for j in range(x.shape[0]):
        acc += x[j] * x[j]
    inv = 1.0 / np.sqrt(acc / x.shape[0] + 1e-6)
    for j in range(x.shape[0]):
        out[j] = x[j] * inv * weight[j]


@numba.vectorize(["float32(float32, float32)"])
def scaled(x, s):
    return x * s


def run(x, weight):
    {body}
'''
UFUNC_HONEST = """out = torch.empty_like(x)
    rows(x.numpy(), weight.numpy(), out.numpy())
    return torch.from_numpy(scaled(out.numpy(), np.float32(1.0)))"""
UFUNC_DECOY = "return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight"


def numba_ufunc_solution(body: str) -> Solution:
    return Solution.model_validate({"name": "ufuncs", "definition": "d", "spec": {"language": "numba",
                                   "entry_point": "main.py::run", "destination_passing_style": False},
                                   "sources": [{"path": "main.py", "content": NUMBA_UFUNCS.format(body=body)}]})


def test_numba_guvectorize_and_vectorize_kernels_are_counted(tmp_path):
    sol = numba_ufunc_solution(UFUNC_HONEST)
    counter, out, inputs = run_calls(sol, tmp_path, calls=2)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.by_kernel == {"rows": 2, "scaled": 2} and counter.kernels == ["rows", "scaled"]
    assert decoy_findings(counter, sol, calls=2) == []


def test_a_decoy_defining_numba_ufuncs_but_computing_with_torch_is_caught(tmp_path):
    sol = numba_ufunc_solution(UFUNC_DECOY)
    counter, out, inputs = run_calls(sol, tmp_path, calls=2)
    torch.testing.assert_close(out, reference(**inputs))  # right answer, wrong route
    assert counter.count == 0
    assert [(f.guard, f.message) for f in decoy_findings(counter, sol, calls=2)] == [
        ("decoy", "decoy: declared numba but launched none of its own kernels in 2 calls (it defines rows, scaled)")]


NUMBA_ROWS = '''
import numba
import numpy as np


@numba.njit(cache=False)
def rows(x, weight, out):
    for r in range(x.shape[0]):
        inv = 1.0 / np.sqrt((x[r] * x[r]).sum() / x.shape[1] + 1e-6)
        out[r] = x[r] * inv * weight
'''

LOADS_A_FILE = '''
import importlib.util
import os
import tempfile

import torch

SOURCE = {source!r}
_dir = tempfile.mkdtemp(prefix="guard-test-codegen-")


def _load(path):
    spec = importlib.util.spec_from_file_location("guard_test_rows_" + str(abs(hash(path))), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rows


def run(x, weight):
    {body}
    out = torch.empty_like(x)
    rows(x.numpy(), weight.numpy(), out.numpy())
    return out
'''


def loads_a_file(body: str) -> Solution:
    code = LOADS_A_FILE.format(source=NUMBA_ROWS, body=body)
    return Solution.model_validate({"name": "codegen", "definition": "d", "spec": {"language": "numba",
                                   "entry_point": "main.py::run", "destination_passing_style": False},
                                   "sources": [{"path": "main.py", "content": code}]})


def test_a_kernel_the_solution_generates_into_a_file_and_imports_is_its_own(tmp_path):
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()  # the numba plugin's build does this before the import
    sol = loads_a_file("path = os.path.join(_dir, 'rows.py')\n"
                       "    with open(path, 'w') as f:\n"
                       "        f.write(SOURCE)\n"
                       "    rows = _load(path)")
    counter, out, inputs = run_calls(sol, tmp_path / "sol", calls=2)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.by_kernel == {"rows": 2} and decoy_findings(counter, sol, calls=2) == []


def test_a_library_file_first_imported_by_the_solutions_code_is_not_its_own(tmp_path):
    # The solution's code is on the stack when the library is first imported (at call
    # time, from a file path): still not a kernel it wrote.
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()
    (tmp_path / "lib").mkdir()
    library = tmp_path / "lib" / "guard_test_numba_library.py"
    library.write_text(NUMBA_ROWS)  # written by someone else (this test), before the solution ran
    sol = loads_a_file(f"rows = _load({str(library)!r})")
    counter, out, inputs = run_calls(sol, tmp_path / "sol", calls=2)
    torch.testing.assert_close(out, reference(**inputs))  # the library computed it
    assert counter.count == 0
    assert [f.guard for f in decoy_findings(counter, sol, calls=2)] == ["decoy"]


def test_a_kernel_the_solution_execs_from_a_generated_string_is_its_own(tmp_path):
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()
    sol = loads_a_file("namespace = {}\n"
                       "    exec(SOURCE.replace('cache=False', 'cache=False '), namespace)  # a computed string\n"
                       "    rows = namespace['rows']")
    counter, out, inputs = run_calls(sol, tmp_path / "sol", calls=2)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.by_kernel == {"rows": 2} and decoy_findings(counter, sol, calls=2) == []


def test_a_library_kernel_reached_through_an_execd_string_is_not_its_own(tmp_path, monkeypatch):
    # The string the solution compiles only imports the library's kernel: the function's
    # code is the library's, not the string's.
    from solforge.bench.guards.launches import record_generated_sources

    record_generated_sources()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "guard_test_numba_library_2.py").write_text(NUMBA_ROWS)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    sol = loads_a_file("namespace = {}\n"
                       "    exec('from guard_test_numba_library_' + str(2) + ' import rows', namespace)\n"
                       "    rows = namespace['rows']")
    counter, out, inputs = run_calls(sol, tmp_path / "sol", calls=2)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.count == 0
    assert [f.guard for f in decoy_findings(counter, sol, calls=2)] == ["decoy"]

LIBRARY = '''
import triton
import triton.language as tl


@triton.jit
def scale_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 2.0, mask=mask)
'''


def test_launching_a_library_kernel_is_not_launching_ones_own(interpret, tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "guard_test_kernel_library.py").write_text(LIBRARY)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    code = textwrap.dedent('''
        import torch
        from guard_test_kernel_library import scale_kernel


        def run(x, weight):
            y = torch.empty_like(x)
            scale_kernel[(1,)](x, y, x.numel(), BLOCK=1024)  # someone else's kernel, for show
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight
    ''')
    sol = Solution.model_validate({"name": "borrowed", "definition": "d", "spec": {"language": "triton",
                                   "entry_point": "main.py::run", "destination_passing_style": False}, "sources": [{"path": "main.py", "content": code}]})
    counter, _, _ = run_calls(sol, tmp_path / "sol")
    assert counter.count == 0
    assert [f.guard for f in decoy_findings(counter, sol, calls=2)] == ["decoy"]


def test_kernels_built_at_call_time_and_wrapped_kernels_count(interpret, tmp_path):
    code = textwrap.dedent('''
        import torch
        import triton
        import triton.language as tl


        # One config: the interpreter has no benchmarker to choose between several.
        @triton.autotune(configs=[triton.Config({}, num_warps=4)], key=["n"])
        @triton.heuristics(values={"BLOCK": lambda args: triton.next_power_of_2(args["n"])})
        @triton.jit
        def tuned(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < n
            tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask), mask=mask)


        def run(x, weight):
            @triton.jit
            def nested(x_ptr, n, BLOCK: tl.constexpr):
                pass

            nested[(1,)](x, x.numel(), BLOCK=16)
            y = torch.empty_like(x)
            tuned[(1,)](x, y, x.numel())
            return y
    ''')
    sol = Solution.model_validate({"name": "built", "definition": "d", "spec": {"language": "triton",
                                   "entry_point": "main.py::run", "destination_passing_style": False}, "sources": [{"path": "main.py", "content": code}]})
    counter, out, inputs = run_calls(sol, tmp_path, calls=1)
    torch.testing.assert_close(out, inputs["x"])
    assert counter.by_kernel == {"nested": 1, "tuned": 1} and "tuned" in counter.kernels
    assert decoy_findings(counter, sol, calls=1) == []



AUTOTUNED = '''
import torch
import triton
import triton.language as tl


@triton.autotune(configs=[triton.Config({"BLOCK": 64}), triton.Config({"BLOCK": 128})], key=["n"])
@triton.jit
def copy(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask), mask=mask)


def run(x, weight):
    y = torch.empty_like(x)
    {body}
'''


def autotuned_solution(body: str) -> Solution:
    return Solution.model_validate({"name": "autotuned", "definition": "d", "spec": {"language": "triton",
                                   "entry_point": "main.py::run", "destination_passing_style": False},
                                   "sources": [{"path": "main.py", "content": AUTOTUNED.replace("{body}", body)}]})


def test_an_autotuned_kernel_runs_its_first_config_under_the_interpreter(interpret, tmp_path):
    sol = autotuned_solution("copy[(triton.cdiv(x.numel(), 64),)](x, y, x.numel())\n    return y")
    namespaces = import_solution(sol, tmp_path)
    counter = launch_counter(namespaces, sol, "cpu")
    fn = entry(namespaces, sol)
    for seed in range(2):
        inputs = make_inputs(seed)
        torch.testing.assert_close(fn(**inputs), inputs["x"])
    counter.close()
    tuner = next(ns["copy"] for ns in namespaces if "copy" in ns)
    assert tuner.best_config.kwargs == {"BLOCK": 64}  # the first config; nothing was benchmarked
    assert counter.by_kernel == {"copy": 2}  # the calls' launches only: no config was launched to be timed


def test_a_decoy_defining_an_autotuned_kernel_is_still_caught(interpret, tmp_path):
    sol = autotuned_solution("return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight")
    counter, out, inputs = run_calls(sol, tmp_path)
    torch.testing.assert_close(out, reference(**inputs))
    assert [(f.guard, f.message) for f in decoy_findings(counter, sol, calls=2)] == [
        ("decoy", "decoy: declared triton but launched none of its own kernels in 2 calls (it defines copy)")]


def test_compiled_kernels_keep_their_autotune_benchmark(tmp_path, monkeypatch):
    import triton
    import triton.language as tl

    from solforge.bench.languages.triton import first_config_under_interpreter

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    first_config_under_interpreter()
    timed = []

    def bench(kernel_call, quantiles):  # stands in for the GPU's do_bench; launches nothing
        timed.append(quantiles)
        return [3.0, 2.0, 4.0]

    @triton.autotune(configs=[triton.Config({"BLOCK": 64}), triton.Config({"BLOCK": 128})], key=["n"],
                     do_bench=bench)
    @triton.jit
    def compiled(x_ptr, n, BLOCK: tl.constexpr):
        pass

    assert type(compiled.fn).__name__ == "JITFunction"
    compiled.nargs = {"x_ptr": None, "n": 1}  # what Autotuner.run sets before it benchmarks
    assert compiled._bench(config=compiled.configs[1]) == [3.0, 2.0, 4.0] and len(timed) == 1

def test_a_closed_counter_stops_counting(interpret, tmp_path):
    sol = solution("honest_triton", "triton")
    namespaces = import_solution(sol, tmp_path)
    counter = launch_counter(namespaces, sol, "cpu")
    fn = entry(namespaces, sol)
    fn(**make_inputs(0))
    counter.close()
    fn(**make_inputs(1))
    assert counter.count == 1


CUDA_SOURCE = '''
#include <torch/extension.h>
template <typename T>
__global__ void __launch_bounds__(256) rmsnorm_kernel(const T* x, T* y, int n) {}
extern "C" __global__ void helper_kernel(float* y) {}
torch::Tensor run(torch::Tensor x, torch::Tensor w);
'''


def cuda_solution() -> Solution:
    return Solution.model_validate({"name": "cu", "definition": "d", "spec": {"language": "cuda",
                                    "entry_point": "kernel.cu::run", "destination_passing_style": False},
                                    "sources": [{"path": "kernel.cu", "content": CUDA_SOURCE}]})


def test_extension_functions_are_counted_and_global_kernels_named():
    # Any compiled extension stands in for the one load_inline builds: its namespace is handed over.
    namespace = dict(vars(_bisect))
    sol = cuda_solution()
    counter = launch_counter([namespace], sol, "cpu")
    assert {"rmsnorm_kernel", "helper_kernel", "bisect_left"} <= set(counter.kernels)
    assert counter.own_kernel_names == {"rmsnorm_kernel", "helper_kernel"}
    assert decoy_findings(counter, sol, calls=1)[0].guard == "decoy"
    assert namespace["bisect_left"]([1, 2, 3], 2) == 1
    assert counter.count == 1 and decoy_findings(counter, sol, calls=1) == []
    counter.close()


def test_a_profile_without_the_solutions_kernels_is_a_decoy():
    sol = cuda_solution()
    counter = launch_counter([dict(vars(_bisect))], sol, "cpu")
    counter.record("run")
    with counter.profile():  # a no-op on the CPU: nothing is recorded
        pass
    assert counter.profiled_kernel_names is None and decoy_findings(counter, sol, calls=1) == []
    # What profile() records on a GPU when the host function computed with torch:
    counter.profiled_kernel_names = ["void at::native::vectorized_elementwise_kernel<4, ...>(...)"]
    got = decoy_findings(counter, sol, calls=1)
    assert [f.guard for f in got] == ["decoy"] and "none of its own kernels" in got[0].message
    counter.profiled_kernel_names = ["void rmsnorm_kernel<float>(float const*, float*, int)"]
    assert decoy_findings(counter, sol, calls=1) == []
    counter.close()


def test_languages_without_kernels_of_their_own_are_never_decoys(tmp_path):
    sol = solution("honest_torch", "pytorch")
    counter, _, _ = run_calls(sol, tmp_path)
    assert counter.count == 0 and decoy_findings(counter, sol, calls=2) == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_on_the_device_triton_kernels_are_counted_and_profiled(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    honest = solution("honest_triton", "triton")
    namespaces = import_solution(honest, tmp_path / "honest")
    counter = launch_counter(namespaces, honest, "cuda")
    fn = entry(namespaces, honest)
    inputs = {k: v.cuda() for k, v in make_inputs(0).items()}
    fn(**inputs)  # compile outside the profile
    with counter.profile():
        out = fn(**inputs)
    torch.testing.assert_close(out, reference(**inputs))
    assert counter.count == 2 and counter.own_kernels_profiled
    assert decoy_findings(counter, honest, calls=2) == []
    counter.close()

    decoy = solution("decoy_triton", "triton")
    counter, _, _ = run_calls(decoy, tmp_path / "decoy", device="cuda")
    assert [f.guard for f in decoy_findings(counter, decoy, calls=2)] == ["decoy"]
