"""Cross-compiling CUDA C++ with nvcc for sm_90a / sm_100a on this CPU machine.

The fast tests compile small `.cu` files without torch's headers (a few seconds each);
the one that includes torch/extension.h, as real solutions do, is `slow` (tens of seconds
of header parsing on a 2-core machine). Skipped where nvcc is not on PATH.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from solforge.bench.crosscompile import CrossCompileError, cross_compile
from solforge.problems import load_builtin
from solforge.spec import BuildSpec, Solution, SourceFile

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")

DEFINITION, _ALL = load_builtin("rmsnorm_h4096")
WORKLOADS = [w for w in _ALL if w.uuid in ("rmsnorm_h4096-t1", "rmsnorm_h4096-t16")]
KERNELS = Path(__file__).parent / "kernels"

SCALE_ROWS = """
__global__ void scale_rows(const float* __restrict__ x, float* __restrict__ y, int cols) {
    __shared__ float tile[256];
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = c < cols ? x[(size_t)blockIdx.x * cols + c] : 0.0f;
    __syncthreads();
    if (c < cols) y[(size_t)blockIdx.x * cols + c] = 2.0f * tile[threadIdx.x];
}
"""

# 65536 floats of static shared memory: 256 KB, beyond the 48 KB a static array may take
TOO_MUCH_SHARED = """
__global__ void hog(float* y) {
    __shared__ float buf[65536];
    buf[threadIdx.x] = threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = buf[(threadIdx.x * 7) % 65536];
}
"""


def _solution(source: str) -> Solution:
    return Solution(name="cu", definition=DEFINITION.name, sources=[SourceFile(path="k.cu", content=source)],
                    spec=BuildSpec(language="cuda", entry_point="k.cu::run", destination_passing_style=False))  # fmt: skip


@pytest.mark.parametrize("target", ["sm_90a", "sm_100a"])
def test_a_cuda_kernel_is_compiled_for_the_target_with_ptxas_figures(target):
    (report,) = cross_compile(_solution(SCALE_ROWS), DEFINITION, WORKLOADS, target)
    assert (report.kernel, report.language, report.target, report.specialization) == ("scale_rows", "cuda", target, "k.cu")
    assert report.workloads == [w.uuid for w in WORKLOADS]  # one compile serves every workload
    assert report.static_shared_memory_bytes == 1024 and report.barriers == 1 and report.dynamic_shared_memory_bytes == 0
    assert 0 < report.registers_per_thread <= 255 and report.spill_bytes == 0 and report.threads_per_block is None
    assert report.max_threads_per_block == 1024 and report.occupancy.block_size_basis == "best"
    assert report.occupancy.fraction == 1.0


def test_ptxas_refuses_too_much_static_shared_memory_with_its_own_message():
    with pytest.raises(CrossCompileError) as info:
        cross_compile(_solution(TOO_MUCH_SHARED), DEFINITION, WORKLOADS, "sm_90a")
    exc = info.value
    assert exc.kind == "compile" and exc.kernel == "k.cu" and exc.target == "sm_90a"
    assert "too much shared data" in exc.message and "ptxas:" in exc.message


def test_a_syntax_error_carries_nvccs_message():
    with pytest.raises(CrossCompileError) as info:
        cross_compile(_solution(SCALE_ROWS.replace("2.0f * tile", "2.0f * tile[")), DEFINITION, WORKLOADS, "sm_90a")
    assert info.value.kind == "compile" and "error" in info.value.message
    assert str(info.value).startswith("kernel k.cu, target sm_90a: nvcc: k.cu does not compile for sm_90a")


def test_a_cuda_solution_without_cu_sources_has_nothing_to_compile():
    python_only = Solution(name="py", definition=DEFINITION.name, sources=[SourceFile(path="k.py", content="")],
                           spec=BuildSpec(language="cuda", entry_point="k.py::run"))  # fmt: skip
    with pytest.raises(ValueError, match="no GPU kernel of its own"):
        cross_compile(python_only, DEFINITION, WORKLOADS, "sm_90a")


@pytest.mark.slow
def test_a_solution_with_torch_headers_compiles_like_the_harness_builds_it():
    solution = Solution(name="honest", definition=DEFINITION.name,
                        sources=[SourceFile(path="k.cu", content=(KERNELS / "honest_rmsnorm.cu").read_text())],
                        spec=BuildSpec(language="cuda", entry_point="k.cu::run", destination_passing_style=False))  # fmt: skip
    (report,) = cross_compile(solution, DEFINITION, WORKLOADS, "sm_90a", timeout_s=600)
    assert report.kernel == "rmsnorm_kernel" and report.registers_per_thread > 0 and report.barriers == 1
