"""The cross-compile rules that need no compiler: targets, occupancy, ptxas' log, the spill policy.

Occupancy cases are worked by hand from the CUDA occupancy calculator's rules
(cuda_occupancy.h): registers per warp rounded to 256, four register sub-partitions,
1 KB reserved and 128-byte granules of shared memory per block.
"""

from __future__ import annotations

import pickle

import pytest

from solforge.bench.crosscompile import (
    SPILL_THRESHOLD_BYTES,
    CrossCompileError,
    exceeds_spill_threshold,
    reports_for_workload,
    spill_note,
)
from solforge.bench.crosscompile.occupancy import (
    best_block_size,
    blocks_per_sm_limits,
    max_threads_per_block,
    theoretical_occupancy,
)
from solforge.bench.crosscompile.ptxas import parse_ptxas_log, ptxas_errors
from solforge.hardware.datasheet import spec_by_key
from solforge.hardware.targets import SM_80, SM_90A, SM_100A, TARGETS, target_by_name
from solforge.spec import SpecError
from solforge.spec.trace import CompileReport, Evaluation, EvaluationExtension, EvaluationStatus, Environment


def test_targets_carry_sourced_figures_and_the_datasheet_sm_counts():
    assert set(TARGETS) == {"sm_80", "sm_90a", "sm_100a"}
    assert SM_90A.sm_count == spec_by_key("h100-sxm").sm_count == 132
    assert SM_100A.sm_count == spec_by_key("b200").sm_count and SM_80.sm_count == 108
    # 227 KB: what an H100 reports as cudaDevAttrMaxSharedMemoryPerBlockOptin (Triton's max_shared_mem)
    assert SM_90A.max_shared_memory_per_block_bytes == 232448 and SM_100A.max_shared_memory_per_block_bytes == 232448
    assert SM_80.max_shared_memory_per_block_bytes == 163 * 1024 and SM_80.shared_memory_per_sm_bytes == 164 * 1024
    assert SM_90A.gencode == "arch=compute_90a,code=sm_90a" and SM_80.gencode == "arch=compute_80,code=sm_80"
    assert SM_100A.sass == "sm_100a" and SM_100A.capability == 100
    for target in TARGETS.values():
        numeric = [k for k, v in vars(target).items() if isinstance(v, int) and not isinstance(v, bool)]
        missing = [k for k in numeric if k not in target.sources and k != "capability"]
        assert not missing, f"{target.name}: figures without a source: {missing}"


def test_an_unknown_target_is_one_line_naming_the_known_ones():
    assert target_by_name(" SM_90A ") is SM_90A
    with pytest.raises(SpecError) as info:
        target_by_name("sm_75")
    assert str(info.value) == "--target: unknown target 'sm_75' (expected one of: sm_80, sm_90a, sm_100a)"


@pytest.mark.parametrize(
    ("registers", "smem", "threads", "blocks", "warps", "limited_by"),
    [
        (32, 0, 128, 16, 64, ["registers", "threads"]),  # 1024 regs/warp: 16 warps per sub-partition
        (64, 0, 256, 4, 32, ["registers"]),  # 2048 regs/warp: 8 warps per sub-partition
        (40, 0, 128, 12, 48, ["registers"]),  # 1280 regs/warp: 12 warps per sub-partition
        (16, 100 * 1024, 128, 2, 8, ["shared_memory"]),  # 103424 B per block: 2 fit in 228 KB
        (16, 0, 32, 32, 32, ["blocks"]),  # one-warp blocks stop at 32 resident blocks
        (16, 0, 1024, 2, 64, ["threads"]),
    ],
)
def test_theoretical_occupancy_on_sm_90a(registers, smem, threads, blocks, warps, limited_by):
    occ = theoretical_occupancy(SM_90A, registers, smem, threads)
    assert (occ.blocks_per_sm, occ.active_warps_per_sm, occ.limited_by) == (blocks, warps, limited_by)
    assert occ.fraction == warps / 64 and occ.max_warps_per_sm == 64 and occ.block_size_basis == "launch"


def test_blocks_that_cannot_launch_have_zero_occupancy_and_name_the_resource():
    too_many_registers = theoretical_occupancy(SM_90A, 255, 0, 1024)  # 8192 regs/warp x 32 warps > 64 K
    assert too_many_registers.blocks_per_sm == 0 and too_many_registers.limited_by == ["registers"]
    too_much_smem = theoretical_occupancy(SM_90A, 32, SM_90A.max_shared_memory_per_block_bytes + 1, 128)
    assert too_much_smem.blocks_per_sm == 0 and too_much_smem.limited_by == ["shared_memory"]
    at_the_limit = theoretical_occupancy(SM_90A, 32, SM_90A.max_shared_memory_per_block_bytes, 128)
    assert at_the_limit.blocks_per_sm == 1
    assert blocks_per_sm_limits(SM_90A, 32, 0, 2048)["threads"] == 0


def test_ampere_has_less_shared_memory_per_sm():
    assert theoretical_occupancy(SM_80, 32, 48 * 1024, 128).blocks_per_sm == 3  # 167936 // 50176
    assert theoretical_occupancy(SM_90A, 32, 48 * 1024, 128).blocks_per_sm == 4  # 233472 // 50176


def test_largest_block_the_registers_allow():
    assert max_threads_per_block(SM_90A, 255) == 256  # the classic 255-register cap
    assert max_threads_per_block(SM_90A, 64) == 1024
    assert max_threads_per_block(SM_90A, 65) == 896  # 2304 regs/warp: 29 warps round up to 32, past 64 K
    assert max_threads_per_block(SM_90A, 32, launch_bound=256) == 256
    assert best_block_size(SM_90A, 32, 0) == 1024  # ties go to the largest block
    assert best_block_size(SM_90A, 40, 0) == 768  # 48 warps per SM fit as 2 blocks of 24, not 1 of 32


