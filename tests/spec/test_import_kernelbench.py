"""`solforge.spec.importers.kernelbench`: KernelBench files into definitions, workloads and
solutions whose reference and entry point reproduce the file's Model and ModelNew."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from solforge.spec import AxisConst, AxisExpr, AxisVar, load_dataset
from solforge.spec.importers import REPORT_FILE, ItemKind
from solforge.spec.importers.kernelbench import import_kernelbench, read_kernelbench
from solforge.spec.importers.kernelbench_code import exec_run
from solforge.spec.importers.kernelbench_run import execute_file

FIXTURES = Path(__file__).parent / "fixtures" / "kernelbench"
LEVEL1 = FIXTURES / "level1"
SOLUTIONS = FIXTURES / "solutions"


@pytest.fixture(scope="module")
def imported():
    return read_kernelbench([LEVEL1, SOLUTIONS])


def _definition(imported, stem: str):
    return imported.dataset.definitions[f"kernelbench_level1_{stem}"]


def _axis(defn, name):
    return defn.axes[name]


def model_case(path: Path, definition, seed: int = 0):
    """The file's Model(*init) with freshly drawn weights, its own get_inputs(), the
    keyword arguments naming them as the definition does, and the forward's output."""
    module = execute_file(path, path.read_text())
    torch.manual_seed(seed)
    model = module.Model(*module.get_init_inputs())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # not the constructor's init: the reference must use the inputs
    inputs = module.get_inputs()
    names = list(definition.inputs)
    kwargs = dict(zip(names, inputs))
    state, seen = [], set()
    for t in model.state_dict(keep_vars=True).values():
        if id(t) not in seen:
            seen.add(id(t))
            state.append(t.detach().clone())
    kwargs.update(zip(names[len(inputs):], state))
    assert len(kwargs) == len(names)
    with torch.no_grad():
        expected = model(*inputs)
    return kwargs, expected


