"""Cross-compiling Triton kernels for sm_90a / sm_100a on this CPU machine, and the kernels
that must fail: a ptxas error, a front-end error, spills, a block too large, shared memory
beyond the per-block maximum, a launch that cannot be specialized, no kernel at all, a hang.

Each test compiles one or two small kernels with Triton's bundled ptxas (a second or two
each); the child-process path costs a Python start-up more.
"""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from solforge.bench.crosscompile import (  # noqa: E402
    CrossCompileError,
    cross_compile,
    exceeds_spill_threshold,
    spill_note,
)
from solforge.problems import load_builtin  # noqa: E402
from solforge.spec import BuildSpec, Solution, SourceFile  # noqa: E402

DEFINITION, _ALL = load_builtin("rmsnorm_h4096")  # hidden_states (T, 4096) bf16, weight (4096,), output (T, 4096)
WORKLOADS = [w for w in _ALL if w.uuid in ("rmsnorm_h4096-t1", "rmsnorm_h4096-t16")]
assert len(WORKLOADS) == 2

SCALE = """
import triton
import triton.language as tl


@triton.jit
def _scale(x_ptr, w_ptr, out_ptr, n_rows, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = (cols < n_cols) & (row < n_rows)
    x = tl.load(x_ptr + row * n_cols + cols, mask=m)
    w = tl.load(w_ptr + cols, mask=m)
    tl.store(out_ptr + row * n_cols + cols, x * w, mask=m)


def run(hidden_states, weight, output):
    n_rows, n_cols = hidden_states.shape
    _scale[(n_rows,)](hidden_states, weight, output, n_rows, n_cols, BLOCK=triton.next_power_of_2(n_cols),
                      num_warps=NUM_WARPS)
"""

BOGUS_ASM = """
import triton
import triton.language as tl


@triton.jit
def _bogus(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    y = tl.inline_asm_elementwise("bogus.op.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)
    tl.store(out_ptr + cols, y.to(out_ptr.dtype.element_ty), mask=cols < n_cols)


def run(hidden_states, weight, output):
    _bogus[(1,)](hidden_states, output, hidden_states.shape[1], BLOCK=4096, num_warps=4)
"""

# 16384 float32 values live across a reduction in one warp: 512 per thread, past 255 registers
HOARD = """
import triton
import triton.language as tl


@triton.jit
def _hoard(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    s = tl.sum(x * x, axis=0)
    tl.store(out_ptr + cols, (x * s).to(out_ptr.dtype.element_ty), mask=cols < n_cols)


def run(hidden_states, weight, output):
    _hoard[(1,)](hidden_states, output, hidden_states.shape[1], BLOCK=16384, num_warps=1)
"""

# 4 stages of (256 + 256) x 128 bf16 tiles: 256 KB of shared memory, past 227 KB
BIG_TILES = """
import triton
import triton.language as tl


@triton.jit
def _big_tiles(a_ptr, c_ptr, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rm = tl.arange(0, BLOCK_M)
    rn = tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = tl.load(a_ptr + rn[:, None] * K + (k + rk)[None, :])
        acc = tl.dot(a, tl.trans(b), acc)
    tl.store(c_ptr + rm[:, None] * BLOCK_N + rn[None, :], acc.to(c_ptr.dtype.element_ty))


def run(hidden_states, weight, output):
    _big_tiles[(1,)](hidden_states, output, hidden_states.shape[1], BLOCK_M=256, BLOCK_N=256, BLOCK_K=128,
                     num_warps=8, num_stages=4)
"""

AUTOTUNED = """
import triton
import triton.language as tl


@triton.autotune(configs=[triton.Config({"BLOCK": 1024}, num_warps=4), triton.Config({"BLOCK": 2048}, num_warps=8)],
                 key=["n"])
@triton.jit
def _twice(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(out_ptr + offs, x * 2, mask=offs < n)


def run(hidden_states, weight, output):
    n = hidden_states.numel()
    _twice[lambda meta: (triton.cdiv(n, meta["BLOCK"]),)](hidden_states, output, n)
"""