PTXAS_LOG = """\
ptxas info    : 28 bytes gmem
ptxas warning : Unresolved extern function 'vprintf' is assumed to have no side effects
ptxas info    : Function properties for _Z6helperf
    8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function '_Z4tilePfi' for 'sm_90a'
ptxas info    : Function properties for _Z4tilePfi
    24 bytes stack frame, 20 bytes spill stores, 16 bytes spill loads
ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized
ptxas info    : Used 168 registers, used 1 barriers, 4096 bytes smem, 380 bytes cmem[0]
ptxas-blackwell info    : Compiling entry function '_rows' for 'sm_100a'
ptxas-blackwell info    : Function properties for _rows
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas-blackwell info    : Used 26 registers, used 1 barriers
ptxas-blackwell info    : Compile time = 25.106 ms
"""


def test_ptxas_log_gives_each_entry_function_its_own_figures():
    tile, rows = parse_ptxas_log(PTXAS_LOG)
    assert (tile.name, tile.sass, tile.registers, tile.barriers) == ("_Z4tilePfi", "sm_90a", 168, 1)
    assert (tile.static_shared_memory_bytes, tile.stack_frame_bytes) == (4096, 24)
    assert (tile.spill_store_bytes, tile.spill_load_bytes) == (20, 16)  # not the device function's frame
    assert tile.warnings == [
        "Unresolved extern function 'vprintf' is assumed to have no side effects",
        "(C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized",
    ]
    assert (rows.name, rows.registers, rows.spill_store_bytes, rows.static_shared_memory_bytes) == ("_rows", 26, 0, 0)
    assert rows.warnings == ["Unresolved extern function 'vprintf' is assumed to have no side effects"]
    assert parse_ptxas_log("nothing here") == []


def test_ptxas_errors_are_its_own_lines_once_each_with_the_ptx_line():
    log = (
        "ptxas-blackwell /tmp/k.ptx, line 135; error   : Unknown modifier '.op'\n"
        "ptxas-blackwell /tmp/k.ptx, line 135; error   : Not a name of any known instruction: 'bogus'\n"
        "ptxas-blackwell /tmp/k.ptx, line 140; error   : Unknown modifier '.op'\n"
        "ptxas error   : Entry function 'k' uses too much shared data (0x40000 bytes, 0xc000 max)\n"
        "ptxas fatal   : Ptx assembly aborted due to errors\n"
    )
    assert ptxas_errors(log) == [
        "line 135: Unknown modifier '.op'",
        "line 135: Not a name of any known instruction: 'bogus'",
        "Entry function 'k' uses too much shared data (0x40000 bytes, 0xc000 max)",
        "Ptx assembly aborted due to errors",
    ]


def _report(kernel="k", stores=0, loads=0, workloads=("w1",)) -> CompileReport:
    return CompileReport(
        kernel=kernel, target="sm_90a", language="triton", workloads=list(workloads), registers_per_thread=40,
        spill_store_bytes=stores, spill_load_bytes=loads, stack_frame_bytes=stores, static_shared_memory_bytes=0,
        dynamic_shared_memory_bytes=1024, barriers=1, num_warps=4, num_stages=3, threads_per_block=128,
        max_threads_per_block=128, occupancy=theoretical_occupancy(SM_90A, 40, 1024, 128),
    )  # fmt: skip


def test_spill_policy_threshold_and_note():
    at = _report(stores=SPILL_THRESHOLD_BYTES // 2, loads=SPILL_THRESHOLD_BYTES // 2)
    over = _report(kernel="hoard", stores=SPILL_THRESHOLD_BYTES // 2, loads=SPILL_THRESHOLD_BYTES // 2 + 4)
    assert not exceeds_spill_threshold(at) and exceeds_spill_threshold(over)
    assert spill_note([at]) is None
    note = spill_note([at, over])
    assert note.startswith(f"register spills above {SPILL_THRESHOLD_BYTES} B on sm_90a: hoard (32 B stored, 36 B")
    assert "k (" not in note


def test_reports_go_to_the_traces_of_their_workloads_and_round_trip():
    a, b = _report("a", workloads=["w1", "w2"]), _report("b", workloads=["w2"])
    assert reports_for_workload([a, b], "w1") == [a] and reports_for_workload([a, b], "w2") == [a, b]
    ev = Evaluation(status=EvaluationStatus.COMPILE_ERROR, environment=Environment(hardware="cpu"), timestamp="t",
                    solforge=EvaluationExtension(compile_reports=[a, b]))  # fmt: skip
    back = Evaluation.model_validate_json(ev.model_dump_json(exclude_unset=True))
    assert back.solforge.compile_reports == [a, b]
    assert "compile_reports" not in EvaluationExtension().model_dump(exclude_unset=True)


def test_cross_compile_error_is_one_line_and_survives_pickling():
    exc = CrossCompileError("compile", "ptxas: line 3: Unknown modifier '.op'\nline 3: other\nPtx assembly aborted",
                            "_bogus", "decode b=1", "sm_90a")  # fmt: skip
    assert str(exc) == ("kernel _bogus, workload decode b=1, target sm_90a: ptxas: line 3: Unknown modifier '.op' "
                        "(+2 more lines)")  # fmt: skip
    back = pickle.loads(pickle.dumps(exc))
    assert (back.kind, back.message, back.kernel, back.workload, back.target) == (
        exc.kind, exc.message, exc.kernel, exc.workload, exc.target)  # fmt: skip
    long = CrossCompileError("limit", "x" * 1000)
    assert "\n" not in str(long) and len(str(long)) <= 400
