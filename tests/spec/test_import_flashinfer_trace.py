"""`solforge.spec.importers.flashinfer_trace`: FlashInfer-Trace and SOL-ExecBench datasets,
normalized, round-tripped, and runnable by the harness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from solforge.spec import Definition, SpecError, load_dataset
from solforge.spec.importers import REPORT_FILE
from solforge.spec.importers.flashinfer_trace import import_flashinfer_trace, read_flashinfer_trace, unknown_fields

FIXTURES = Path(__file__).parent / "fixtures"
BLOB = "blob/workloads/gemm/gemm_n16_k8/m4.safetensors"


@pytest.fixture
def flashinfer(tmp_path: Path) -> Path:
    """The FlashInfer-Trace fixture with its safetensors blob (M = 4, K = 8)."""
    root = tmp_path / "flashinfer"
    shutil.copytree(FIXTURES / "flashinfer_trace", root)
    (root / BLOB).parent.mkdir(parents=True)
    save_file({"A": torch.arange(32, dtype=torch.float32).reshape(4, 8)}, str(root / BLOB))
    return root


def _notes(report) -> dict[tuple[str, str], object]:
    return {(Path(n.path.split(":")[0]).name, n.message): n.value for n in report.notes}


def test_flashinfer_dataset_imports_and_loads_back_the_same(flashinfer, tmp_path):
    out = tmp_path / "out"
    report = import_flashinfer_trace(flashinfer, out)
    assert report.exit_code == 0 and report.complete
    read = read_flashinfer_trace(flashinfer).dataset
    loaded = load_dataset(out)
    assert loaded.definitions == read.definitions
    assert loaded.workloads == read.workloads
    assert loaded.solutions == read.solutions
    assert (out / BLOB).read_bytes() == (flashinfer / BLOB).read_bytes()
    (defn,) = loaded.definitions.values()
    assert defn.tags == [] and defn.constraints == []  # null in the source
    stored = loaded.workloads["gemm_n16_k8"][1].inputs["A"]
    assert (stored.path, stored.tensor_key) == ("./blob/workloads/gemm/gemm_n16_k8/m4.safetensors", "A")
    (trace,) = loaded.traces
    assert trace.evaluation.environment.hardware == "NVIDIA H100 80GB HBM3"  # written as `device`
    assert trace.evaluation.performance.latency_ms == 0.004


def test_fields_solforge_lacks_are_kept_in_the_report_with_their_values(flashinfer, tmp_path):
    import_flashinfer_trace(flashinfer, tmp_path / "out")
    written = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    kept = {n["message"].split(":")[0]: n.get("value") for n in written["notes"]}
    assert kept["spec.validation_policy"] == "strict"
    assert kept["evaluation.log_file"] == "logs/gemm-m3.log"


def test_a_missing_blob_skips_only_its_workload(tmp_path):
    root = tmp_path / "flashinfer"
    shutil.copytree(FIXTURES / "flashinfer_trace", root)
    result = read_flashinfer_trace(root)
    (skipped,) = result.report.skipped
    assert skipped.path.endswith("gemm_n16_k8.jsonl:2")
    assert skipped.reason.startswith("workload.inputs.A.path: no such file")
    assert [w.uuid for w in result.dataset.workloads["gemm_n16_k8"]] == ["gemm-m3"]
    assert result.report.exit_code == 1


def test_a_bad_definition_is_skipped_with_everything_that_names_it(tmp_path):
    root = tmp_path / "flashinfer"
    shutil.copytree(FIXTURES / "flashinfer_trace", root)
    path = root / "definitions" / "gemm" / "gemm_n16_k8.json"
    data = json.loads(path.read_text())
    data["inputs"]["A"]["dtype"] = "complex64"
    path.write_text(json.dumps(data))
    result = read_flashinfer_trace(root)
    reasons = {s.path.replace(str(root), ""): s.reason for s in result.report.skipped}
    assert reasons["/definitions/gemm/gemm_n16_k8.json"].startswith("inputs.A.dtype: unknown dtype 'complex64'")
    assert reasons["/solutions/gemm/gemm_n16_k8_matmul.json"] == (
        f"definition 'gemm_n16_k8' was not imported (see {path})"
    )
    assert reasons["/workloads/gemm/gemm_n16_k8.jsonl:1"].startswith("definition 'gemm_n16_k8' was not imported")
    assert reasons["/traces/gemm/gemm_n16_k8.jsonl:1"].startswith("definition 'gemm_n16_k8' was not imported")
    assert not result.dataset.definitions


def test_sol_execbench_layout_is_normalized():
    result = read_flashinfer_trace(FIXTURES / "sol_execbench")
    ds = result.dataset
    assert ds.definitions["rmsnorm_h64"].op_type == "norm"  # written as `type`
    scale = ds.definitions["fp8_row_scale_h32"]
    assert scale.op_type == "quantization"  # null: from the name's 'fp8', never the folder ('scale')
    assert scale.inputs["x"].dtype.value == "float8_e4m3fn"  # written float8_e4m3
    assert scale.inputs["scale"].shape == ["num_rows", "const_1"] and scale.axes["const_1"].value == 1
    assert scale.reference.startswith("import torch")  # empty: read from reference.py
    (solution,) = ds.solutions["rmsnorm_h64"]
    assert solution.spec.language.value == "python"
    assert solution.spec.destination_passing_style is True  # absent: both tools' default
    reasons = {Path(s.path.split(":")[0]).name: s.reason for s in result.report.skipped}
    assert reasons["solution_cute_dsl.json"].startswith("spec.language 'cute_dsl': solforge builds")
    assert "--materialize-custom" in reasons["workload.jsonl"]
    notes = _notes(result.report)
    assert notes[("solution_python.json", "spec.pip_packages: no solforge field; kept here")] == ["einops"]
    assert notes[("definition.json", "custom_inputs_entrypoint: no solforge field; kept here")] == "get_inputs"
    ignored = {str(Path(i.path).relative_to(FIXTURES / "sol_execbench")): i.reason for i in result.report.ignored}
    assert ignored == {
        "scale/fp8_row_scale/NOTES.md": "not a file of the FlashInfer-Trace or SOL-ExecBench layout",
        "norm/rmsnorm_h64/reference.py": "a copy of the reference that definition.json carries",
    }  # scale/fp8_row_scale/reference.py was read: its definition's reference is empty
    assert not any("binding" in message for _, message in notes)  # null: nothing to keep


def test_custom_inputs_are_materialized_as_safetensors_when_asked(tmp_path):
    out = tmp_path / "out"
    report = import_flashinfer_trace(FIXTURES / "sol_execbench", out, materialize_custom=True)
    assert report.exit_code == 1  # the cute_dsl solution is still skipped
    loaded = load_dataset(out)
    (workload,) = loaded.workloads["index_add_h32"]
    rel = "blob/workloads/moe/index_add_h32/moe-t6-s9.safetensors"
    assert {n: (s.type, s.path, s.tensor_key) for n, s in workload.inputs.items()} == {
        n: ("safetensors", rel, n) for n in ("hidden", "expert_out", "token_index")
    }
    tensors = load_file(str(out / rel))
    assert tensors["hidden"].shape == (6, 32) and tensors["expert_out"].shape == (9, 32)
    index = tensors["token_index"]
    assert index.dtype == torch.int64 and 0 <= int(index.min()) <= int(index.max()) < 6


def test_every_imported_reference_runs_on_its_workloads(flashinfer, tmp_path):
    from solforge.bench import make_inputs
    from solforge.bench.build import build_reference

    for src, kwargs in ((flashinfer, {}), (FIXTURES / "sol_execbench", {"materialize_custom": True})):
        out = tmp_path / f"out_{src.name}"
        import_flashinfer_trace(src, out, **kwargs)
        ds = load_dataset(out)
        for name, defn in ds.definitions.items():
            run = build_reference(defn)
            for wl in ds.workloads[name]:
                axes = defn.resolve_axes(wl.axes)
                inputs = make_inputs(defn, wl, axes, seed=0, distribution="normal", device="cpu", dataset_root=out)
                result = run(**inputs)
                outs = result if isinstance(result, tuple) else (result,)
                for spec, value in zip(defn.outputs.values(), outs):
                    assert tuple(value.shape) == defn.shape_of(spec, axes), (name, wl.uuid)
                    assert value.dtype == spec.dtype.to_torch(), (name, wl.uuid)


def test_unknown_fields_walks_nested_models_and_leaves_nulls_out():
    data = {
        "name": "x", "op_type": "t", "reference": "", "custom_inputs_entrypoint": None, "extra_top": 1,
        "axes": {"n": {"type": "const", "value": 2, "unit": "tokens"}, "m": {"type": "var", "hint": None}},
        "inputs": {"a": {"shape": ["n"], "dtype": "float32", "layout": "row"}},
        "outputs": {},
        "solforge": {"tolerances": {"float32": {"atol": 0, "rtol": 0, "note": "exact"}}},
    }
    assert unknown_fields(Definition, data) == {
        "extra_top": 1, "axes.n.unit": "tokens", "inputs.a.layout": "row", "solforge.tolerances.float32.note": "exact"
    }


def test_a_directory_of_neither_layout_is_a_user_error(tmp_path):
    with pytest.raises(SpecError, match="not a FlashInfer-Trace or SOL-ExecBench dataset"):
        read_flashinfer_trace(tmp_path)
    with pytest.raises(SpecError, match="not a directory"):
        read_flashinfer_trace(tmp_path / "missing")


def test_solforge_bench_runs_an_imported_destination_passing_solution(tmp_path):
    import typer
    from typer.testing import CliRunner

    from solforge.cli import bench

    out = tmp_path / "out"
    import_flashinfer_trace(FIXTURES / "sol_execbench", out)
    app = typer.Typer()
    bench.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `bench` a named subcommand
    (solution,) = (out / "solutions").rglob("rmsnorm_h64_python.json")
    result = CliRunner().invoke(app, ["bench", "rmsnorm_h64", "--dataset", str(out), "--device", "cpu",
                                      "--workloads", "all", "--solution", str(solution)])
    assert result.exit_code == 0, result.output
    assert "rmsnorm_h64_python" in result.output
