"""`solforge compile`: a table per kernel on success; one line and rc 2 for bad input (unknown
target, a launch beyond the target's limits, a missing definition), rc 1 for a kernel that
does not compile."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("triton")

from solforge.cli import main  # noqa: E402
from solforge.spec.trace import CompileReport  # noqa: E402

WIDE = """
import triton
import triton.language as tl


@triton.jit
def _scale(x_ptr, w_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    row = tl.program_id(0)
    x = tl.load(x_ptr + row * n_cols + cols, mask=cols < n_cols)
    tl.store(out_ptr + row * n_cols + cols, x, mask=cols < n_cols)


def run(hidden_states, weight, output):
    n_rows, n_cols = hidden_states.shape
    _scale[(n_rows,)](hidden_states, weight, output, n_cols, BLOCK=4096, num_warps=NUM_WARPS)
"""


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_seed_compiles_to_a_table_per_kernel_and_writes_its_reports(tmp_path, capsys):
    out = tmp_path / "reports.jsonl"
    rc = main(["compile", "triton/rmsnorm_row", "--definition", "rmsnorm_h4096", "--target", "sm_90a",
               "--target", "sm_100a", "-w", "rmsnorm_h4096-t16", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert printed.count("_rmsnorm_rows [triton, sm_90a]") == 1 and "_rmsnorm_rows [triton, sm_100a]" in printed
    assert "not a GPU measurement" in printed
    reports = [CompileReport.model_validate(json.loads(line)) for line in out.read_text().splitlines()]
    assert [(r.target, r.workloads) for r in reports] == [("sm_90a", ["rmsnorm_h4096-t16"]),
                                                          ("sm_100a", ["rmsnorm_h4096-t16"])]  # fmt: skip


def test_an_unknown_target_is_one_line_and_rc_2(capsys):
    assert main(["compile", "triton/rmsnorm_row", "--target", "sm_75"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        "solforge: --target: unknown target 'sm_75' (expected one of: sm_80, sm_90a, sm_100a)")  # fmt: skip


def test_a_block_above_the_limit_is_one_line_naming_kernel_and_workload(tmp_path, capsys):
    path = tmp_path / "wide.py"
    path.write_text(WIDE.replace("NUM_WARPS", "64"))
    assert main(["compile", str(path), "--definition", "rmsnorm_h4096", "-w", "decode b=16"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == ("solforge compile: wide: kernel _scale, workload decode b=16 [rmsnorm_h4096-t16], target sm_90a: "
                    "num_warps=64 x 32 = 2048 threads per block exceeds the 1024 that sm_90a allows")  # fmt: skip


def test_a_compile_error_is_one_line_with_the_compilers_message_and_rc_1(tmp_path, capsys):
    path = tmp_path / "broken.py"
    path.write_text(WIDE.replace("NUM_WARPS", "4").replace("x, mask=cols", "x + not_defined, mask=cols"))
    assert main(["compile", str(path), "--definition", "rmsnorm_h4096", "-w", "rmsnorm_h4096-t16"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("solforge compile: broken: kernel _scale, workload decode b=16 [rmsnorm_h4096-t16], "
                           "target sm_90a: Triton CompilationError: at ")  # fmt: skip
    assert "not_defined is not defined" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nope_seed"], "solforge: nope_seed: no such file, and no seed of that name (Triton seeds: "),
        (["triton/rmsnorm_row", "-w", "prefill t=3"], "solforge: --workload: 'prefill t=3' matches no workload of "),
        (["triton/rmsnorm_row", "--definition", "softmax_v128256"],
         "solforge: --definition: seed 'triton/rmsnorm_row' does not implement 'softmax_v128256'"),
    ],
)
def test_bad_input_is_one_line_and_rc_2(args, expected, capsys):
    assert main(["compile", *args]) == 2
    assert _one_line(capsys.readouterr().err).startswith(expected)


def test_a_python_file_needs_its_definition(tmp_path, capsys):
    path = tmp_path / "k.py"
    path.write_text(WIDE.replace("NUM_WARPS", "4"))
    assert main(["compile", str(path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"solforge: {path}: --definition: a .py solution needs the definition it implements")  # fmt: skip