def _solution(source: str, name: str = "candidate") -> Solution:
    return Solution(name=name, definition=DEFINITION.name, spec=BuildSpec(language="triton", entry_point="k.py::run"),
                    sources=[SourceFile(path="k.py", content=source)])  # fmt: skip


def _compile(source: str, target: str = "sm_90a", **kwargs):
    return cross_compile(_solution(source), DEFINITION, WORKLOADS, target, isolate=False, **kwargs)


@pytest.mark.parametrize("target", ["sm_90a", "sm_100a"])
def test_an_honest_kernel_compiles_once_per_specialization(target):
    t1, t16 = _compile(SCALE.replace("NUM_WARPS", "4"), target)
    # n_rows == 1 is a constexpr to Triton's launcher, 16 an int divisible by 16: two compiles
    assert (t1.workloads, t16.workloads) == (["rmsnorm_h4096-t1"], ["rmsnorm_h4096-t16"])
    assert "n_rows=1" in t1.specialization and "n_rows:i32/16" in t16.specialization
    assert "x_ptr:*bf16/16" in t16.specialization and "BLOCK=4096" in t16.specialization
    for r in (t1, t16):
        assert (r.kernel, r.target, r.language, r.num_warps, r.threads_per_block) == ("_scale", target, "triton", 4, 128)
        assert 0 < r.registers_per_thread <= 255 and r.spill_bytes == 0 and r.max_threads_per_block == 128
        assert r.occupancy.blocks_per_sm >= 1 and 0 < r.occupancy.fraction <= 1
        assert not exceeds_spill_threshold(r)


