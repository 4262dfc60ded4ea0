"""SOL-ExecBench datasets as they are: the same problem in two language folders, op_types
that no folder or vendor decides, entry points called by position, capitalised language
names, reward-hack samples with no definition, and the older traces/workloads layout.
The fixtures (fixtures/sol_execbench_examples, fixtures/flashinfer_trace_old) are
written for these tests in those layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from solforge.spec import load_dataset
from solforge.spec.importers.flashinfer_trace import import_flashinfer_trace, read_flashinfer_trace
from solforge.spec.importers.sol_execbench import POSITIONAL_ENTRY_FILE, name_stem, op_type_of

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = FIXTURES / "sol_execbench_examples"
OLD_LAYOUT = FIXTURES / "flashinfer_trace_old"


@pytest.fixture(scope="module")
def examples():
    return read_flashinfer_trace(EXAMPLES)


def _rel(path: str, root: Path = EXAMPLES) -> str:
    return str(Path(path.split(":")[0]).relative_to(root))


def test_a_definition_in_two_language_folders_is_imported_once_with_each_workload_once(examples):
    ds = examples.dataset
    assert [i.path for i in examples.report.imported if i.name == "rmsnorm_h64"] == [
        str(EXAMPLES / "cuda_cpp" / "rmsnorm_h64" / "definition.json")]
    # 0001 and 0002 are in both folders' workload.jsonl, 0003 and 0004 in one each
    assert [w.uuid for w in ds.workloads["rmsnorm_h64"]] == [f"8c1e0d5a-000{i}" for i in (1, 2, 3, 4)]
    assert {s.name for s in ds.solutions["rmsnorm_h64"]} == {"rmsnorm_h64_cuda", "rmsnorm_h64_positional"}
    ignored = {(_rel(i.path), i.path.rsplit(":", 1)[-1] if ":" in i.path else ""): i.reason
               for i in examples.report.ignored}
    assert ignored[("triton/rmsnorm_h64/definition.json", "")].startswith("the same definition 'rmsnorm_h64' as ")
    assert ignored[("triton/rmsnorm_h64/workload.jsonl", "1")].startswith("workload '8c1e0d5a-0001' of 'rmsnorm_h64' again")
    assert ("triton/rmsnorm_h64/workload.jsonl", "3") not in ignored


def test_a_differing_copy_is_skipped_with_everything_beside_it(tmp_path):
    root = tmp_path / "examples"
    shutil.copytree(EXAMPLES, root)
    path = root / "triton" / "rmsnorm_h64" / "definition.json"
    data = json.loads(path.read_text())
    data["description"] = "RMSNorm, but another text: the two copies differ."
    path.write_text(json.dumps(data))
    result = read_flashinfer_trace(root)
    reasons = {(_rel(s.path, root), s.path.rsplit(":", 1)[-1]): s.reason for s in result.report.skipped}
    assert reasons[("triton/rmsnorm_h64/definition.json", str(path))].startswith(
        "name: definition 'rmsnorm_h64' is already defined, differently, by ")
    for line in ("1", "2", "3"):
        assert reasons[("triton/rmsnorm_h64/workload.jsonl", line)].startswith("definition 'rmsnorm_h64' in ")
    assert "was not imported" in reasons[("triton/rmsnorm_h64/solution_python.json", str(root / "triton/rmsnorm_h64/solution_python.json"))]
    assert [w.uuid for w in result.dataset.workloads["rmsnorm_h64"]] == [f"8c1e0d5a-000{i}" for i in (1, 2, 3)]


def test_op_type_comes_from_the_definition_never_from_a_folder_or_a_vendor(examples):
    ds = examples.dataset
    assert ds.definitions["rmsnorm_h64"].op_type == "rmsnorm"  # its own field
    gated = ds.definitions["examplecorp_Tiny-Model-1B_gated_rms_norm"]  # in pytorch/, vendor examplecorp
    assert gated.op_type == "rmsnorm"
    assert name_stem("examplecorp_Tiny-Model-1B_gated_rms_norm") == "gated_rms_norm"
    assert op_type_of({"name": "black-box_FLUX.1-dev_flux_rope_apply"}) == ("rope", "the word 'rope' in the name")
    assert op_type_of({"name": "x", "tags": ["model:m", "op_type:fused_moe"]}) == ("fused_moe", "the tag 'op_type:fused_moe'")
    assert op_type_of({"name": "norm_h1", "type": "norm"}) == ("norm", "the field 'type'")
    assert op_type_of({"name": "triton_ref_vecadd"})[0] == "vecadd"  # a language word is no op_type


def test_a_positional_entry_point_is_bound_by_position_and_runs(examples, tmp_path):
    from solforge.bench.build import build_solution, unload

    ds = examples.dataset
    defn = ds.definitions["rmsnorm_h64"]
    (sol,) = [s for s in ds.solutions["rmsnorm_h64"] if s.name == "rmsnorm_h64_positional"]
    assert sol.spec.language.value == "python"  # written 'Python'
    assert sol.spec.entry_point == f"{POSITIONAL_ENTRY_FILE}::run"
    assert sol.source("kernel.py") is not None  # the author's file, unchanged
    notes = [n.message for n in examples.report.notes if n.path.endswith("solution_python.json")]
    assert any("(x <- hidden_states, w <- weight, out <- output)" in m for m in notes)
    built = build_solution(sol, defn, tmp_path, "cpu", 60.0)
    try:
        x, w = torch.randn(5, 64), torch.randn(64)
        out = torch.full((5, 64), float("nan"))
        built.fn(hidden_states=x, weight=w, output=out)  # the harness calls by keyword
        from solforge.spec.importers.kernelbench_code import exec_run

        torch.testing.assert_close(out, exec_run(defn.reference, defn.name)(hidden_states=x, weight=w))
    finally:
        unload(built)
    (cuda,) = [s for s in ds.solutions["rmsnorm_h64"] if s.name == "rmsnorm_h64_cuda"]
    assert cuda.spec.language.value == "cuda" and cuda.spec.entry_point == "kernel.cu::run"  # written cuda_cpp


def test_an_entry_point_naming_definition_arguments_at_other_positions_is_refused(tmp_path):
    root = tmp_path / "examples"
    shutil.copytree(EXAMPLES, root)
    path = root / "triton" / "rmsnorm_h64" / "solution_python.json"
    data = json.loads(path.read_text())
    data["sources"][0]["content"] = data["sources"][0]["content"].replace("def rms_fwd(x, w, out)",
                                                                          "def rms_fwd(weight, hidden_states, out)")
    path.write_text(json.dumps(data))
    result = read_flashinfer_trace(root)
    (reason,) = [s.reason for s in result.report.skipped if s.path == str(path)]
    assert reason == ("spec.entry_point: rms_fwd(weight, hidden_states, out) names 'weight' at position 0, where the "
                      "definition passes 'hidden_states': by position, as SOL-ExecBench calls it, 'weight' would "
                      "receive 'hidden_states'")


def test_every_file_is_imported_skipped_or_ignored(examples):
    report = examples.report
    accounted = {_rel(i.path) for i in report.imported} | {_rel(s.path) for s in report.skipped}
    accounted |= {_rel(i.path) for i in report.ignored}
    assert accounted == {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file()}
    skipped = {_rel(s.path): s.reason for s in report.skipped}
    assert skipped == {"evil_timer_patch/solution.json": "definition: unknown definition 'evil_vector_add'"}
    ignored = {_rel(i.path): i.reason for i in report.ignored if ":" not in i.path}
    assert ignored["evil_timer_patch/kernel.py"] == "a source file of solution.json, whose JSON carries it"
    assert ignored["README.md"] == "not a file of the FlashInfer-Trace or SOL-ExecBench layout"


def test_the_import_writes_a_dataset_that_loads_back(examples, tmp_path):
    out = tmp_path / "out"
    report = import_flashinfer_trace(EXAMPLES, out)
    assert report.exit_code == 1  # the reward-hack sample
    loaded = load_dataset(out)
    assert loaded.workloads == examples.dataset.workloads and loaded.solutions == examples.dataset.solutions
    written = json.loads((out / "import-report.json").read_text())
    assert {Path(i["path"]).name for i in written["ignored"]} >= {"README.md", "kernel.py", "kernel.cu"}


def test_the_older_layout_yields_its_workloads(tmp_path):
    from solforge.bench import make_inputs

    root = tmp_path / "old"
    shutil.copytree(OLD_LAYOUT, root)
    stored = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    blob = root / "blob" / "workloads" / "gemm_n8_k4" / "gemm_n8_k4_5f0c1a2b-m3.safetensors"
    blob.parent.mkdir(parents=True)
    save_file({"A": stored}, str(blob))
    out = tmp_path / "out"
    report = import_flashinfer_trace(root, out)
    assert report.complete, report.skipped
    ds = load_dataset(out)
    assert [w.uuid for w in ds.workloads["gemm_n8_k4"]] == ["5f0c1a2b-m2", "5f0c1a2b-m3"]
    assert ds.traces == []  # evaluation {}: workloads, not traces
    wl = ds.workloads["gemm_n8_k4"][1]
    assert wl.inputs["A"].path == "blob/workloads/gemm_n8_k4/gemm_n8_k4_5f0c1a2b-m3.safetensors"
    defn = ds.definitions["gemm_n8_k4"]
    inputs = make_inputs(defn, wl, defn.resolve_axes(wl.axes), seed=0, distribution="normal", device="cpu",
                         dataset_root=out)
    assert torch.equal(inputs["A"], stored)


def test_validate_passes_the_import_and_names_a_workload_attached_twice(tmp_path, capsys):
    from solforge.cli import main

    out = tmp_path / "out"
    import_flashinfer_trace(EXAMPLES, out)
    assert main(["problems", "validate", str(out)]) == 0
    (workloads,) = (out / "workloads").rglob("rmsnorm_h64.jsonl")
    first = workloads.read_text().splitlines()[0]
    workloads.write_text(workloads.read_text() + first + "\n")  # what a merge without UUIDs would write
    capsys.readouterr()
    assert main(["problems", "validate", str(out)]) == 1
    found = capsys.readouterr().out
    assert f"{workloads}:5: workload.uuid: '8c1e0d5a-0001' of 'rmsnorm_h64' is already at {workloads}:1" in found
