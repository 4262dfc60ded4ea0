"""`solforge import kernelbench|flashinfer-trace`, through typer's CliRunner on an app that
registers only `solforge.cli.import_`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from solforge.cli import import_
from solforge.spec import load_dataset
from solforge.spec.importers import REPORT_FILE

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    import_.register(app)
    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["import", *args])


def test_kernelbench_prints_each_skipped_file_with_its_reason_and_exits_1(app, tmp_path):
    out = tmp_path / "out"
    result = invoke(app, "kernelbench", str(FIXTURES / "kernelbench" / "level1"), "--out", str(out))
    assert result.exit_code == 1, result.output
    broken = FIXTURES / "kernelbench" / "level1" / "5_BrokenInputs.py"
    assert f"skipped {broken}: get_inputs() raised ValueError: the inputs of this problem are broken" in result.output
    assert "3 item(s) skipped" in result.output
    assert "imported 5 definition(s), 10 workload(s)" in result.output  # each: the file's, and smoke
    assert f"report: {out / REPORT_FILE}" in result.output
    assert len(load_dataset(out).definitions) == 5  # what could be imported is written


def test_kernelbench_exits_0_when_everything_was_imported(app, tmp_path):
    level1 = FIXTURES / "kernelbench" / "level1"
    result = invoke(app, "kernelbench", str(level1 / "1_ElementwiseAdd.py"), str(level1 / "2_Linear_ReLU.py"),
                    str(FIXTURES / "kernelbench" / "solutions" / "2_Linear_ReLU_addmm.py"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "imported 2 definition(s), 4 workload(s), 1 solution(s)" in result.output
    assert json.loads((tmp_path / "out" / REPORT_FILE).read_text())["complete"] is True


def test_flashinfer_trace_imports_a_sol_execbench_directory(app, tmp_path):
    out = tmp_path / "out"
    result = invoke(app, "flashinfer-trace", str(FIXTURES / "sol_execbench"), "--out", str(out), "--materialize-custom")
    assert result.exit_code == 1, result.output  # the cute_dsl solution
    assert "spec.language 'cute_dsl'" in result.output
    assert "note: " in result.output and "spec.pip_packages: no solforge field; kept here = ['einops']" in result.output
    assert set(load_dataset(out).definitions) == {"index_add_h32", "rmsnorm_h64", "fp8_row_scale_h32"}


@pytest.mark.parametrize("command", ["kernelbench", "flashinfer-trace"])
def test_a_missing_path_is_bad_usage(app, tmp_path, command):
    result = invoke(app, command, str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"solforge: {tmp_path / 'nowhere'}: " in result.output
    assert not (tmp_path / "out").exists()


def test_a_non_empty_out_is_bad_usage_and_left_alone(app, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = invoke(app, "kernelbench", str(FIXTURES / "kernelbench" / "level1" / "1_ElementwiseAdd.py"), "--out", str(out))
    assert result.exit_code == 2
    assert f"solforge: --out {out}: is not empty" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_out_is_required(app, tmp_path):
    result = invoke(app, "kernelbench", str(FIXTURES / "kernelbench" / "level1"))
    assert result.exit_code == 2


def test_flashinfer_trace_prints_ignored_and_skipped_files_with_their_reasons(app, tmp_path):
    examples = FIXTURES / "sol_execbench_examples"
    result = invoke(app, "flashinfer-trace", str(examples), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output  # the reward-hack sample names no definition here
    assert f"ignored {examples / 'README.md'}: not a file of the FlashInfer-Trace or SOL-ExecBench layout" in result.output
    assert (f"skipped {examples / 'evil_timer_patch' / 'solution.json'}: definition: unknown definition "
            "'evil_vector_add'") in result.output
    assert f"ignored {examples / 'triton' / 'rmsnorm_h64' / 'definition.json'}: the same definition" in result.output
