"""`solforge bench` and `solforge problems` on an imported dataset, through `solforge.cli.main`
as a user runs them: relative dataset paths, the dataset's own solutions, verdicts that
land in --out as they come, and bad numbers and paths refused before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from solforge.cli import main
from solforge.spec import Trace, load_dataset
from solforge.spec.importers.kernelbench import import_kernelbench

FIXTURES = Path(__file__).parent / "fixtures" / "kernelbench"
BATCHNORM = "kernelbench_level1_3_Conv2d_BatchNorm"
LINEAR = "kernelbench_level1_2_Linear_ReLU"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The BatchNorm problem (buffers in a safetensors blob) and the Linear problem with two
    ModelNew solutions, imported once."""
    root = tmp_path_factory.mktemp("imported") / "ds"
    import_kernelbench([FIXTURES / "level1" / "3_Conv2d_BatchNorm.py", FIXTURES / "level1" / "2_Linear_ReLU.py",
                        FIXTURES / "solutions" / "2_Linear_ReLU_addmm.py",
                        FIXTURES / "solutions" / "level_1_problem_2_sample_0_kernel.py"], root)
    return root


def label(dataset: Path, name: str, kind: str) -> str:
    """The label of the definition's `kind` workload (its uuid ends in `-kind`)."""
    return next(w.label for w in load_dataset(dataset).workloads[name] if w.uuid.endswith(f"-{kind}"))


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_relative_dataset_loads_the_batchnorm_blobs_and_each_verdict_lands_in_out(dataset, capsys, monkeypatch):
    monkeypatch.chdir(dataset.parent)  # the worker changes directory; the CLI resolves the path first
    code, out, err = run(capsys, "bench", BATCHNORM, "--dataset", "ds", "--device", "cpu",
                         "--workloads", "smoke", "--out", "traces.jsonl")
    assert code == 0, out + err
    assert f"baseline:eager | {label(dataset, BATCHNORM, 'smoke')} | PASSED" in out
    (line,) = (dataset.parent / "traces.jsonl").read_text().splitlines()
    trace = Trace.model_validate_json(line)
    assert trace.evaluation.status.value == "PASSED" and trace.workload.inputs["bn_running_var"].type == "safetensors"


def test_the_datasets_own_solutions_run_when_none_is_given(dataset, capsys):
    code, out, err = run(capsys, "bench", LINEAR, "--dataset", str(dataset), "--device", "cpu", "--workloads", "smoke")
    assert code == 0, out + err
    assert "the dataset's 2 solution(s): 2_Linear_ReLU_addmm, level_1_problem_2_sample_0_kernel" in out
    for name in ("2_Linear_ReLU_addmm", "level_1_problem_2_sample_0_kernel"):
        assert f"{name} | {label(dataset, LINEAR, 'smoke')} | PASSED" in out

    (chosen,) = (dataset / "solutions").rglob("2_Linear_ReLU_addmm.json")
    code, out, err = run(capsys, "bench", LINEAR, "--dataset", str(dataset), "--device", "cpu", "--workloads", "smoke",
                         "-s", str(chosen))
    assert code == 0, out + err
    assert "2_Linear_ReLU_addmm | smoke" in out and "level_1_problem_2_sample_0_kernel" not in out


def test_a_stopped_run_keeps_the_verdicts_that_landed(dataset, capsys, tmp_path, monkeypatch):
    import solforge.bench

    real = solforge.bench.run_bench

    def stopped_after_the_first_verdict(*args, on_trace, **kwargs):
        def forward_then_stop(name, trace):
            on_trace(name, trace)
            raise KeyboardInterrupt  # the user's Ctrl-C, right after the first verdict

        return real(*args, on_trace=forward_then_stop, **kwargs)

    monkeypatch.setattr(solforge.bench, "run_bench", stopped_after_the_first_verdict)
    out_file = tmp_path / "partial.jsonl"
    code, out, err = run(capsys, "bench", LINEAR, "--dataset", str(dataset), "--device", "cpu",
                         "--workloads", "smoke", "--out", str(out_file))
    assert code == 130  # interrupted
    (line,) = out_file.read_text().splitlines()  # written and flushed before the stop
    assert Trace.model_validate_json(line).solution == "eager"