def write_problem(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "level2" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("import torch\nimport torch.nn as nn\n\n" + textwrap.dedent(body))
    return path


# -- definitions and workloads ---------------------------------------------------------------


def test_elementwise_add_has_two_tensor_inputs_and_var_axes(imported):
    defn = _definition(imported, "1_ElementwiseAdd")
    assert defn.op_type == "kernelbench_level1"
    assert "source:kernelbench" in defn.tags
    assert {n: (s.shape, s.dtype.value) for n, s in defn.inputs.items()} == {
        "a": (["batch_size", "dim"], "float32"),
        "b": (["batch_size", "dim"], "float32"),
    }
    # neither global sizes the model: both are var axes
    assert isinstance(_axis(defn, "batch_size"), AxisVar) and isinstance(_axis(defn, "dim"), AxisVar)
    assert defn.outputs["output"].shape == ["batch_size", "dim"]
    workloads = imported.dataset.workloads[defn.name]
    assert [(w.uuid.rsplit("-", 1)[1], w.axes, w.smoke, w.held_out) for w in workloads] == [
        ("file", {"batch_size": 16, "dim": 64}, False, False),  # small: also the search workload
        ("smoke", {"batch_size": 16, "dim": 64}, True, False),
    ]
    assert {n: s.type for n, s in workloads[0].inputs.items()} == {"a": "random", "b": "random"}
    # KernelBench's tolerance and the file's own values
    assert defn.tolerance_for(defn.outputs["output"].dtype).model_dump() == {
        "atol": 1e-2, "rtol": 1e-2, "required_matched_ratio": 1.0}
    assert defn.solforge.inputs_generator.generator == "reference_function"
    assert defn.solforge.inputs_generator.args == {"function": "kernelbench_get_inputs"}


def test_linear_parameters_are_inputs_and_the_model_is_built_at_the_inputs_sizes(imported):
    defn = _definition(imported, "2_Linear_ReLU")
    assert {n: s.shape for n, s in defn.inputs.items()} == {
        "x": ["batch_size", "in_features"],
        "linear_weight": ["out_features", "in_features"],
        "linear_bias": ["out_features"],
    }
    assert defn.var_axes() == ["batch_size", "in_features", "out_features"]
    assert defn.outputs["output"].shape == ["batch_size", "out_features"]
    assert "INIT_INPUTS = [32, 16]" in defn.reference  # the file's, bound as constants
    assert "return [sizes['in_features'], sizes['out_features']]" in defn.reference  # at other sizes
    # bound as constants and fitted expressions: the generated code never calls
    # get_init_inputs() (only the embedded problem source, a string, mentions it)
    calls = {n.func.id for n in ast.walk(ast.parse(defn.reference)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "get_init_inputs" not in calls and "_init_inputs" in calls
    x, w, b = torch.randn(3, 5), torch.randn(7, 5), torch.randn(7)  # other sizes than the file's
    torch.testing.assert_close(exec_run(defn.reference, defn.name)(x=x, linear_weight=w, linear_bias=b),
                               torch.relu(x @ w.T + b))


def test_conv_names_equal_sizes_in_source_order_and_includes_buffers(imported):
    defn = _definition(imported, "3_Conv2d_BatchNorm")
    # in_channels and kernel_size are both 3: the k-th 3 of a tensor takes the k-th global
    assert defn.inputs["conv_weight"].shape == ["out_channels", "in_channels", "kernel_size", "kernel_size"]
    assert defn.inputs["x"].shape == ["batch_size", "in_channels", "height", "width"]
    assert defn.inputs["bn_running_var"].shape == ["out_channels"]
    assert (defn.inputs["bn_num_batches_tracked"].shape, defn.inputs["bn_num_batches_tracked"].dtype.value) == ([], "int64")
    # the sizes shrink together; the output's are expressions of the input's
    assert defn.outputs["output"].shape == ["batch_size", "out_channels", "height_minus2", "width_minus2"]
    assert defn.axes["width_minus2"] == AxisExpr(expression="width - 2")
    assert defn.var_axes() == ["batch_size", "in_channels", "out_channels", "height", "width"]
    assert isinstance(defn.axes["kernel_size"], AxisConst)  # moving it would move height - 2 too


def test_a_number_from_get_inputs_is_a_scalar_input(imported):
    defn = _definition(imported, "4_ScaledSoftmax")
    assert (defn.inputs["scale"].shape, defn.inputs["scale"].dtype.value) == (None, "float64")
    for workload in imported.dataset.workloads[defn.name]:
        assert workload.inputs["scale"].type == "scalar" and workload.inputs["scale"].value == 0.5


def test_an_integer_input_draws_from_the_files_range_at_the_workloads_sizes(imported):
    from solforge.bench import make_inputs

    defn = _definition(imported, "8_Gather")
    assert defn.inputs["index"].dtype.value == "int64" and defn.inputs["index"].shape == ["num_indices"]
    assert defn.var_axes() == ["num_rows", "dim", "num_indices"]
    (file_workload, _) = imported.dataset.workloads[defn.name]
    smaller = file_workload.model_copy(update={"axes": {"num_rows": 5, "dim": 3, "num_indices": 200}})
    axes = defn.resolve_axes(smaller.axes)
    for seed in range(3):
        inputs = make_inputs(defn, smaller, axes, seed=seed, distribution="large", device="cpu", dataset_root=None)
        index = inputs["index"]
        # torch.randint(0, num_rows) with the file's num_rows set to the workload's 5
        assert index.shape == (200,) and 0 <= int(index.min()) and int(index.max()) < 5
        assert set(index.tolist()) == set(range(5))
        assert inputs["table"].shape == (5, 3)
        exec_run(defn.reference, defn.name)(**inputs)  # in range: the gather runs


# -- the reference -----------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["1_ElementwiseAdd", "2_Linear_ReLU", "3_Conv2d_BatchNorm", "4_ScaledSoftmax", "8_Gather"])
def test_reference_reproduces_model_with_the_same_weights(imported, stem):
    defn = _definition(imported, stem)
    run = exec_run(defn.reference, defn.name)
    kwargs, expected = model_case(LEVEL1 / f"{stem}.py", defn)
    before = {k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    torch.testing.assert_close(run(**kwargs), expected, rtol=1e-5, atol=1e-5)
    for name, value in before.items():  # buffers are cloned, never written
        assert torch.equal(kwargs[name], value), name
    # float64 inputs (the harness's higher-precision reference) give the same answer
    upcast = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in kwargs.items()}
    out64 = run(**upcast)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), expected, rtol=1e-4, atol=1e-4)


def test_reference_uses_the_weights_it_is_given(imported):
    defn = _definition(imported, "2_Linear_ReLU")
    run = exec_run(defn.reference, defn.name)
    kwargs, expected = model_case(LEVEL1 / "2_Linear_ReLU.py", defn)
    other = dict(kwargs, linear_weight=-kwargs["linear_weight"])
    assert not torch.allclose(run(**other), expected)


def test_a_forward_that_draws_random_numbers_gives_the_same_output_every_call(tmp_path):
    path = write_problem(tmp_path, "9_Noisy.py", """
        class Model(nn.Module):
            def forward(self, x):
                return x + torch.randn_like(x)

        def get_inputs():
            return [torch.randn(3, 4)]

        def get_init_inputs():
            return []
    """)
    (defn,) = read_kernelbench([path]).dataset.definitions.values()
    run = exec_run(defn.reference, defn.name)
    x = torch.zeros(3, 4)
    first = run(x=x)
    torch.randn(100)  # the caller's use of the global generator changes nothing
    assert torch.equal(run(x=x), first) and not torch.equal(first, x)


# -- what cannot be imported ----------------------------------------------------------------------


def test_unimportable_files_are_reported_with_their_reasons(imported):
    reasons = {Path(s.path).name: s.reason for s in imported.report.skipped}
    assert reasons["5_BrokenInputs.py"] == "get_inputs() raised ValueError: the inputs of this problem are broken"
    assert reasons["6_NoModel.py"].startswith("defines no class Model")
    assert reasons["7_DictInput.py"] == "get_inputs() returned a list with a dict; only tensors and numbers are supported"
    assert "names no problem imported" in reasons["42_Missing_new.py"]
    assert imported.report.exit_code == 1
    assert not any("BrokenInputs" in name for name in imported.dataset.definitions)


def test_an_init_input_that_is_no_constant_is_reported(tmp_path):
    path = write_problem(tmp_path, "1_TensorInit.py", """
        class Model(nn.Module):
            def __init__(self, scale):
                super().__init__()
                self.scale = scale

            def forward(self, x):
                return x * self.scale

        def get_inputs():
            return [torch.randn(4)]

        def get_init_inputs():
            return [torch.ones(4)]
    """)
    result = read_kernelbench([path])
    (skipped,) = result.report.skipped
    assert skipped.reason.startswith("get_init_inputs()[0] is a Tensor; only numbers")


def test_an_error_of_the_files_code_outside_the_steps_skips_only_that_file(tmp_path):
    bad = write_problem(tmp_path, "10_BadState.py", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.ones(3))

            def state_dict(self, *args, **kwargs):
                raise RuntimeError("this model keeps its state to itself")

            def forward(self, x):
                return x * self.w

        def get_inputs():
            return [torch.randn(3)]

        def get_init_inputs():
            return []
    """)
    result = read_kernelbench([bad, LEVEL1 / "1_ElementwiseAdd.py"])
    (skipped,) = result.report.skipped
    assert skipped.reason == "importing raised RuntimeError: this model keeps its state to itself"
    assert list(result.dataset.definitions) == ["kernelbench_level1_1_ElementwiseAdd"]


# -- axes the doubled run decides ---------------------------------------------------------------------


def test_a_global_that_the_forward_cannot_follow_stays_const(tmp_path):
    path = write_problem(tmp_path, "2_FixedBatch.py", """
        class Model(nn.Module):
            def forward(self, x):
                return x + torch.ones(batch_size, dim)  # the forward reads the globals: the file's values

        batch_size = 4
        dim = 8

        def get_inputs():
            return [torch.randn(batch_size, dim)]

        def get_init_inputs():
            return []
    """)
    result = read_kernelbench([path])
    (defn,) = result.dataset.definitions.values()
    assert isinstance(defn.axes["batch_size"], AxisConst) and defn.axes["batch_size"].value == 4
    assert isinstance(defn.axes["dim"], AxisConst)
    assert all(w.axes == {} for w in result.dataset.workloads[defn.name])
    assert any(n.message.startswith("every axis is const") for n in result.report.notes)


def test_a_buffer_the_constructor_sizes_from_a_global_follows_the_workload(tmp_path):
    path = write_problem(tmp_path, "2_OffsetBuffer.py", """
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("offset", torch.ones(batch_size, dim), persistent=False)

            def forward(self, x):
                return x + self.offset

        batch_size = 4
        dim = 8

        def get_inputs():
            return [torch.randn(batch_size, dim)]

        def get_init_inputs():
            return []
    """)
    (defn,) = read_kernelbench([path]).dataset.definitions.values()
    assert defn.var_axes() == ["batch_size", "dim"]
    x = torch.randn(3, 5)  # the reference builds its model while the globals hold 3 and 5
    torch.testing.assert_close(exec_run(defn.reference, defn.name)(x=x), x + 1)


def test_a_dim_proportional_to_batch_is_an_expr_axis(tmp_path):
    path = write_problem(tmp_path, "3_Flatten.py", """
        class Model(nn.Module):
            def forward(self, x):
                return x.reshape(-1) * 2

        batch_size = 4
        dim = 8

        def get_inputs():
            return [torch.randn(batch_size, dim)]

        def get_init_inputs():
            return []
    """)
    result = read_kernelbench([path])
    (defn,) = result.dataset.definitions.values()
    assert defn.outputs["output"].shape == ["batch_size_x_dim"]
    assert defn.axes["batch_size_x_dim"] == AxisExpr(expression="batch_size * dim")
    assert defn.resolve_axes({"batch_size": 10, "dim": 3})["batch_size_x_dim"] == 30
    run = exec_run(defn.reference, defn.name)
    x = torch.randn(10, 3)  # other sizes than the file's: the var axes hold
    torch.testing.assert_close(run(x=x), x.reshape(-1) * 2)


def test_tied_parameters_are_one_input(tmp_path):
    path = write_problem(tmp_path, "4_Tied.py", """
        class Model(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.encode = nn.Linear(n, n, bias=False)
                self.decode = nn.Linear(n, n, bias=False)
                self.decode.weight = self.encode.weight

            def forward(self, x):
                return self.decode(self.encode(x))

        n = 6

        def get_inputs():
            return [torch.randn(3, n)]

        def get_init_inputs():
            return [n]
    """)
    result = read_kernelbench([path])
    (defn,) = result.dataset.definitions.values()
    assert list(defn.inputs) == ["x", "encode_weight"]
    w, x = torch.randn(6, 6), torch.randn(3, 6)
    torch.testing.assert_close(exec_run(defn.reference, defn.name)(x=x, encode_weight=w), x @ w.T @ w.T)


def test_a_model_the_meta_device_cannot_run_is_observed_on_the_cpu(tmp_path):
    path = write_problem(tmp_path, "6_PositiveSum.py", """
        class Model(nn.Module):
            def forward(self, x):
                return x[x > 0].sum()  # data-dependent: no meta kernel can size it

        batch_size = 3
        dim = 5

        def get_inputs():
            return [torch.randn(batch_size, dim)]

        def get_init_inputs():
            return []
    """)
    result = read_kernelbench([path])
    (defn,) = result.dataset.definitions.values()
    assert defn.outputs["output"].shape == []
    assert defn.var_axes() == []  # the doubled run is tried on meta only
    notes = [n.message for n in result.report.notes]
    assert any(m.startswith("ran on the CPU at the file's sizes (on the meta device Model.forward raised") for m in notes)
    x = torch.randn(3, 5)
    torch.testing.assert_close(exec_run(defn.reference, defn.name)(x=x), x[x > 0].sum())


# -- ModelNew files ---------------------------------------------------------------------------------


def _solutions(imported):
    return {s.name: s for s in imported.dataset.solutions["kernelbench_level1_2_Linear_ReLU"]}


def test_model_new_files_become_solutions_of_the_problem_they_name(imported):
    linear = _solutions(imported)
    assert set(linear) == {"2_Linear_ReLU_addmm", "level_1_problem_2_sample_0_kernel"}
    (cuda,) = imported.dataset.solutions["kernelbench_level1_1_ElementwiseAdd"]
    assert cuda.spec.language.value == "cuda" and cuda.spec.entry_point == "kernelbench_entry.py::run"
    assert "load_inline" in cuda.source("model_new_1_ElementwiseAdd_cuda.py").content
    for sol in (*linear.values(), cuda):
        assert sol.spec.destination_passing_style is False
    assert linear["2_Linear_ReLU_addmm"].spec.language.value == "pytorch"
    notes = {Path(n.path).name: n.message for n in imported.report.notes}
    assert "bound in order" in notes["level_1_problem_2_sample_0_kernel.py"]
    assert "not run here" in notes["1_ElementwiseAdd_cuda.py"]


@pytest.mark.parametrize("name", ["2_Linear_ReLU_addmm", "level_1_problem_2_sample_0_kernel"])
def test_model_new_entry_point_matches_the_reference(imported, tmp_path, name):
    from solforge.bench.build import build_solution, unload

    defn = _definition(imported, "2_Linear_ReLU")
    solution = _solutions(imported)[name]
    built = build_solution(solution, defn, tmp_path, "cpu", 60.0)
    try:
        kwargs, expected = model_case(LEVEL1 / "2_Linear_ReLU.py", defn, seed=1)
        torch.testing.assert_close(built.fn(**kwargs), exec_run(defn.reference, defn.name)(**kwargs), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(built.fn(**kwargs), expected, rtol=1e-5, atol=1e-5)
    finally:
        unload(built)


def test_a_file_with_model_and_model_new_is_a_problem_and_its_solution(tmp_path):
    path = write_problem(tmp_path, "7_Both.py", """
        class Model(nn.Module):
            def forward(self, x):
                return torch.tanh(x)

        class ModelNew(nn.Module):
            def forward(self, x):
                return 2 * torch.sigmoid(2 * x) - 1

        def get_inputs():
            return [torch.randn(4, 4)]

        def get_init_inputs():
            return []
    """)
    result = read_kernelbench([path])
    (defn,) = result.dataset.definitions.values()
    (solution,) = result.dataset.solutions[defn.name]
    assert solution.name == "7_Both" and result.report.complete


def test_model_new_whose_state_matches_neither_by_name_nor_order_is_reported(tmp_path):
    problem = write_problem(tmp_path, "5_Scale.py", """
        class Model(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(n))

            def forward(self, x):
                return x * self.weight

        n = 5

        def get_inputs():
            return [torch.randn(2, n)]

        def get_init_inputs():
            return [n]
    """)
    new = tmp_path / "5_Scale_bad.py"
    new.write_text(textwrap.dedent("""
        import torch
        import torch.nn as nn

        class ModelNew(nn.Module):
            def __init__(self, n):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(n + 1))

            def forward(self, x):
                return x * self.weight[:-1]
    """))
    result = read_kernelbench([problem, new])
    (skipped,) = result.report.skipped
    assert skipped.path == str(new) and "neither by name nor in order" in skipped.reason


# -- writing ------------------------------------------------------------------------------------------


def test_import_writes_a_dataset_that_loads_back_the_same(tmp_path, imported):
    out = tmp_path / "out"
    report = import_kernelbench([LEVEL1, SOLUTIONS], out)
    assert report.exit_code == 1
    loaded = load_dataset(out)
    assert loaded.definitions == imported.dataset.definitions
    assert loaded.workloads == imported.dataset.workloads
    assert loaded.solutions == imported.dataset.solutions
    written = json.loads((out / REPORT_FILE).read_text())
    assert written["complete"] is False
    assert {Path(s["path"]).name for s in written["skipped"]} == {
        "5_BrokenInputs.py", "6_NoModel.py", "7_DictInput.py", "42_Missing_new.py"
    }
    assert sum(1 for i in written["imported"] if i["kind"] == ItemKind.definition.value) == 5


def test_buffers_keep_the_files_values_in_a_blob(tmp_path):
    path = write_problem(tmp_path, "8_CausalMean.py", """
        class Model(nn.Module):
            \"\"\"Mean over the positions each position may see: a causal mask as a buffer.\"\"\"

            def __init__(self, max_len):
                super().__init__()
                self.register_buffer("mask", torch.tril(torch.ones(max_len, max_len)))

            def forward(self, x):
                t = x.shape[1]
                m = self.mask[:t, :t]
                return (m @ x) / m.sum(-1, keepdim=True)

        batch_size = 2
        seq_len = 6
        max_len = 8

        def get_inputs():
            return [torch.randn(batch_size, seq_len, 3)]

        def get_init_inputs():
            return [max_len]
    """)
    out = tmp_path / "out"
    import_kernelbench([path], out)
    ds = load_dataset(out)
    (defn,) = ds.definitions.values()
    for workload in ds.workloads[defn.name]:
        stored = workload.inputs["mask"]
        assert stored.type == "safetensors" and stored.path == f"blob/kernelbench/{defn.op_type}/{defn.name}.safetensors"
    mask = load_file(str(out / stored.path))["mask"]
    assert torch.equal(mask, torch.tril(torch.ones(8, 8)))
    x = torch.randn(2, 6, 3)
    expected = (torch.tril(torch.ones(6, 6)) @ x) / torch.arange(1, 7).reshape(6, 1)
    torch.testing.assert_close(exec_run(defn.reference, defn.name)(x=x, mask=mask), expected)


def test_every_imported_reference_runs_on_its_workloads(tmp_path):
    from solforge.bench import make_inputs
    from solforge.bench.build import build_reference

    out = tmp_path / "out"
    import_kernelbench([LEVEL1], out)
    ds = load_dataset(out)
    bn = ds.workloads["kernelbench_level1_3_Conv2d_BatchNorm"][0].inputs
    assert {n: s.type for n, s in bn.items() if n.startswith("bn_running") or n == "bn_num_batches_tracked"} == {
        "bn_running_mean": "safetensors", "bn_running_var": "safetensors", "bn_num_batches_tracked": "safetensors"
    }
    for name, defn in ds.definitions.items():
        run = build_reference(defn)
        for wl in ds.workloads[name]:
            axes = defn.resolve_axes(wl.axes)
            inputs = make_inputs(defn, wl, axes, seed=1, distribution="normal", device="cpu", dataset_root=out)
            if "bn_running_var" in inputs:
                assert torch.equal(inputs["bn_running_var"], torch.ones(8))  # the file's value, not random
            value = run(**inputs)
            assert tuple(value.shape) == defn.shape_of(defn.outputs["output"], axes), name
            assert torch.isfinite(value).all(), name


def test_solforge_bench_runs_what_was_imported(tmp_path):
    import typer
    from typer.testing import CliRunner

    from solforge.cli import bench

    out = tmp_path / "out"
    import_kernelbench([LEVEL1 / "2_Linear_ReLU.py", SOLUTIONS / "2_Linear_ReLU_addmm.py",
                        SOLUTIONS / "level_1_problem_2_sample_0_kernel.py"], out)
    app = typer.Typer()
    bench.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `bench` a named subcommand
    solutions = sorted((out / "solutions").rglob("*.json"))
    args = ["bench", "kernelbench_level1_2_Linear_ReLU", "--dataset", str(out), "--device", "cpu", "--workloads", "all"]
    for s in solutions:
        args += ["--solution", str(s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2_Linear_ReLU_addmm" in result.output and "level_1_problem_2_sample_0_kernel" in result.output


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_on_the_gpu_the_reference_and_a_cuda_model_new_agree(imported, tmp_path):
    from solforge.bench.build import build_solution, unload

    linear = _definition(imported, "2_Linear_ReLU")
    kwargs, expected = model_case(LEVEL1 / "2_Linear_ReLU.py", linear)
    on_gpu = {k: v.cuda() for k, v in kwargs.items()}
    torch.testing.assert_close(exec_run(linear.reference, linear.name)(**on_gpu).cpu(), expected, rtol=1e-3, atol=1e-3)

    add = _definition(imported, "1_ElementwiseAdd")
    (solution,) = imported.dataset.solutions[add.name]
    built = build_solution(solution, add, tmp_path, "cuda", 600.0)  # load_inline compiles at import
    try:
        a, b = torch.randn(16, 64, device="cuda"), torch.randn(16, 64, device="cuda")
        torch.testing.assert_close(built.fn(a=a, b=b), exec_run(add.reference, add.name)(a=a, b=b))
    finally:
        unload(built)
