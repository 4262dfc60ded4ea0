"""KernelBench patterns that a value-matching, distribution-replacing importer gets wrong:
equal globals, softmaxed and +-1 inputs, tied sizes, data-dependent outputs, a value range
tied to a shape, strided convolutions, and the derived workloads. The fixture files under
fixtures/kernelbench/patterns are written for these tests in KernelBench's format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from solforge.spec import AxisExpr, AxisVar, check_definition
from solforge.spec.importers.kernelbench import read_kernelbench
from solforge.spec.importers.kernelbench_code import exec_run
from solforge.spec.importers.kernelbench_workloads import SEARCH_BUDGET, SMOKE_BUDGET, meta_cost

PATTERNS = Path(__file__).parent / "fixtures" / "kernelbench" / "patterns"


@pytest.fixture(scope="module")
def imported():
    return read_kernelbench([PATTERNS])


def _definition(imported, stem):
    return imported.dataset.definitions[f"kernelbench_{stem}"]


def _workload(imported, stem, kind):
    return next(w for w in imported.dataset.workloads[f"kernelbench_{stem}"] if w.uuid.endswith(f"-{kind}"))


def _inputs(defn, workload, seed, distribution="normal"):
    from solforge.bench import make_inputs

    axes = defn.resolve_axes(workload.axes)
    return make_inputs(defn, workload, axes, seed=seed, distribution=distribution, device="cpu", dataset_root=None)


def test_two_globals_of_equal_value_keep_their_own_names(imported):
    linear = _definition(imported, "1_SquareLinear")  # batch_size = in_features = out_features = 24
    assert linear.inputs["x"].shape == ["batch_size", "in_features"]
    assert linear.inputs["proj_weight"].shape == ["out_features", "in_features"]  # nn.Linear's (out, in)
    assert linear.outputs["output"].shape == ["batch_size", "out_features"]
    assert all(isinstance(linear.axes[a], AxisVar) for a in ("batch_size", "in_features", "out_features"))
    x, w, b = torch.randn(2, 3), torch.randn(5, 3), torch.randn(5)  # in_features 3, out_features 5
    out = exec_run(linear.reference, linear.name)(x=x, proj_weight=w, proj_bias=b)
    axes = linear.resolve_axes({"batch_size": 2, "in_features": 3, "out_features": 5})
    assert tuple(out.shape) == linear.shape_of(linear.outputs["output"], axes) == (2, 5)

    matmul = _definition(imported, "2_MatmulEqualSides")  # N = M = 32, N set first
    assert [matmul.inputs["A"].shape, matmul.inputs["B"].shape, matmul.outputs["output"].shape] == [
        ["M", "K"], ["K", "N"], ["M", "N"]]
    axes = matmul.resolve_axes({"M": 5, "N": 7, "K": 3})  # N never merged into M
    out = exec_run(matmul.reference, matmul.name)(A=torch.randn(5, 3), B=torch.randn(3, 7))
    assert tuple(out.shape) == matmul.shape_of(matmul.outputs["output"], axes) == (5, 7)


@pytest.mark.parametrize("distribution", ["normal", "large", "tiny", "mixed"])
def test_softmaxed_inputs_stay_probabilities_whatever_the_distribution(imported, distribution):
    defn = _definition(imported, "3_KLDivLogProbs")  # the forward takes log(predictions)
    smoke = _workload(imported, "3_KLDivLogProbs", "smoke")
    run = exec_run(defn.reference, defn.name)
    for seed in (0, 1):
        inputs = _inputs(defn, smoke, seed, distribution)
        for name in ("predictions", "targets"):
            values = inputs[name]
            assert values.shape == (smoke.axes["batch_size"], smoke.axes["num_classes"])
            assert (values > 0).all()
            torch.testing.assert_close(values.sum(-1), torch.ones(values.shape[0]))
        assert torch.isfinite(run(**inputs))  # normal values would give log(negative) = NaN


def test_the_inputs_generator_is_seeded_and_leaves_the_callers_rng_alone(imported):
    defn = _definition(imported, "3_KLDivLogProbs")
    smoke = _workload(imported, "3_KLDivLogProbs", "smoke")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = _inputs(defn, smoke, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    again = _inputs(defn, smoke, seed=7)
    other = _inputs(defn, smoke, seed=8)
    assert torch.equal(first["predictions"], again["predictions"])
    assert first["predictions"].data_ptr() != again["predictions"].data_ptr()
    assert not torch.equal(first["predictions"], other["predictions"])


def test_plus_minus_one_targets_and_tied_sizes(imported):
    defn = _definition(imported, "4_HingeTargets")  # batch_size and input_shape[0] must stay equal
    assert defn.var_axes() == ["batch_size"]
    assert defn.inputs["predictions"].shape == ["batch_size", "batch_size"]
    assert defn.constraints == ["input_shape_0 == batch_size"]
    workloads = imported.dataset.workloads[defn.name]
    assert [(w.uuid.rsplit("-", 1)[1], w.held_out, w.smoke) for w in workloads] == [
        ("file", True, False), ("search", False, False), ("smoke", False, True)]
    smoke = workloads[-1]
    assert smoke.axes["batch_size"] < 4096
    run = exec_run(defn.reference, defn.name)
    for seed in range(3):
        inputs = _inputs(defn, smoke, seed, "large")
        b = smoke.axes["batch_size"]
        assert inputs["predictions"].shape == (b, b)
        assert set(inputs["targets"].unique().tolist()) == {-1.0, 1.0}
        assert 0 <= float(run(**inputs)) <= 2  # mean(clamp(1 - p * t)) with p in [0, 1)


def test_a_data_dependent_output_is_skipped_with_the_reason(imported):
    reasons = {Path(s.path).name: s.reason for s in imported.report.skipped}
    assert set(reasons) == {"5_PositiveEntries.py"}
    assert "output 'output' has a data-dependent shape" in reasons["5_PositiveEntries.py"]
    assert "kernelbench_5_PositiveEntries" not in imported.dataset.definitions


def test_a_value_range_follows_the_shape_it_indexes(imported):
    defn = _definition(imported, "6_ClassIndexRange")  # num_classes = batch_size = 8192
    assert defn.var_axes() == ["batch_size", "logit_shape_0"]
    smoke = _workload(imported, "6_ClassIndexRange", "smoke")
    classes = smoke.axes["logit_shape_0"]
    assert classes < 8192
    run = exec_run(defn.reference, defn.name)
    inputs = _inputs(defn, smoke, seed=3)
    assert int(inputs["labels"].max()) < classes  # randint(0, num_classes) at the smoke size
    assert torch.isfinite(run(**inputs))
    notes = [n.message for n in imported.report.notes if n.path.endswith("6_ClassIndexRange.py")]
    assert any("`num_classes` moves no shape but equals var axis `logit_shape_0`" in m for m in notes)


def test_a_strided_convolution_gets_its_floor_division(imported):
    defn = _definition(imported, "7_StridedConv")
    assert defn.outputs["output"].shape == ["batch_size", "channels", "height_plus1_div2", "width_plus1_div2"]
    assert defn.axes["height_plus1_div2"] == AxisExpr(expression="(height + 1) // 2")
    conv = torch.nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False, device="meta")
    for height in range(3, 40):  # odd and even sizes alike
        expected = conv(torch.empty(1, 6, height, 8, device="meta")).shape[2]
        sizes = {"batch_size": 1, "channels": 6, "height": height, "width": 8}
        assert defn.resolve_axes(sizes)["height_plus1_div2"] == expected


def test_derived_workloads_fit_their_budgets_and_the_reference_runs_there(imported):
    for stem in ("3_KLDivLogProbs", "4_HingeTargets", "6_ClassIndexRange"):
        defn = _definition(imported, stem)
        file_, search, smoke = imported.dataset.workloads[defn.name]
        assert file_.held_out and not search.held_out and smoke.smoke
        for workload, budget in ((search, SEARCH_BUDGET), (smoke, SMOKE_BUDGET)):
            moved, flops = meta_cost(defn, workload)
            assert moved <= budget.bytes_moved and flops <= budget.flops, (stem, workload.axes)
        assert meta_cost(defn, file_)[0] > SEARCH_BUDGET.bytes_moved  # the file's is what they shrink


def test_an_inputs_generator_must_name_a_function_of_the_reference(imported):
    defn = _definition(imported, "1_SquareLinear")
    broken = defn.model_copy(deep=True)
    broken.solforge.inputs_generator.args["function"] = "no_such_function"
    assert check_definition(defn) == []
    assert check_definition(broken) == [
        "solforge.inputs_generator.args.function: 'no_such_function' is not a top-level function of the reference"]


def test_stored_buffers_serve_the_files_size_and_the_generator_the_smaller_ones(tmp_path):
    from solforge.spec.importers.kernelbench import import_kernelbench

    path = tmp_path / "level1" / "9_WideBatchNorm.py"
    path.parent.mkdir()
    path.write_text(
        "import torch\nimport torch.nn as nn\n\n\n"
        "class Model(nn.Module):\n"
        "    def __init__(self, features):\n"
        "        super().__init__()\n"
        "        self.bn = nn.BatchNorm2d(features)\n\n"
        "    def forward(self, x):\n"
        "        return self.bn(x)\n\n\n"
        "batch_size = 16\nfeatures = 64\nheight = 64\nwidth = 64\n\n\n"
        "def get_inputs():\n    return [torch.rand(batch_size, features, height, width)]\n\n\n"
        "def get_init_inputs():\n    return [features]\n"
    )
    out = tmp_path / "ds"
    import_kernelbench([path], out)
    from solforge.spec import load_dataset

    ds = load_dataset(out)
    (defn,) = ds.definitions.values()
    file_, search, smoke = ds.workloads[defn.name]
    assert file_.inputs["bn_running_var"].type == "safetensors"  # the file's values, at the file's size
    assert smoke.axes["features"] < 64 and smoke.inputs["bn_running_var"].type == "random"
    axes = defn.resolve_axes(smoke.axes)
    from solforge.bench import make_inputs

    inputs = make_inputs(defn, smoke, axes, seed=1, distribution="normal", device="cpu", dataset_root=out)
    assert torch.equal(inputs["bn_running_var"], torch.ones(smoke.axes["features"]))  # a fresh BatchNorm's
    assert tuple(exec_run(defn.reference, defn.name)(**inputs).shape) == defn.shape_of(defn.outputs["output"], axes)
