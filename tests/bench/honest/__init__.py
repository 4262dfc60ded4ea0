"""Honest kernels a real user writes, in many styles: each must PASS with no guard finding.

Every `*.py` file here (other than this one) is the source of one solution of the guard
tests' `RMSNORM` (`exploits.RMSNORM`: y = x * rsqrt(mean(x^2, -1) + 1e-6) * weight,
float32, hidden 64). The file's first comment line says what idiom it stands for.
`KERNELS` names each kernel's language and calling convention (returned outputs, or
destination-passing style: `run(x, weight, y)` writing `y` in place);
`test_honest_kernels.py` evaluates each one through `solforge.bench.evaluate`.
A kernel the judge rejects is a false reject: it stays here, its test marked xfail.
"""

from __future__ import annotations

from pathlib import Path

from exploits import RMSNORM

from solforge.spec import Solution, Workload

HERE = Path(__file__).parent

__all__ = ["HERE", "KERNELS", "RMSNORM", "WORKLOAD", "solution", "source"]

# One small workload: 8 tokens of RMSNORM's 64-wide rows (the red-team tests use the same).
WORKLOAD = Workload.model_validate({
    "uuid": "honest", "axes": {"tokens": 8},
    "inputs": {"x": {"type": "random"}, "weight": {"type": "random"}},
})

# kernel name -> (language, destination-passing style)
KERNELS: dict[str, tuple[str, bool]] = {
    "torch_threads": ("pytorch", False),
    "torch_manual_seed": ("pytorch", False),
    "torch_noncontiguous_view": ("pytorch", False),
    "torch_dps_inplace": ("pytorch", True),
    "torch_workspace": ("pytorch", False),
    "torch_output_buffer_reused": ("pytorch", False),
    "torch_custom_op": ("pytorch", False),
    "torch_nn_module_own": ("pytorch", False),
    "torch_jit_script": ("pytorch", False),
    "torch_compile_own": ("pytorch", False),
    "torch_compile_at_import": ("pytorch", False),
    "torch_cpp_extension": ("pytorch", False),
    "torch_inference_mode": ("pytorch", False),
    "torch_thread_pool_joined": ("pytorch", False),
    "warnings_and_logging": ("pytorch", False),
    "traceback_fallback": ("pytorch", False),
    "numpy_heavy": ("pytorch", False),
    "scipy_special": ("pytorch", False),
    "numba_parallel_prange": ("numba", False),
    "numba_parallel_workqueue": ("numba", False),
    "numba_parallel_omp": ("numba", False),
    "numba_parallel_tbb": ("numba", False),
    "numba_cache": ("numba", False),
    "numba_lru_cache_per_shape": ("numba", False),
    "numba_lock_lazy_global": ("numba", False),
    "numba_dps": ("numba", True),
    "numba_guvectorize": ("numba", False),
    "numba_vectorize_two_pass": ("numba", False),
    "numba_codegen_tempfile": ("numba", False),
    "numba_codegen_exec": ("numba", False),
    "triton_autotune": ("triton", False),
    "triton_heuristics": ("triton", False),
}


def source(name: str) -> str:
    """The source text of honest kernel `name` (file stem)."""
    return (HERE / f"{name}.py").read_text()


def solution(name: str) -> Solution:
    """A one-file solution of RMSNORM whose `main.py` is honest kernel `name`, in its
    language and calling convention from `KERNELS`."""
    language, dps = KERNELS[name]
    return Solution.model_validate({
        "name": name, "definition": RMSNORM.name, "author": "honest-idioms",
        "spec": {"language": language, "entry_point": "main.py::run", "destination_passing_style": dps,
                 "target_hardware": ["cpu"]},
        "sources": [{"path": "main.py", "content": source(name)}],
    })