@pytest.mark.parametrize("args, message", [
    (["--timeout", "-5"], "solforge: --timeout: expected a positive number of seconds, got -5\n"),
    (["--timeout", "nan"], "solforge: --timeout: expected a positive number of seconds, got nan\n"),
    (["--workloads", "tiny"], "solforge: --workloads: unknown 'tiny' (expected one of: "),
    (["--workloads", "smoke,tiny"], "solforge: --workloads: unknown 'tiny' (expected one of: "),
    (["--baselines", "eager,fast"], "solforge: --baselines: unknown baseline 'fast' (expected eager, compile)\n"),
    (["--dataset", "no_such_dir"], "solforge: --dataset no_such_dir: not a dataset directory\n"),
])
def test_bad_numbers_and_names_are_one_line_and_exit_2(dataset, capsys, tmp_path, args, message):
    kept = tmp_path / "kept.jsonl"
    kept.write_text("an earlier run's traces\n")
    argv = ["bench", BATCHNORM, "--device", "cpu", "--out", str(kept)]
    if "--dataset" not in args:
        argv += ["--dataset", str(dataset)]
    code, out, err = run(capsys, *argv, *args)
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert "baseline:eager" not in out  # nothing ran
    assert kept.read_text() == "an earlier run's traces\n"  # nothing written


def test_an_out_that_cannot_be_written_fails_before_any_work(dataset, capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    targets = [(a_file / "traces.jsonl", "Not a directory"), (tmp_path, "is a directory")]
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if not os.access(read_only, os.W_OK):  # root may write anywhere
        targets.append((read_only / "traces.jsonl", "Permission denied"))
    try:
        for target, why in targets:
            code, out, err = run(capsys, "bench", BATCHNORM, "--dataset", str(dataset), "--device", "cpu",
                                 "--out", str(target))
            assert code == 2 and err.startswith(f"solforge: --out {target}") and why in err, err
            assert err.count("\n") == 1 and "baseline:eager" not in out
    finally:
        read_only.chmod(0o755)
    assert not (read_only / "traces.jsonl").exists()


def test_problems_list_and_show_take_a_dataset(dataset, capsys, monkeypatch):
    monkeypatch.chdir(dataset.parent)
    code, out, err = run(capsys, "problems", "list", "--dataset", "ds")
    assert code == 0, err
    assert "problems in ds" in out and "kernelbench_level1" in out
    code, out, err = run(capsys, "problems", "show", BATCHNORM, "--dataset", "ds", "--device", "cpu")
    assert code == 0, err
    assert "inputs: reference_function({'function': 'kernelbench_get_inputs'})" in out
    assert "height_minus2" in out and "smoke" in out and "search" in out
    code, out, err = run(capsys, "problems", "show", "no_such_problem", "--dataset", "ds")
    assert code == 2 and "no definition named 'no_such_problem'" in err


def test_the_traces_file_holds_one_json_trace_per_line(dataset, capsys, tmp_path):
    out_file = tmp_path / "nested" / "dir" / "traces.jsonl"  # directories are made
    code, out, err = run(capsys, "bench", LINEAR, "--dataset", str(dataset), "--device", "cpu",
                         "--workloads", "smoke", "--out", str(out_file))
    assert code == 0, out + err
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [t["solution"] for t in lines] == ["eager", "2_Linear_ReLU_addmm", "level_1_problem_2_sample_0_kernel"]
    assert f"wrote 3 traces to {out_file}" in out


def test_several_workload_sets_run_in_one_bench(dataset, capsys):
    code, out, err = run(capsys, "bench", BATCHNORM, "--dataset", str(dataset), "--device", "cpu",
                         "--workloads", "smoke,search", "--baselines", "eager")
    assert code == 0, out + err
    assert "2 smoke,search workload(s)" in out
    for kind in ("smoke", "file"):  # small: the file's workload is the search one
        assert f"baseline:eager | {label(dataset, BATCHNORM, kind)} | PASSED" in out