def test_triton_interpreter_in_the_environment_does_not_leak_into_the_compile(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # what the CPU harness sets for its workers
    (report, _) = _compile(SCALE.replace("NUM_WARPS", "8"))
    assert report.num_warps == 8 and report.registers_per_thread > 0


def test_a_ptxas_error_carries_ptxas_own_message():
    with pytest.raises(CrossCompileError) as info:
        _compile(BOGUS_ASM)
    exc = info.value
    assert (exc.kind, exc.kernel, exc.workload, exc.target) == ("compile", "_bogus", "rmsnorm_h4096-t1", "sm_90a")
    assert exc.message.startswith("ptxas: line ") and "Not a name of any known instruction: 'bogus'" in exc.message
    assert str(exc).startswith("kernel _bogus, workload rmsnorm_h4096-t1, target sm_90a: ptxas: line ")
    assert "\n" not in str(exc)


def test_a_front_end_error_carries_tritons_message():
    with pytest.raises(CrossCompileError) as info:
        _compile(SCALE.replace("NUM_WARPS", "4").replace("x * w, mask=m)", "x * undefined_thing, mask=m)"))
    assert info.value.kind == "compile" and info.value.kernel == "_scale"
    assert "undefined_thing is not defined" in info.value.message.splitlines()[0]


def test_huge_register_pressure_shows_spills_and_is_penalized():
    (report,) = _compile(HOARD)
    assert report.spill_store_bytes > 0 and report.spill_load_bytes > 0 and report.stack_frame_bytes > 0
    assert exceeds_spill_threshold(report) and report.workloads == ["rmsnorm_h4096-t1", "rmsnorm_h4096-t16"]
    assert spill_note([report]).startswith("register spills above 64 B on sm_90a: _hoard (")


def test_num_warps_64_is_refused_above_the_block_limit():
    with pytest.raises(CrossCompileError) as info:
        _compile(SCALE.replace("NUM_WARPS", "64"))
    assert (info.value.kind, info.value.kernel, info.value.workload) == ("limit", "_scale", "rmsnorm_h4096-t1")
    assert "num_warps=64 x 32 = 2048 threads per block exceeds the 1024 that sm_90a allows" in str(info.value)


def test_shared_memory_above_the_per_block_maximum_is_refused():
    with pytest.raises(CrossCompileError) as info:
        _compile(BIG_TILES)
    assert info.value.kind == "limit" and info.value.kernel == "_big_tiles"
    assert "out of resource: shared memory, Required: 262144, Hardware limit: 232448" in info.value.message


def test_a_launch_that_cannot_be_specialized_names_the_kernel():
    source = SCALE.replace("NUM_WARPS", "4").replace("(hidden_states, weight, output, n_rows", "(hidden_states, "
                                                     "object(), output, n_rows")  # fmt: skip
    with pytest.raises(CrossCompileError) as info:
        _compile(source)
    assert (info.value.kind, info.value.kernel, info.value.workload) == ("specialize", "_scale", "rmsnorm_h4096-t1")
    assert "failed to specialize argument of type: object" in info.value.message


def test_a_run_that_reads_values_is_specialized_on_cpu_inputs():
    # .item() cannot run on meta tensors: the launch is captured again on real CPU inputs
    source = SCALE.replace("NUM_WARPS", "4").replace("    n_rows, n_cols = hidden_states.shape\n",
                                                     "    n_rows, n_cols = hidden_states.shape\n"
                                                     "    assert float(weight.float().abs().sum().item()) >= 0\n")  # fmt: skip
    assert [r.workloads for r in _compile(source)] == [["rmsnorm_h4096-t1"], ["rmsnorm_h4096-t16"]]


def test_a_triton_solution_without_a_triton_launch_is_an_error():
    source = "def run(hidden_states, weight, output):\n    output.copy_(hidden_states * weight)\n"
    with pytest.raises(CrossCompileError) as info:
        _compile(source)
    assert info.value.kind == "no_kernel" and "launched no Triton kernel on 2 workload(s)" in str(info.value)


def test_every_autotuner_config_is_compiled():
    reports = _compile(AUTOTUNED)
    assert sorted((r.kernel, r.num_warps) for r in reports) == [("_twice", 4), ("_twice", 8)]


def test_the_target_answers_tritons_device_properties_query():
    query = ("    props = triton.runtime.driver.active.utils.get_device_properties(0)\n"
             "    assert (props['multiprocessor_count'], props['max_shared_mem'], props['warpSize']) == EXPECTED\n")
    source = SCALE.replace("NUM_WARPS", "4").replace("    n_rows, n_cols = hidden_states.shape\n",
                                                     "    n_rows, n_cols = hidden_states.shape\n" + query)
    _compile(source.replace("EXPECTED", "(132, 232448, 32)"), "sm_90a")
    _compile(source.replace("EXPECTED", "(108, 166912, 32)"), "sm_80")
    with pytest.raises(CrossCompileError, match="AssertionError"):
        _compile(source.replace("EXPECTED", "(132, 232448, 32)"), "sm_100a")  # a B200 has 148 SMs


def test_an_unknown_target_is_refused_before_anything_runs():
    from solforge.spec import SpecError

    with pytest.raises(SpecError, match=r"^--target: unknown target 'sm_75'"):
        _compile(SCALE.replace("NUM_WARPS", "4"), "sm_75")


def test_the_child_process_gives_the_same_reports_and_its_errors():
    source = SCALE.replace("NUM_WARPS", "2")
    isolated = cross_compile(_solution(source), DEFINITION, WORKLOADS, "sm_100a", timeout_s=300)
    assert isolated == cross_compile(_solution(source), DEFINITION, WORKLOADS, "sm_100a", isolate=False)
    with pytest.raises(CrossCompileError) as info:
        cross_compile(_solution(SCALE.replace("NUM_WARPS", "64")), DEFINITION, WORKLOADS, "sm_100a", timeout_s=300)
    assert info.value.kind == "limit" and info.value.kernel == "_scale" and info.value.target == "sm_100a"


def test_a_hanging_candidate_costs_its_compile_not_the_caller():
    source = "def run(hidden_states, weight, output):\n    while True:\n        pass\n"
    with pytest.raises(CrossCompileError) as info:
        cross_compile(_solution(source), DEFINITION, WORKLOADS, "sm_90a", timeout_s=10)
    assert info.value.kind == "timeout" and "within 10 s" in str(info.value)
